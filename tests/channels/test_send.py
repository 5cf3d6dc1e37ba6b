from __future__ import annotations

import pytest

from channels import services
from channels.delivery import deliver_batch
from channels.models import MessageStatus, OutboundMessage
from consent.policy import Reason

pytestmark = pytest.mark.django_db


def api_origin():
    return services.Origin(kind=services.OriginKind.API, label="test")


def test_an_allowed_send_writes_a_queued_row_with_the_rendered_content(contact, sms_template):
    result = services.send(contact=contact, data={"contact": {"first_name": "Ana"}, "event": {"code": "42"}},
                           origin=api_origin(), idempotency_key="k1", template_key=sms_template.key)
    assert result.status == services.SendStatus.QUEUED
    message = result.messages[0]
    assert message.status == MessageStatus.QUEUED
    assert message.address == contact.phone
    assert message.content["body"] == "Hi Ana, code 42"
    assert message.template_version_id == sms_template.live_version_id
    assert message.decision_reason == Reason.NO_CONSENT_NEEDED


def test_a_console_account_delivers_a_queued_message(contact, sms_template, console_accounts):
    result = services.send(contact=contact, data={"event": {"code": "42"}}, origin=api_origin(),
                           idempotency_key="k1", template_key=sms_template.key)
    report = deliver_batch(message_ids=[result.messages[0].pk])
    assert report.sent == 1
    message = OutboundMessage.objects.get(pk=result.messages[0].pk)
    assert message.status == MessageStatus.DELIVERED
    assert message.provider == "console"
    assert list(message.events.values_list("status", flat=True)) == ["queued", "sending", "sent", "delivered"]
