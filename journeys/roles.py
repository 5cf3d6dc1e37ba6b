from config.roles import AGENT, MARKETER, OPERATOR, REVIEWER

_READ = ["journeys.view_journey", "journeys.view_journeyversion", "journeys.view_enrollment",
         "journeys.view_stepexecution", "journeys.view_entrydecision", "journeys.view_event", "journeys.view_caprule",
         "journeys.view_task", "journeys.view_enrollmentimport"]

ROLE_PERMISSIONS = {
    # Marketers build journeys; which ones they may change is granted per journey (owner or team).
    MARKETER: [*_READ, "journeys.add_journey", "journeys.change_journey", "journeys.publish_journey",
               "journeys.simulate_journey"],
    # Reviewers approve versions they did not edit and audit what ran and why.
    REVIEWER: [*_READ, "journeys.approve_journeyversion", "journeys.simulate_journey", "journeys.view_webhookcall"],
    # Agents get nothing here on purpose (least privilege): these grants would let them read every
    # journey's enrollments and tasks across all cases. They see a case's escalation, its enrollments
    # and its tasks on the case page in support, scoped by their case grants.
    AGENT: [],
    # Operators pause journeys, exit enrollments, tune caps and watch webhooks.
    OPERATOR: [*_READ, "journeys.pause_journey", "journeys.exit_enrollment", "journeys.add_caprule",
               "journeys.change_caprule", "journeys.change_task", "journeys.view_webhookcall",
               "journeys.simulate_journey"],
}
