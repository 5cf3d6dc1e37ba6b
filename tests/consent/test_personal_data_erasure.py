"""Erasure leaves no copy of a contact's addresses anywhere: every table in
the database (history tables, the outbox, events, cases, the admin log) is
scanned for them as text after the contact is erased."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from channels import services as channel_services
from channels.inbound import inbound_receive
from channels.models import DeliveryEvent
from consent import services
from consent.models import Channel, ConsentSource, ConsentStatus, Contact
from support import services as support_services
from tests.channels.factories import channel_template
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

OLD_EMAIL = "jane.old@example.com"
EMAIL = "jane.doe@example.com"
PHONE = "+14155550142"
AT = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


def tables_containing(needle: str) -> list[str]:
    """Tables with a row whose text form (every column, JSON included) contains the needle."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT count(*) FROM "{table}" AS row WHERE row::text ILIKE %s', [f"%{needle}%"])
            if cursor.fetchone()[0]:
                found.append(table)
    return found


def contact_with_a_trail() -> Contact:
    """A contact whose addresses reached every app the way production puts them there."""
    contact, _ = services.contact_upsert(
        external_id="cus_trail", data={"email": OLD_EMAIL, "phone": PHONE, "whatsapp_id": PHONE}, actor="test"
    )
    contact, _ = services.contact_upsert(external_id="cus_trail", data={"email": EMAIL}, actor="test")
    services.push_device_register(contact=contact, token="fcm-token-of-jane", platform="android")
    services.suppression_create(address=OLD_EMAIL, reason="manual", note=f"asked on {PHONE}", actor="test")
    services.suppression_create(contact=contact, reason="manual", note=f"also {EMAIL}", actor="test")
    services.consent_record(contact=contact, channel=Channel.EMAIL, purpose="marketing",
                            status=ConsentStatus.GRANTED, source=ConsentSource.FORM, actor="test",
                            evidence={"form_email": EMAIL})
    sms = channel_template(Channel.SMS)
    message = channel_services.send(contact=contact, data={"event": {"code": "1"}},
                                    origin=channel_services.Origin(kind="api"), idempotency_key="trail",
                                    template_key=sms.key).messages[0]
    # As a provider's bounce report is stored: its text quotes the address.
    DeliveryEvent.objects.create(message=message, kind=DeliveryEvent.Kind.REPORT, status="failed",
                                 detail=f"550 <{EMAIL}> and {PHONE} rejected", payload={"to": PHONE},
                                 received_at=timezone.now())
    inbound_receive(provider="twilio", provider_message_id="SMtrail", from_address=PHONE, to_address="",
                    body=f"write to {EMAIL}", payload={"From": PHONE})
    case = support_services.case_open(contact=contact, subject=f"Refund to {EMAIL}", category="billing",
                                      priority="normal", source="api", actor="test")
    agent = User.objects.create_user("agent-trail", is_staff=True)
    support_services.case_note_add(case=case, author=agent, body=f"called {PHONE}")
    live_journey("trail", [{"key": "hook", "type": "webhook", "url": "https://hooks.example.com/in"}],
                 trigger={"event": "signed_up"})
    emit(contact, "signed_up", AT, email=EMAIL, phone=PHONE)
    run(AT)
    return contact


def test_the_trail_reaches_the_tables_the_scan_reads():
    contact_with_a_trail()

    # The scan finds what it looks for; without this the next test could pass on an empty database.
    assert {"consent_historicalcontact", "consent_historicalsuppression", "channels_outboundmessage",
            "channels_deliveryevent", "channels_inboundmessage", "support_historicalsupportcase",
            "journeys_event", "journeys_enrollment", "journeys_webhookcall"} <= set(
        tables_containing(EMAIL) + tables_containing(OLD_EMAIL) + tables_containing(PHONE))


def test_after_erasure_no_table_holds_the_contact_s_emails_or_phone():
    contact = contact_with_a_trail()

    services.contact_erase(contact=contact, actor="test")

    assert tables_containing(EMAIL) == []
    assert tables_containing(OLD_EMAIL) == []
    assert tables_containing(PHONE) == []
    assert tables_containing("fcm-token-of-jane") == []


def test_after_erasure_a_suppression_of_an_earlier_address_still_holds():
    contact = contact_with_a_trail()

    services.contact_erase(contact=contact, actor="test")

    assert services.Suppression.objects.filter(address=services.address_hash(OLD_EMAIL)).exists()
