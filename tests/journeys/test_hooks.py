from __future__ import annotations

import datetime as dt

import pytest

from channels.models import InboundMessage
from channels.signals import inbound_message_received
from consent.services import contact_erase, contact_merge
from journeys.models import Enrollment, EnrollmentStatus, Event
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = pytest.mark.django_db


def test_a_reply_becomes_a_message_replied_event_once():
    contact = ContactFactory()
    inbound = InboundMessage.objects.create(
        contact=contact, channel="sms", from_address=contact.phone, body=" C ",
        received_at=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC), provider_message_id="SM1",
    )

    inbound_message_received.send(sender=InboundMessage, inbound=inbound)
    inbound_message_received.send(sender=InboundMessage, inbound=inbound)

    event = Event.objects.get()
    assert (event.name, event.contact, event.properties["body"]) == ("message.replied", contact, "C")
    assert event.idempotency_key == f"inbound:{inbound.pk}"


def test_merging_contacts_moves_events_and_enrollments(t0):
    live_journey("m", [{"key": "w", "type": "wait", "duration": "1d"}], trigger={"event": "go"})
    survivor, merged = ContactFactory(), ContactFactory()
    emit(merged, "go", t0)
    run(t0)

    contact_merge(survivor=survivor, merged=merged, actor="test")

    assert Event.objects.get().contact == survivor
    assert Enrollment.objects.get().contact == survivor


def test_erasing_a_contact_redacts_event_properties_and_ends_enrollments(t0):
    live_journey("e", [{"key": "w", "type": "wait", "duration": "1d"}], trigger={"event": "go"})
    contact = ContactFactory()
    emit(contact, "go", t0, email="secret@example.com")
    run(t0)

    contact_erase(contact=contact, actor="test")

    assert Event.objects.get().properties == {"redacted": True}
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.context) == (EnrollmentStatus.EXITED, {"redacted": True})


SEND_THEN_WAIT = [{"key": "mail", "type": "send", "template": "welcome-email"},
                  {"key": "w", "type": "wait", "duration": "1d"}]


@pytest.mark.usefixtures("email_template")
def test_a_merge_ends_the_clashing_enrollment_and_cancels_its_waiting_message(t0):
    from channels.models import OutboundMessage

    live_journey("m", SEND_THEN_WAIT, trigger={"event": "go"})
    survivor, merged = ContactFactory(), ContactFactory()
    emit(survivor, "go", t0)
    emit(merged, "go", t0)
    run(t0)
    merged_enrollment = Enrollment.objects.get(contact=merged)
    assert OutboundMessage.objects.get(origin_enrollment_id=merged_enrollment.pk).status == "queued"

    contact_merge(survivor=survivor, merged=merged, actor="test")

    merged_enrollment.refresh_from_db()
    assert merged_enrollment.contact == survivor
    assert (merged_enrollment.status, merged_enrollment.end_reason) == (EnrollmentStatus.EXITED, "contact merged")
    assert merged_enrollment.ended_at is not None
    assert merged_enrollment.next_run_at is None
    assert OutboundMessage.objects.get(origin_enrollment_id=merged_enrollment.pk).status == "cancelled"
    kept = Enrollment.objects.exclude(pk=merged_enrollment.pk).get()
    assert kept.status == EnrollmentStatus.ACTIVE
    assert OutboundMessage.objects.get(origin_enrollment_id=kept.pk).status == "queued"


@pytest.mark.usefixtures("email_template")
def test_a_merge_moves_an_enrollment_of_another_scope_without_ending_it(t0):
    from journeys.services import enrollment_start

    journey = live_journey("case", [{"key": "w", "type": "wait", "duration": "1d"}])
    survivor, merged = ContactFactory(), ContactFactory()
    enrollment_start(journey=journey, contact=survivor, context={}, now=t0, scope_key="case:1")
    moved = enrollment_start(journey=journey, contact=merged, context={}, now=t0, scope_key="case:2")

    contact_merge(survivor=survivor, merged=merged, actor="test")

    moved.refresh_from_db()
    assert (moved.contact, moved.status) == (survivor, EnrollmentStatus.ACTIVE)


@pytest.mark.usefixtures("email_template")
def test_erasure_ends_enrollments_with_ended_at_and_cancels_their_waiting_messages(t0):
    from channels.models import OutboundMessage

    live_journey("e", SEND_THEN_WAIT, trigger={"event": "go"})
    contact = ContactFactory()
    emit(contact, "go", t0)
    run(t0)

    contact_erase(contact=contact, actor="test")

    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.end_reason) == (EnrollmentStatus.EXITED, "contact erased")
    assert enrollment.ended_at is not None
    assert enrollment.context == {"redacted": True}
    assert OutboundMessage.objects.get(origin_enrollment_id=enrollment.pk).status == "cancelled"
    run(t0 + dt.timedelta(days=2))
    assert OutboundMessage.objects.filter(origin_enrollment_id=enrollment.pk).count() == 1
