"""The demo seed (idempotent, open and escalated cases with history), the
journey "task" step that opens a case, editing an escalation policy in the
admin, and contact merge/erasure reaching cases."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client

from channels.models import MessageStatus, OriginKind, OutboundMessage
from consent import demo as consent_demo
from consent.services import contact_erase, contact_merge
from journeys import services as journey_services
from journeys.models import Journey, Task, TaskStatus
from support import demo
from support.models import (
    CaseEventKind,
    CaseSource,
    CaseStatus,
    EscalationPolicy,
    SupportCase,
)
from templates import demo as templates_demo
from tests.support import factories


# 23:00 UTC is quiet hours in Lisbon (cus_ana), 05:00 in Sao Paulo (cus_diego).
@pytest.mark.parametrize("utc_hour", [5, 12, 23])
def test_the_demo_agents_earlier_replies_went_out_whatever_the_hour_it_seeds_at(db, utc_hour):
    with time_machine.travel(dt.datetime(2026, 11, 24, utc_hour, 0, tzinfo=dt.UTC), tick=False):
        consent_demo.seed()
        templates_demo.seed()
        demo.seed()
    replies = OutboundMessage.objects.filter(origin_kind=OriginKind.AGENT_REPLY)
    assert replies.exists()
    assert set(replies.values_list("status", flat=True)) == {MessageStatus.QUEUED}


def test_the_demo_seeds_teams_policy_and_cases_with_history_once(db):
    consent_demo.seed()
    templates_demo.seed()
    assert demo.seed() > 0
    statuses = set(SupportCase.objects.values_list("status", flat=True))
    assert {CaseStatus.OPEN, CaseStatus.ESCALATED} <= statuses
    ana_case = SupportCase.objects.get(contact__external_id="cus_ana")
    kinds = set(ana_case.events.values_list("kind", flat=True))
    assert {CaseEventKind.OPENED, CaseEventKind.NOTE, CaseEventKind.AGENT_REPLY, CaseEventKind.ESCALATION} <= kinds
    policy = EscalationPolicy.objects.get(name=demo.DEFAULT_POLICY)
    assert Journey.objects.get(key=f"support-escalation-{policy.pk}-opened").live_version is not None
    assert demo.seed() == 0


TASK_JOURNEY = {"trigger": {"event": "order.stuck"},
                "steps": [{"key": "human", "type": "task", "title": "Call the customer about the stuck order"}]}


def test_a_journey_task_step_opens_a_case(db):
    journey = journey_services.journey_create(key="stuck-orders", name="Stuck orders", message_class="operational",
                                              actor="marketer", definition=TASK_JOURNEY)
    version = journey_services.journey_publish(journey=journey, actor="marketer")
    if version.status == "in_review":
        journey_services.journey_version_approve(version=version, actor="reviewer")
    customer = factories.contact()
    now = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
    journey_services.enrollments_enroll(journey=journey, contacts=[customer], actor="test", now=now)
    journey_services.advance(now=now)
    case = SupportCase.objects.get(contact=customer)
    assert case.source == CaseSource.JOURNEY_STEP and case.journey_task_id is not None
    # The case is where the work happens now: the journey's Task is done, not open twice.
    task = Task.objects.get(pk=case.journey_task_id)
    assert task.status == TaskStatus.DONE and task.done_at == now
    assert case.subject == "Call the customer about the stuck order"


def test_an_operator_edits_an_escalation_policy_in_the_admin_and_it_waits_for_a_reviewer(
    operator, case_templates, settings
):
    settings.JOURNEYS_APPROVAL_CLASSES = ["marketing", "operational"]
    client = Client()
    client.force_login(operator)
    prefix = "steps"
    response = client.post("/admin/support/escalationpolicy/add/", {
        "name": "Complaints", "priority": "", "category": "complaint", "active": "on",
        f"{prefix}-TOTAL_FORMS": "1", f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-0-phase": "opened", f"{prefix}-0-delay_minutes": "0", f"{prefix}-0-action": "send",
        f"{prefix}-0-channel": "email", f"{prefix}-0-template_key": "case-ack-email",
    }, follow=True)
    assert response.status_code == 200
    policy = EscalationPolicy.objects.get(name="Complaints")
    journey = Journey.objects.get(key=f"support-escalation-{policy.pk}-opened")
    [version] = journey.versions.all()
    assert version.status == "in_review" and journey.live_version is None
    assert "waits for a reviewer in Journeys" in response.content.decode()


def test_without_operational_approval_an_edited_escalation_policy_goes_live_at_once(
    operator, case_templates, settings
):
    settings.JOURNEYS_APPROVAL_CLASSES = ["marketing"]
    client = Client()
    client.force_login(operator)
    response = client.post("/admin/support/escalationpolicy/add/", {
        "name": "Complaints", "priority": "", "category": "complaint", "active": "on",
        "steps-TOTAL_FORMS": "1", "steps-INITIAL_FORMS": "0",
        "steps-0-phase": "opened", "steps-0-delay_minutes": "0", "steps-0-action": "send",
        "steps-0-channel": "email", "steps-0-template_key": "case-ack-email",
    }, follow=True)
    assert response.status_code == 200
    journey = Journey.objects.get(key=f"support-escalation-{EscalationPolicy.objects.get().pk}-opened")
    assert journey.live_version is not None
    assert "is live: new cases follow it" in response.content.decode()


def test_a_send_step_without_a_template_is_a_form_error(operator):
    client = Client()
    client.force_login(operator)
    response = client.post("/admin/support/escalationpolicy/add/", {
        "name": "Broken", "active": "on", "steps-TOTAL_FORMS": "1", "steps-INITIAL_FORMS": "0",
        "steps-0-phase": "opened", "steps-0-delay_minutes": "0", "steps-0-action": "send",
    })
    assert response.status_code == 200
    assert "A send step needs a template." in response.content.decode()
    assert not EscalationPolicy.objects.filter(name="Broken").exists()


def test_merging_contacts_moves_cases_and_erasing_redacts_them(billing):
    survivor, merged = factories.contact(), factories.contact()
    case = factories.case(contact_=merged, team_=billing, subject="My card 4111 was charged")
    contact_merge(survivor=survivor, merged=merged, actor="test")
    case.refresh_from_db()
    assert case.contact == survivor
    contact_erase(contact=survivor, actor="test")
    case.refresh_from_db()
    assert case.subject == "[erased]"
    assert not case.history.filter(subject__contains="4111").exists()


def test_working_hours_that_end_before_they_start_are_a_form_error(operator, billing):
    client = Client()
    client.force_login(operator)
    response = client.post(f"/admin/support/team/{billing.pk}/change/", {
        "name": "Billing", "group": billing.group_id, "supervisor": "", "timezone": "Europe/Lisbon", "email": "",
        "working_hours-TOTAL_FORMS": "1", "working_hours-INITIAL_FORMS": "0",
        "working_hours-0-weekday": "0", "working_hours-0-start": "17:00", "working_hours-0-end": "09:00",
        "holidays-TOTAL_FORMS": "0", "holidays-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200
    assert "The end must come after the start" in response.content.decode()


def test_an_unknown_team_time_zone_is_a_form_error(operator, billing):
    client = Client()
    client.force_login(operator)
    response = client.post(f"/admin/support/team/{billing.pk}/change/", {
        "name": "Billing", "group": billing.group_id, "timezone": "Mars/Olympus",
        "working_hours-TOTAL_FORMS": "0", "working_hours-INITIAL_FORMS": "0",
        "holidays-TOTAL_FORMS": "0", "holidays-INITIAL_FORMS": "0",
    })
    assert "is not an IANA time zone" in response.content.decode()


def test_an_agent_opens_a_case_in_the_admin_through_the_service(ada, billing):
    customer = factories.contact()
    client = Client()
    client.force_login(ada)
    assert client.get("/admin/support/supportcase/add/").status_code == 200
    response = client.post("/admin/support/supportcase/add/", {
        "contact": customer.pk, "subject": "Phoned in: wrong address", "category": "order_status",
        "priority": "normal", "team": billing.pk, "assigned_agent": ada.pk,
    })
    assert response.status_code == 302
    case = SupportCase.objects.get(contact=customer)
    assert case.number and case.source == CaseSource.ADMIN and case.assigned_agent == ada
    assert case.events.filter(kind=CaseEventKind.OPENED, actor="user:ada_billing").exists()
