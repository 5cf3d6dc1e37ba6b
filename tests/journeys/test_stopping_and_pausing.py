"""An ended enrollment's waiting messages are stopped, a paused journey's
deferred messages wait for the resume, and a tick never revives an
enrollment something else ended meanwhile."""

from __future__ import annotations

import datetime as dt

import pytest

from channels.models import OutboundMessage
from channels.services import messages_release_deferred
from consent.models import QuietHoursRule
from journeys import services
from journeys.engine import advance, enrollments_end
from journeys.events import process_events
from journeys.models import Enrollment, EnrollmentStatus, Journey, JourneyStatus, StepOutcome
from journeys.steps import HANDLERS, StepResult
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import grant, live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.usefixtures("email_template")]

LATE = dt.datetime(2026, 3, 2, 22, 0, tzinfo=dt.UTC)  # inside 21:00-08:00 quiet hours for a UTC contact
MORNING = dt.datetime(2026, 3, 3, 8, 0, tzinfo=dt.UTC)  # the quiet window ends
STEPS = [
    {"key": "mail", "type": "send", "template": "welcome-email"},
    {"key": "pause", "type": "wait", "duration": "1d"},
    {"key": "again", "type": "send", "template": "welcome-email"},
]


@pytest.fixture
def night(db) -> None:
    QuietHoursRule.objects.create(name="nights", start=dt.time(21), end=dt.time(8))


@pytest.fixture
def contact(db):
    person = ContactFactory(timezone="UTC", phone="")
    grant(person, "email", purpose="operational", at=LATE - dt.timedelta(days=1))
    return person


def deferred_first_message(contact) -> OutboundMessage:
    run(LATE)
    message = OutboundMessage.objects.get(contact=contact)
    assert (message.status, message.decision_reason) == ("deferred", "quiet_hours")
    return message


def test_a_goal_the_tick_sees_cancels_the_earlier_steps_deferred_message(night, contact):
    live_journey("onb", STEPS, trigger={"event": "user.signed_up"}, goal_events=["user.activated"])
    emit(contact, "user.signed_up", LATE)
    message = deferred_first_message(contact)
    # Stored but not yet processed: the tick, checking exits before the next step, sees it first.
    emit(contact, "user.activated", LATE + dt.timedelta(hours=1))

    assert advance(now=LATE + dt.timedelta(days=1)) == 1

    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.status == EnrollmentStatus.CONVERTED
    message.refresh_from_db()
    assert message.status == "cancelled"
    assert messages_release_deferred(now=LATE + dt.timedelta(days=2)) == 0
    assert not OutboundMessage.objects.filter(status="queued").exists()


def test_an_exit_event_stops_the_waiting_message_of_an_enrollment_that_already_exited(night, contact):
    live_journey("onb", STEPS, trigger={"event": "user.signed_up"}, exit_events=["user.deleted"])
    emit(contact, "user.signed_up", LATE)
    message = deferred_first_message(contact)
    # Ended by a path that leaves the outbox alone (a contact merge does, for one).
    Enrollment.objects.filter(contact=contact).update(status=EnrollmentStatus.EXITED, ended_at=LATE,
                                                      next_run_at=None)
    emit(contact, "user.deleted", LATE + dt.timedelta(hours=1))

    assert process_events(now=LATE + dt.timedelta(hours=1)) == 1

    message.refresh_from_db()
    assert message.status == "cancelled"


def test_a_paused_journeys_deferred_message_waits_and_goes_after_the_resume(night, contact):
    journey = live_journey("onb", STEPS, trigger={"event": "user.signed_up"})
    emit(contact, "user.signed_up", LATE)
    message = deferred_first_message(contact)
    services.journey_pause(journey=journey, actor="otto")

    assert messages_release_deferred(now=MORNING) == 0

    message.refresh_from_db()
    assert (message.status, message.decision_reason) == ("deferred", "journey_paused")
    assert message.deliver_after == MORNING + dt.timedelta(minutes=5)
    services.journey_resume(journey=journey, actor="otto")
    assert messages_release_deferred(now=MORNING + dt.timedelta(minutes=5)) == 1
    message.refresh_from_db()
    assert message.status == "queued"


def test_an_archived_journeys_deferred_message_is_dropped_with_its_reason(night, contact):
    journey = live_journey("onb", STEPS, trigger={"event": "user.signed_up"})
    emit(contact, "user.signed_up", LATE)
    message = deferred_first_message(contact)
    # journey_archive cancels what waits; a message left behind (archived by a path that
    # does not, or deferred meanwhile) is dropped by the guard.
    Journey.objects.filter(pk=journey.pk).update(status=JourneyStatus.ARCHIVED)

    assert messages_release_deferred(now=MORNING) == 0

    message.refresh_from_db()
    assert (message.status, message.decision_reason) == ("suppressed", "journey_archived")


def test_a_tick_does_not_revive_an_enrollment_a_hook_ended_during_it(monkeypatch, t0):
    live_journey("hooked", [{"key": "pause", "type": "wait", "duration": "1d"}], trigger={"event": "user.signed_up"})
    person = ContactFactory()
    emit(person, "user.signed_up", t0)
    run(t0)
    enrollment = Enrollment.objects.get(contact=person)

    def wait_while_a_hook_ends_it(enrollment, step, batch):
        # What a signal handler running inside the tick's transaction may do.
        enrollments_end(enrollment_ids=[enrollment.pk], status=EnrollmentStatus.EXITED, reason="case closed",
                        now=batch.now)
        return StepResult(StepOutcome.WAITING, wait_until=batch.now + dt.timedelta(hours=1))

    monkeypatch.setitem(HANDLERS, "wait", wait_while_a_hook_ends_it)
    enrollment.next_run_at = t0
    Enrollment.objects.filter(pk=enrollment.pk).update(next_run_at=t0)

    assert advance(now=t0 + dt.timedelta(minutes=1)) == 1

    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.end_reason, enrollment.next_run_at) == (
        EnrollmentStatus.EXITED, "case closed", None
    )
