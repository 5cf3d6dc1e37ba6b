from __future__ import annotations

import datetime as dt

import pytest

from channels.models import OutboundMessage
from journeys.events import in_holdout
from journeys.models import Enrollment, EnrollmentStatus, EntryDecision, EntryOutcome, StepOutcome
from journeys.services import enrollments_enroll
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.usefixtures("email_template")]

WAIT_THEN_SEND = [
    {"key": "pause", "type": "wait", "duration": "1d"},
    {"key": "mail", "type": "send", "template": "welcome-email"},
]


@pytest.mark.parametrize(
    ("condition", "properties", "entered"),
    [
        ({"field": "event.plan", "op": "equals", "value": "pro"}, {"plan": "Pro"}, True),
        ({"field": "event.plan", "op": "equals", "value": "pro"}, {"plan": "free"}, False),
        ({"field": "event.plan", "op": "not_equals", "value": "pro"}, {}, True),
        ({"field": "event.plan", "op": "in", "value": ["pro", "team"]}, {"plan": "team"}, True),
        ({"field": "event.plan", "op": "exists"}, {}, False),
        ({"field": "event.amount", "op": "gt", "value": 100}, {"amount": "150.5"}, True),
        ({"field": "event.amount", "op": "lte", "value": 100}, {"amount": 150}, False),
        ({"field": "event.tags", "op": "contains", "value": "vip"}, {"tags": ["vip", "eu"]}, True),
        ({"field": "event.when", "op": "before", "value": "2026-03-01T00:00:00Z"}, {"when": "2026-02-01"}, True),
        ({"field": "event.when", "op": "after", "value": "-7d"}, {"when": "2026-02-01T00:00:00Z"}, False),
        ({"field": "contact.locale", "op": "equals", "value": "en"}, {}, True),
        ({"field": "contact.plan", "op": "equals", "value": "pro"}, {}, False),
    ],
)
def test_entry_conditions_on_event_properties_and_contact_attributes(t0, condition, properties, entered):
    live_journey("cond", WAIT_THEN_SEND, trigger={"event": "user.signed_up", "conditions": [condition]})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0, **properties)

    run(t0)

    assert Enrollment.objects.filter(contact=contact).exists() is entered
    decision = EntryDecision.objects.get(contact=contact)
    assert decision.outcome == (EntryOutcome.ENTERED if entered else EntryOutcome.CONDITION_FALSE)


def test_other_events_do_not_enroll(t0):
    live_journey("cond", WAIT_THEN_SEND, trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.logged_in", t0)

    run(t0)

    assert not Enrollment.objects.exists()


def test_reentry_once_refuses_a_second_enrollment_and_records_why(t0):
    live_journey("once", [{"key": "pause", "type": "wait", "duration": "1h"}], trigger={"event": "go"}, reentry="once")
    contact = ContactFactory()
    emit(contact, "go", t0)
    run(t0)
    run(t0 + dt.timedelta(hours=2))
    emit(contact, "go", t0 + dt.timedelta(days=1))

    run(t0 + dt.timedelta(days=1))

    assert Enrollment.objects.filter(contact=contact).count() == 1
    assert EntryDecision.objects.filter(contact=contact, outcome=EntryOutcome.REENTRY_RULE).exists()


def test_reentry_after_a_cooldown(t0):
    live_journey("cool", [{"key": "pause", "type": "wait", "duration": "1h"}], trigger={"event": "go"},
                 reentry={"cooldown": "7d"})
    contact = ContactFactory()
    for day in (0, 3, 8):
        at = t0 + dt.timedelta(days=day)
        emit(contact, "go", at)
        run(at)
        run(at + dt.timedelta(hours=2))

    entered = sorted(Enrollment.objects.filter(contact=contact).values_list("entered_at", flat=True))
    assert entered == [t0, t0 + dt.timedelta(days=8)]


def test_reentry_always_still_allows_only_one_open_enrollment(t0):
    live_journey("always", [{"key": "pause", "type": "wait", "duration": "1d"}], trigger={"event": "go"},
                 reentry="always")
    contact = ContactFactory()
    emit(contact, "go", t0)
    emit(contact, "go", t0 + dt.timedelta(minutes=5))
    run(t0 + dt.timedelta(minutes=5))
    assert Enrollment.objects.filter(contact=contact).count() == 1
    assert EntryDecision.objects.filter(contact=contact, outcome=EntryOutcome.ALREADY_ENROLLED).count() == 1

    run(t0 + dt.timedelta(days=1, minutes=5))
    emit(contact, "go", t0 + dt.timedelta(days=2))
    run(t0 + dt.timedelta(days=2))

    assert Enrollment.objects.filter(contact=contact).count() == 2


def test_a_goal_event_converts_and_an_exit_event_exits_before_the_next_step(t0, email_template):
    live_journey("goal", WAIT_THEN_SEND, trigger={"event": "user.signed_up"}, goal_events=["user.activated"],
                 exit_events=["user.deleted"])
    converts, leaves = ContactFactory(), ContactFactory()
    for contact in (converts, leaves):
        emit(contact, "user.signed_up", t0)
    run(t0)
    emit(converts, "user.activated", t0 + dt.timedelta(hours=5))
    emit(leaves, "user.deleted", t0 + dt.timedelta(hours=6))

    run(t0 + dt.timedelta(days=2))

    assert Enrollment.objects.get(contact=converts).status == EnrollmentStatus.CONVERTED
    assert Enrollment.objects.get(contact=leaves).status == EnrollmentStatus.EXITED
    assert not OutboundMessage.objects.exists()


def test_an_exit_stored_but_not_yet_processed_still_stops_the_next_step(t0, email_template):
    live_journey("goal", WAIT_THEN_SEND, trigger={"event": "user.signed_up"}, goal_events=["user.activated"])
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)
    emit(contact, "user.activated", t0 + dt.timedelta(hours=5))
    from journeys.engine import advance

    advance(now=t0 + dt.timedelta(days=1))  # the tick runs before the event is processed

    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.CONVERTED
    assert not OutboundMessage.objects.exists()


