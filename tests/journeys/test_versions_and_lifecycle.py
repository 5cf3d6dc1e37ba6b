from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from channels.models import OutboundMessage
from journeys import services
from journeys.definition import DefinitionError
from journeys.models import (
    Enrollment,
    EnrollmentStatus,
    ImmutableVersionError,
    Journey,
    JourneyStatus,
    StepOutcome,
    VersionStatus,
)
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.usefixtures("email_template", "sms_template")]

STEPS = [
    {"key": "pause", "type": "wait", "duration": "1d"},
    {"key": "mail", "type": "send", "template": "welcome-email"},
]


def draft(key="onb", message_class="operational") -> Journey:
    return services.journey_create(key=key, name="Onboarding", message_class=message_class, actor="mia",
                                   definition={"trigger": {"event": "user.signed_up"}, "steps": STEPS})


def test_publishing_a_marketing_or_operational_journey_waits_for_a_reviewer():
    journey = draft()

    version = services.journey_publish(journey=journey, actor="mia")

    journey.refresh_from_db()
    assert version.status == VersionStatus.IN_REVIEW
    assert journey.status == JourneyStatus.DRAFT
    assert journey.live_version is None


def test_the_editor_cannot_approve_their_own_version_but_another_reviewer_can():
    journey = draft()
    services.journey_update(journey=journey, actor="max", description="tweaked")
    version = services.journey_publish(journey=journey, actor="mia")

    for editor in ("mia", "max"):
        with pytest.raises(services.JourneyError, match="another reviewer"):
            services.journey_version_approve(version=version, actor=editor)
    services.journey_version_approve(version=version, actor="rob")

    journey.refresh_from_db()
    version.refresh_from_db()
    assert (journey.status, journey.live_version) == (JourneyStatus.ACTIVE, version)
    assert (version.status, version.reviewed_by) == (VersionStatus.APPROVED, "rob")


@override_settings(JOURNEYS_APPROVAL_CLASSES=["marketing"])
def test_classes_not_configured_for_review_go_live_at_once():
    version = services.journey_publish(journey=draft(), actor="mia")

    assert version.status == VersionStatus.APPROVED


def test_a_rejected_version_never_goes_live_and_needs_a_reason():
    version = services.journey_publish(journey=draft(), actor="mia")
    with pytest.raises(services.JourneyError):
        services.journey_version_reject(version=version, actor="rob", note=" ")

    services.journey_version_reject(version=version, actor="rob", note="too pushy")

    with pytest.raises(services.IllegalTransition):
        services.journey_version_approve(version=version, actor="rob")
    assert Journey.objects.get(pk=version.journey_id).live_version is None


def test_a_published_version_is_immutable():
    version = services.journey_publish(journey=draft(), actor="mia")
    version.definition = {"steps": []}

    with pytest.raises(ImmutableVersionError):
        version.save()


def test_publishing_refuses_a_send_whose_template_has_no_approved_version():
    journey = services.journey_create(key="bad", name="Bad", message_class="marketing", actor="mia", definition={
        "steps": [{"key": "mail", "type": "send", "template": "nope"}]})

    with pytest.raises(DefinitionError, match=r"steps\[0\] \(mail\)\.template: unknown template 'nope'"):
        services.journey_publish(journey=journey, actor="mia")


def test_enrollments_stay_on_the_version_they_entered(t0):
    journey = live_journey("pin", STEPS, trigger={"event": "user.signed_up"})
    first = ContactFactory()
    emit(first, "user.signed_up", t0)
    run(t0)
    services.journey_update(journey=journey, actor="mia", definition={
        "trigger": {"event": "user.signed_up"},
        "steps": [{"key": "pause", "type": "wait", "duration": "1d"},
                  {"key": "text", "type": "send", "template": "nudge-sms"}]})
    v2 = services.journey_publish(journey=journey, actor="mia")
    services.journey_version_approve(version=v2, actor="rob")
    second = ContactFactory()
    emit(second, "user.signed_up", t0 + dt.timedelta(hours=1))
    run(t0 + dt.timedelta(hours=1))

    run(t0 + dt.timedelta(days=2))

    assert Enrollment.objects.get(contact=first).version.number == 1
    assert Enrollment.objects.get(contact=second).version == v2
    assert OutboundMessage.objects.get(contact=first).channel == "email"
    assert OutboundMessage.objects.get(contact=second).channel == "sms"


def test_pause_keeps_enrollments_and_sends_nothing_and_resume_carries_on(t0):
    journey = live_journey("pause", STEPS, trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)

    services.journey_pause(journey=journey, actor="otto")
    run(t0 + dt.timedelta(days=2))
    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.PAUSED
    assert not OutboundMessage.objects.exists()

    services.journey_resume(journey=journey, actor="otto")
    run(t0 + dt.timedelta(days=2))
    message = OutboundMessage.objects.get()
    assert (message.status, message.origin_step_key) == ("queued", "mail")
    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.COMPLETED


def test_resuming_after_a_send_window_passed_skips_it_instead_of_blasting(t0):
    journey = live_journey("window", [
        {"key": "day-before", "type": "wait_until", "property": "event.appointment_at", "offset": "-1d",
         "on_passed": "end"},
        {"key": "mail", "type": "send", "template": "welcome-email"},
    ], trigger={"event": "appointment.booked"})
    contact = ContactFactory()
    emit(contact, "appointment.booked", t0, appointment_at=(t0 + dt.timedelta(days=3)).isoformat())
    run(t0)
    services.journey_pause(journey=journey, actor="otto")
    # Due now (the day before, within the grace): an active journey would send here.
    run(t0 + dt.timedelta(days=2, minutes=10))
    assert not OutboundMessage.objects.exists()
    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.PAUSED

    services.journey_resume(journey=journey, actor="otto")
    run(t0 + dt.timedelta(days=2, hours=6))

    assert not OutboundMessage.objects.exists()
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.status == EnrollmentStatus.COMPLETED
    assert enrollment.executions.get().outcome == StepOutcome.PASSED


def test_illegal_transitions_are_refused():
    journey = draft()
    with pytest.raises(services.IllegalTransition):
        services.journey_pause(journey=journey, actor="otto")
    services.journey_archive(journey=journey, actor="otto")
    with pytest.raises(services.IllegalTransition):
        services.journey_resume(journey=journey, actor="otto")


def test_archiving_exits_open_enrollments(t0):
    journey = live_journey("arch", STEPS, trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)

    services.journey_archive(journey=journey, actor="otto")

    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.EXITED


def test_an_operator_exits_one_enrollment_and_its_unsent_message_is_cancelled(t0):
    live_journey("op", [
        {"key": "mail", "type": "send", "template": "welcome-email"},
        {"key": "pause", "type": "wait", "duration": "1d"},
    ], trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)
    enrollment = Enrollment.objects.get(contact=contact)

    services.enrollment_exit(enrollment=enrollment, actor="otto", reason="asked by phone")

    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.EXITED
    assert "asked by phone" in enrollment.end_reason
    assert OutboundMessage.objects.get(contact=contact).status == "cancelled"
    with pytest.raises(services.IllegalTransition):
        services.enrollment_exit(enrollment=enrollment, actor="otto")


def test_journey_changes_are_kept_in_history():
    journey = draft()
    services.journey_update(journey=journey, actor="max", priority=70)

    reasons = list(journey.history.values_list("history_change_reason", flat=True))
    assert reasons[0] == "edited by max"
    assert journey.history.count() == 2
