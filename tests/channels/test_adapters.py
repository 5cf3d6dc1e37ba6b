"""Each real adapter, through its real library, to a local fake at the
network edge."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from channels import services
from channels.delivery import deliver_batch
from channels.models import Adapter, MessageStatus, OutboundMessage
from consent import services as consent_services
from consent.models import Channel, DevicePlatform, PushDevice, Suppression
from tests.channels import factories
from tests.channels.conftest import TWILIO_SID
from tests.channels.fakes import FakeTwilio, FakeWebPush

pytestmark = pytest.mark.django_db

DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}


def send_one(contact, channel, key=None):
    template = factories.channel_template(channel, key=key)
    result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"),
                           idempotency_key=f"adapter-{channel}-{contact.pk}", template_key=template.key)
    assert result.status == services.SendStatus.QUEUED, result
    return result.messages[0]


def delivered(message) -> OutboundMessage:
    deliver_batch(message_ids=[message.pk])
    return OutboundMessage.objects.get(pk=message.pk)


def test_sms_goes_through_the_twilio_sdk_to_the_messages_resource(contact, twilio_accounts, fake_twilio):
    message = delivered(send_one(contact, Channel.SMS))
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id.startswith("SM")
    request = fake_twilio.requests[0]
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request.form["To"] == contact.phone
    assert request.form["From"] == "+14155550000"
    assert request.form["Body"] == "Hi Ana, code 42"
    assert request.form["StatusCallback"].endswith(f"/webhooks/twilio/status/?message={message.pk}")


def test_a_whatsapp_template_goes_as_content_sid_and_variables(twilio_env, twilio_accounts, fake_twilio):
    contact = factories.contact_with_everything(whatsapp_id="+14155559999")
    template = factories.channel_template(Channel.WHATSAPP)
    twilio_accounts[Channel.WHATSAPP].options = {**twilio_accounts[Channel.WHATSAPP].options,
                                                  "content_sids": {template.key: "HXwhatsapp"}}
    twilio_accounts[Channel.WHATSAPP].save()
    result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"), idempotency_key="wa",
                           template_key=template.key)
    message = delivered(result.messages[0])
    assert message.status == MessageStatus.SENT
    form = fake_twilio.requests[0].form
    assert form["To"] == "whatsapp:+14155559999"
    assert form["From"] == "whatsapp:+14155550000"
    assert form["ContentSid"] == "HXwhatsapp"
    assert json.loads(form["ContentVariables"]) == {"1": "42"}


def test_an_rcs_card_goes_through_a_messaging_service_with_its_content_sid(contact, twilio_accounts, fake_twilio):
    message = delivered(send_one(contact, Channel.RCS))
    assert message.status == MessageStatus.SENT
    form = fake_twilio.requests[0].form
    assert form["To"] == f"rcs:{contact.phone}"
    assert form["MessagingServiceSid"] == "MG" + "1" * 32
    assert form["ContentSid"] == "HXrcs"
    assert json.loads(form["ContentVariables"])["description"] == "Your code is 42"


def test_email_goes_through_django_smtp_to_the_smtp_server(contact, fake_smtp):
    factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com",
                      options={"host": "127.0.0.1", "port": fake_smtp.port})
    message = delivered(send_one(contact, Channel.EMAIL))
    assert message.status == MessageStatus.SENT
    envelope = fake_smtp.handler.messages[0]
    assert envelope.rcpt_tos == [contact.email]
    assert envelope.mail_from == "hello@example.com"
    raw = envelope.content.decode()
    assert "Subject: Hi Ana" in raw
    assert f"Message-ID: <outbound-{message.pk}@example.com>" in raw
    assert message.provider_message_id == f"<outbound-{message.pk}@example.com>"


def test_a_refused_recipient_fails_at_once_and_suppresses_the_address(fake_smtp):
    contact = factories.contact_with_everything(email="gone@example.com")
    factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com",
                      options={"host": "127.0.0.1", "port": fake_smtp.port})
    message = delivered(send_one(contact, Channel.EMAIL))
    assert message.status == MessageStatus.FAILED
    assert message.attempts == 1
    assert "550" in message.error
    suppression = Suppression.objects.get(address="gone@example.com")
    assert suppression.reason == "hard_bounce" and suppression.channel == Channel.EMAIL


def test_email_goes_through_an_anymail_esp_backend(contact, monkeypatch):
    esp = _FakeMailgun().start()
    try:
        monkeypatch.setenv("ANYMAIL_API_KEY", "key-test")
        factories.account(Channel.EMAIL, Adapter.ANYMAIL, sender="noreply@example.com",
                          options={"esp": "mailgun", "settings": {"api_url": esp.url}})
        message = delivered(send_one(contact, Channel.EMAIL))
    finally:
        esp.stop()
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id == "<mailgun-id@example.com>"
    request = esp.requests[0]
    assert request.path == "/example.com/messages"
    assert b"outbound_message_id" in request.body


class _FakeMailgun(FakeTwilio):
    def default(self, path):
        return 200, {"id": "<mailgun-id@example.com>", "message": "Queued. Thank you."}


def test_push_goes_through_firebase_admin_to_the_fcm_endpoint(contact, fake_fcm):
    factories.account(Channel.PUSH, Adapter.FCM,
                      options={"project_id": "demo", "endpoint": fake_fcm.url, "anonymous": True})
    message = delivered(send_one(contact, Channel.PUSH))
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id.startswith("projects/demo/messages/")
    body = fake_fcm.requests[0].json
    assert fake_fcm.requests[0].path == "/v1/projects/demo/messages:send"
    assert body["message"]["token"] == message.address
    assert body["message"]["notification"] == {"title": "Hi Ana", "body": "Code 42"}


def test_an_unregistered_fcm_token_fails_at_once_and_deactivates_the_device(contact, fake_fcm):
    factories.account(Channel.PUSH, Adapter.FCM,
                      options={"project_id": "demo", "endpoint": fake_fcm.url, "anonymous": True})
    fake_fcm.script.append(fake_fcm.unregistered())
    message = delivered(send_one(contact, Channel.PUSH))
    assert message.status == MessageStatus.FAILED
    assert "UNREGISTERED" in message.error
    assert PushDevice.objects.get(token=message.address).active is False


def _browser_subscription(endpoint: str) -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return {"p256dh": b64(public), "auth": b64(os.urandom(16))}


def test_web_push_goes_through_pywebpush_with_vapid(monkeypatch):
    service = FakeWebPush().start()
    try:
        vapid = Vapid()
        vapid.generate_keys()
        raw = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
        # The form `web-push generate-vapid-keys` prints: base64url of the raw key.
        monkeypatch.setenv("WEBPUSH_VAPID_PRIVATE_KEY", base64.urlsafe_b64encode(raw).rstrip(b"=").decode())
        contact = factories.contact_with_everything()
        PushDevice.objects.filter(contact=contact).delete()
        endpoint = f"{service.url}/push/abc"
        consent_services.push_device_register(contact=contact, token=endpoint, platform=DevicePlatform.WEB,
                                              subscription=_browser_subscription(endpoint))
        factories.account(Channel.PUSH, Adapter.WEBPUSH, sender="mailto:ops@example.com")
        message = delivered(send_one(contact, Channel.PUSH))
    finally:
        service.stop()
    assert message.status == MessageStatus.SENT
    request = service.requests[0]
    assert request.path == "/push/abc"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["authorization"].startswith("vapid t=")
    assert len(request.body) > 100  # encrypted, not the plain JSON


def test_whatsapp_uses_the_content_sid_of_the_contacts_locale_before_the_account_mapping(
    twilio_env, twilio_accounts, fake_twilio
):
    content = factories.CONTENT[Channel.WHATSAPP]
    template = factories.approved_template(
        "wa-locales", Channel.WHATSAPP, "operational", variables=[{"path": "event.code", "required": True}],
        locales=("en", "pt"), content_by_locale={"en": {**content, "content_sid": "HXenglish"},
                                                 "pt": {**content, "language": "pt", "content_sid": "HXportugues"}},
    )
    account = twilio_accounts[Channel.WHATSAPP]
    account.options = {**account.options, "content_sids": {template.key: "HXaccountdefault"}}
    account.save()
    sids = []
    for n, locale in enumerate(("pt", "en")):
        contact = factories.contact_with_everything(whatsapp_id=f"+1415555980{n}", locale=locale)
        result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"),
                               idempotency_key=f"wa-{locale}", template_key=template.key)
        assert delivered(result.messages[0]).status == MessageStatus.SENT
        sids.append(fake_twilio.requests[-1].form["ContentSid"])
    assert sids == ["HXportugues", "HXenglish"]


def test_an_rcs_card_sends_its_suggestions_as_content_variables(contact, twilio_accounts, fake_twilio):
    content = {**factories.CONTENT[Channel.RCS], "suggestions": [
        {"type": "reply", "text": "Confirm {{ event.code }}", "value": "CONFIRM"},
        {"type": "url", "text": "Open", "value": "https://example.com/c/{{ event.code }}"},
    ]}
    template = factories.approved_template(
        "code-rcs-operational", Channel.RCS, "operational", content=content,
        variables=[{"path": "event.code", "required": True}],
    )
    result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"), idempotency_key="rcs",
                           template_key=template.key)
    assert delivered(result.messages[0]).status == MessageStatus.SENT
    variables = json.loads(fake_twilio.requests[0].form["ContentVariables"])
    assert variables == {
        "title": "Code", "description": "Your code is 42", "media_url": "",
        "suggestion_1_text": "Confirm 42", "suggestion_1_value": "CONFIRM",
        "suggestion_2_text": "Open", "suggestion_2_value": "https://example.com/c/42",
    }


def test_email_carries_the_preheader_hidden_at_the_top_of_the_html(contact, fake_smtp):
    import email as email_lib
    from email import policy

    factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com",
                      options={"host": "127.0.0.1", "port": fake_smtp.port})
    template = factories.approved_template(
        "code-email-preheader", Channel.EMAIL, "operational",
        content={**factories.CONTENT[Channel.EMAIL], "preheader": "Code {{ event.code }} & more inside"},
        variables=[{"path": "event.code", "required": True}],
    )
    result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"), idempotency_key="ph",
                           template_key=template.key)
    assert delivered(result.messages[0]).status == MessageStatus.SENT
    parsed = email_lib.message_from_bytes(fake_smtp.handler.messages[0].content, policy=policy.default)
    html = parsed.get_body(preferencelist=("html",)).get_content()
    assert html.startswith('<div style="display:none;')
    assert "Code 42 &amp; more inside</div>" in html
    assert html.index("more inside") < html.index("Your code is 42")
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    assert "more inside" not in text


def test_whatsapp_falls_back_to_the_accounts_content_sid_for_the_locale(twilio_env, twilio_accounts, fake_twilio):
    template = factories.channel_template(Channel.WHATSAPP)  # its variant names no content SID
    account = twilio_accounts[Channel.WHATSAPP]
    account.options = {**account.options, "content_sids": {template.key: {"en": "HXen", "pt": "HXpt"}}}
    account.save()
    contact = factories.contact_with_everything(whatsapp_id="+14155559811", locale="en-GB")
    result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"), idempotency_key="wa-fb",
                           template_key=template.key)
    assert delivered(result.messages[0]).status == MessageStatus.SENT
    assert fake_twilio.requests[0].form["ContentSid"] == "HXen"
