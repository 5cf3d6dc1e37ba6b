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
