"""Consent's merge and erase reach channels' rows through registered handlers."""

from __future__ import annotations

import pytest

from channels import services
from channels.inbound import inbound_receive
from channels.models import InboundMessage, OutboundMessage
from consent import services as consent_services
from tests.channels import factories

pytestmark = pytest.mark.django_db


def test_a_merge_moves_messages_and_replies_to_the_survivor(sms_template):
    survivor = factories.contact_with_everything()
    merged = factories.contact_with_everything()
    services.send(contact=merged, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                  idempotency_key="m", template_key=sms_template.key)
    inbound_receive(provider="twilio", provider_message_id="SMm", from_address=merged.phone, to_address="",
                    body="hello", payload={})
    record = consent_services.contact_merge(survivor=survivor, merged=merged, actor="test")
    assert record.moved["channels"] == 2
    assert OutboundMessage.objects.get().contact == survivor
    assert InboundMessage.objects.get().contact == survivor


def test_erasure_redacts_content_addresses_and_replies_but_keeps_statuses(contact, sms_template):
    message = services.send(contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                            idempotency_key="e", template_key=sms_template.key).messages[0]
    inbound_receive(provider="twilio", provider_message_id="SMe", from_address=contact.phone, to_address="",
                    body="my secret", payload={"Body": "my secret"})
    consent_services.contact_erase(contact=contact, actor="test")
    message.refresh_from_db()
    assert message.content == {"redacted": True}
    assert message.address == ""
    assert message.status == "queued"
    reply = InboundMessage.objects.get()
    assert (reply.body, reply.from_address, reply.payload) == ("", "", {"redacted": True})