def test_an_exit_that_happened_after_a_late_arriving_entry_means_no_entry(t0):
    live_journey("late", WAIT_THEN_SEND, trigger={"event": "user.signed_up"}, goal_events=["user.activated"])
    contact = ContactFactory()
    emit(contact, "user.activated", t0 + dt.timedelta(hours=1))
    run(t0 + dt.timedelta(hours=1))
    emit(contact, "user.signed_up", t0)  # arrives late, happened first

    run(t0 + dt.timedelta(hours=2))

    assert not Enrollment.objects.filter(contact=contact).exists()
    assert EntryDecision.objects.get(contact=contact).outcome == EntryOutcome.EXITED_BEFORE_ENTRY


def test_an_exit_older_than_the_entry_arriving_late_does_not_end_it(t0):
    live_journey("late", WAIT_THEN_SEND, trigger={"event": "user.signed_up"}, exit_events=["user.deleted"],
                 reentry="always")
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)
    emit(contact, "user.deleted", t0 - dt.timedelta(days=30))  # an old event from an earlier life

    run(t0 + dt.timedelta(hours=1))

    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.ACTIVE


def test_a_duplicate_event_enrolls_once(t0):
    live_journey("dup", WAIT_THEN_SEND, trigger={"event": "user.signed_up"}, reentry="always")
    contact = ContactFactory()
    assert emit(contact, "user.signed_up", t0, key="same") == 1
    assert emit(contact, "user.signed_up", t0, key="same") == 0

    run(t0)

    assert Enrollment.objects.filter(contact=contact).count() == 1
    assert EntryDecision.objects.filter(contact=contact).count() == 1


def test_manual_enrollment_follows_the_reentry_rule(t0):
    journey = live_journey("manual", WAIT_THEN_SEND, reentry="once")
    first, second = ContactFactory(), ContactFactory()

    enrolled = enrollments_enroll(journey=journey, contacts=[first, second], actor="tester", now=t0)
    again = enrollments_enroll(journey=journey, contacts=[first], actor="tester", now=t0)

    assert {e.contact for e in enrolled} == {first, second}
    assert again == []
    assert EntryDecision.objects.filter(contact=first, outcome=EntryOutcome.ALREADY_ENROLLED).exists()


def test_holdout_contacts_are_enrolled_and_tracked_but_sent_nothing(t0, email_template):
    live_journey("held", [{"key": "mail", "type": "send", "template": "welcome-email"}],
                 trigger={"event": "user.signed_up"}, goal_events=["user.activated"], holdout_percent=50)
    contacts = ContactFactory.create_batch(60)
    for contact in contacts:
        emit(contact, "user.signed_up", t0)

    run(t0)

    control = Enrollment.objects.filter(is_control=True)
    assert 15 <= control.count() <= 45
    for enrollment in control:
        assert in_holdout("held", enrollment.contact.external_id, 50)
        assert enrollment.executions.get().outcome == StepOutcome.HOLDOUT
    assert OutboundMessage.objects.count() == 60 - control.count()
    assert not OutboundMessage.objects.filter(contact__enrollments__is_control=True).exists()


def test_holdout_membership_is_deterministic_per_journey_and_contact():
    assert in_holdout("j", "cus_1", 10) == in_holdout("j", "cus_1", 10)
    assert not in_holdout("j", "cus_1", 0)
    share = sum(in_holdout("j", f"cus_{n}", 10) for n in range(5000)) / 5000
    assert 0.08 < share < 0.12
