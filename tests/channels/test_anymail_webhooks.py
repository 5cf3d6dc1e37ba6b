"""Email tracking through anymail's own webhook views (Postmark's format
here) and its normalised tracking signal."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client

from channels import services
from channels.models import MessageStatus
from consent.models import Channel, Suppression, SuppressionReason

pytestmark = pytest.mark.django_db
URL = "/webhooks/anymail/postmark/tracking/"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:s3cret"}


@pytest.fixture
def sent_email(contact, email_template):
    message = services.send(contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                            idempotency_key="mail", template_key=email_template.key).messages[0]
    services.message_transition(message=message, to=MessageStatus.SENDING)
    services.message_transition(message=message, to=MessageStatus.SENT, fields={"provider_message_id": "pm-1"})
    return message


def post(event: dict, credentials: str | None = "hook:s3cret"):
    headers = {}
    if credentials:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    return Client().post(URL, json.dumps(event), content_type="application/json", **headers)


def delivery(message_id="pm-1"):
    return {"RecordType": "Delivery", "MessageID": message_id, "Recipient": "a@example.com",
            "DeliveredAt": "2026-11-23T10:00:00Z", "Metadata": {}}


def test_a_delivery_event_marks_the_email_delivered(sent_email):
    assert post(delivery()).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == MessageStatus.DELIVERED


@pytest.mark.parametrize("credentials", [None, "hook:wrong"])
def test_a_tracking_call_without_the_secret_changes_nothing(sent_email, credentials):
    assert post(delivery(), credentials).status_code in (400, 401, 403)
    sent_email.refresh_from_db()
    assert sent_email.status == MessageStatus.SENT
    assert not sent_email.events.filter(kind="report").exists()


def test_tracking_is_refused_when_no_secret_is_configured(sent_email, settings):
    settings.ANYMAIL = {}
    assert post(delivery()).status_code == 403
    sent_email.refresh_from_db()
    assert sent_email.status == MessageStatus.SENT


def test_a_hard_bounce_marks_bounced_and_suppresses_the_address(sent_email):
    event = {"RecordType": "Bounce", "Type": "HardBounce", "ID": 42, "MessageID": "pm-1",
             "Email": sent_email.address, "BouncedAt": "2026-11-23T10:00:00Z", "Description": "no such user"}
    post(event)
    post(event)  # a retried webhook
    sent_email.refresh_from_db()
    assert sent_email.status == MessageStatus.BOUNCED
    assert Suppression.objects.filter(address=sent_email.address, channel=Channel.EMAIL,
                                      reason=SuppressionReason.HARD_BOUNCE).count() == 1


def test_a_spam_complaint_suppresses_the_address(sent_email):
    post({"RecordType": "SpamComplaint", "Type": "SpamComplaint", "ID": 7, "MessageID": "pm-1",
          "Email": sent_email.address, "BouncedAt": "2026-11-23T10:00:00Z"})
    assert Suppression.objects.filter(address=sent_email.address, reason=SuppressionReason.SPAM_COMPLAINT).exists()


def test_opens_and_clicks_are_recorded_after_delivery(sent_email):
    post(delivery())
    post({"RecordType": "Open", "MessageID": "pm-1", "Recipient": sent_email.address,
          "ReceivedAt": "2026-11-23T11:00:00Z"})
    post({"RecordType": "Click", "MessageID": "pm-1", "Recipient": sent_email.address,
          "ReceivedAt": "2026-11-23T11:05:00Z", "OriginalLink": "https://example.com"})
    sent_email.refresh_from_db()
    assert sent_email.status == MessageStatus.DELIVERED
    assert sent_email.first_opened_at.isoformat() == "2026-11-23T11:00:00+00:00"
    assert sent_email.first_clicked_at is not None


def test_an_event_for_an_unknown_message_is_ignored(sent_email):
    assert post(delivery("pm-unknown")).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == MessageStatus.SENT
