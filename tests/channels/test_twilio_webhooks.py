"""Twilio status callbacks and inbound replies: signatures, duplicates,
out-of-order reports, and the STOP/START/HELP/YES keywords."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from channels import services
from channels.models import DeliveryEvent, InboundMessage, KeywordAction, MessageStatus, OutboundMessage
from channels.signals import inbound_message_received
from consent import policy
from consent import services as consent_services
from consent.models import Channel, ConsentRecord, ConsentSource, ConsentStatus, Suppression
from tests.channels.conftest import TWILIO_SID, TWILIO_TOKEN

pytestmark = pytest.mark.django_db
STATUS_PATH = "/webhooks/twilio/status/"
INBOUND_PATH = "/webhooks/twilio/inbound/"


def signed_post(path: str, params: dict, token: str = TWILIO_TOKEN, signature: str | None = None):
    url = settings.CHANNELS_WEBHOOK_BASE_URL + path
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return Client().post(path, params, **headers)


@pytest.fixture
def sent_sms(contact, sms_template, twilio_accounts):
    result = services.send(contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                           idempotency_key="wh", template_key=sms_template.key)
    message = result.messages[0]
    services.message_transition(message=message, to=MessageStatus.SENDING)
    services.message_transition(message=message, to=MessageStatus.SENT, fields={"provider_message_id": "SM123"})
    return message


def status(sid: str, value: str, **extra) -> dict:
    return {"AccountSid": TWILIO_SID, "MessageSid": sid, "MessageStatus": value, **extra}


def test_a_signed_delivered_callback_marks_the_message_delivered(sent_sms):
    response = signed_post(STATUS_PATH, status("SM123", "delivered"))
    assert response.status_code == 204
    sent_sms.refresh_from_db()
    assert sent_sms.status == MessageStatus.DELIVERED
    assert sent_sms.delivered_at is not None


@pytest.mark.parametrize("signature", ["", "forged-signature"])
def test_an_unsigned_or_forged_callback_is_refused_and_changes_nothing(sent_sms, signature):
    events_before = DeliveryEvent.objects.count()
    response = signed_post(STATUS_PATH, status("SM123", "delivered"), signature=signature)
    assert response.status_code == 403
    sent_sms.refresh_from_db()
    assert sent_sms.status == MessageStatus.SENT
    assert DeliveryEvent.objects.count() == events_before


def test_a_callback_signed_with_another_token_is_refused(sent_sms):
    response = signed_post(STATUS_PATH, status("SM123", "failed"), token="someone-elses-token")
    assert response.status_code == 403
    sent_sms.refresh_from_db()
    assert sent_sms.status == MessageStatus.SENT


def test_a_report_signed_for_another_url_is_refused(sent_sms):
    params = status("SM123", "failed")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature("https://elsewhere.example/hook", params)
    assert signed_post(STATUS_PATH, params, signature=signature).status_code == 403


def test_delivered_before_sent_ends_delivered(sent_sms):
    signed_post(STATUS_PATH, status("SM123", "delivered"))
    signed_post(STATUS_PATH, status("SM123", "sent"))
    sent_sms.refresh_from_db()
    assert sent_sms.status == MessageStatus.DELIVERED
    reports = list(sent_sms.events.filter(kind="report").values_list("status", flat=True))
    assert reports == ["delivered", "sent"]


def test_a_report_that_beats_our_own_commit_still_finds_its_message(contact, sms_template, twilio_accounts):
    result = services.send(contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                           idempotency_key="early", template_key=sms_template.key)
    message = result.messages[0]
    services.message_transition(message=message, to=MessageStatus.SENDING)
    signed_post(f"{STATUS_PATH}?message={message.pk}", status("SMearly", "delivered"))
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_duplicate_callbacks_are_recorded_once(sent_sms):
    for _ in range(3):
        assert signed_post(STATUS_PATH, status("SM123", "delivered")).status_code == 204
    assert sent_sms.events.filter(kind="report").count() == 1
    assert sent_sms.events.filter(kind="status", status="delivered").count() == 1


def test_a_whatsapp_read_receipt_records_the_first_open(sent_sms):
    signed_post(STATUS_PATH, status("SM123", "delivered"))
    signed_post(STATUS_PATH, status("SM123", "read"))
    sent_sms.refresh_from_db()
    assert sent_sms.first_opened_at is not None
    assert sent_sms.status == MessageStatus.DELIVERED


def inbound(contact, body: str, sid: str, channel_prefix: str = "") -> InboundMessage:
    params = {"AccountSid": TWILIO_SID, "MessageSid": sid, "From": f"{channel_prefix}{contact.phone}",
              "To": "+14155550000", "Body": body}
    response = signed_post(INBOUND_PATH, params)
    assert response.status_code == 200
    return InboundMessage.objects.get(provider_message_id=sid)


def sms_decision(contact, message_class="operational"):
    return policy.decide(contact=contact, channel=Channel.SMS, message_class=message_class,
                         at=timezone.now())


def confirmations(contact) -> list[OutboundMessage]:
    return list(OutboundMessage.objects.filter(contact=contact, origin_kind="system").order_by("id"))


@pytest.mark.parametrize("word", ["STOP", " stop ", "StopAll", "UNSUBSCRIBE", "cancel", "END", "quit"])
def test_a_stop_keyword_revokes_sms_for_every_purpose_and_confirms_once(contact, twilio_accounts, word):
    message = inbound(contact, word, "SMin1")
    assert message.keyword_action == KeywordAction.STOP
    revoked = ConsentRecord.objects.filter(contact=contact, channel=Channel.SMS, status=ConsentStatus.REVOKED)
    assert sorted(revoked.values_list("purpose", flat=True)) == ["marketing", "operational", "transactional"]
    assert all(r.source == ConsentSource.KEYWORD and r.evidence["keyword"] == word.strip().upper() for r in revoked)
    assert not sms_decision(contact).allowed
    [confirmation] = confirmations(contact)
    assert confirmation.status == MessageStatus.QUEUED
    assert confirmation.content["body"] == settings.CHANNELS_STOP_TEXT


def test_a_second_stop_sends_no_second_confirmation(contact, twilio_accounts):
    inbound(contact, "STOP", "SMin1")
    inbound(contact, "STOP", "SMin2")
    first, second = confirmations(contact)
    assert first.status == MessageStatus.QUEUED
    assert second.status == MessageStatus.SUPPRESSED


def test_stop_cancels_what_was_waiting_to_go_out_on_that_channel(contact, sms_template, twilio_accounts):
    pending = services.send(contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                            idempotency_key="pending", template_key=sms_template.key).messages[0]
    inbound(contact, "STOP", "SMin1")
    pending.refresh_from_db()
    assert pending.status == MessageStatus.CANCELLED


def test_start_restores_what_stop_revoked(contact, twilio_accounts):
    inbound(contact, "STOP", "SMin1")
    message = inbound(contact, "unstop", "SMin2")
    assert message.keyword_action == KeywordAction.START
    assert sms_decision(contact).allowed
    assert sms_decision(contact, "transactional").allowed
    assert confirmations(contact)[-1].content["body"] == settings.CHANNELS_START_TEXT


def test_help_answers_with_the_configured_text(contact, twilio_accounts):
    inbound(contact, "Help", "SMin1")
    [answer] = confirmations(contact)
    assert answer.content["body"] == settings.CHANNELS_HELP_TEXT
    assert answer.status == MessageStatus.QUEUED


def test_yes_confirms_a_pending_double_opt_in(contact, twilio_accounts):
    consent_services.consent_record(contact=contact, channel=Channel.SMS, purpose="marketing",
                                    status=ConsentStatus.GRANTED, source=ConsentSource.FORM, actor="test")
    assert not sms_decision(contact, "marketing").allowed
    inbound(contact, "yes", "SMin1")
    assert sms_decision(contact, "marketing").allowed


def test_any_other_reply_is_stored_and_announced_for_support(sent_sms, contact, django_capture_on_commit_callbacks):
    received = []

    def listener(sender, inbound, **kwargs):
        received.append(inbound.pk)

    inbound_message_received.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            message = inbound(contact, "Can I move my appointment?", "SMin1")
    finally:
        inbound_message_received.disconnect(listener)
    assert received == [message.pk]
    assert message.contact == contact
    assert message.in_reply_to == sent_sms
    sent_sms.refresh_from_db()
    assert sent_sms.replied_at is not None


def test_keywords_do_not_reach_support(contact, twilio_accounts, django_capture_on_commit_callbacks):
    received = []
    inbound_message_received.connect(lambda sender, inbound, **kw: received.append(inbound), weak=False,
                                     dispatch_uid="kw-test")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            inbound(contact, "STOP", "SMin1")
    finally:
        inbound_message_received.disconnect(dispatch_uid="kw-test")
    assert received == []


def test_the_same_inbound_message_twice_acts_once(contact, twilio_accounts):
    inbound(contact, "STOP", "SMin1")
    inbound(contact, "STOP", "SMin1")
    assert InboundMessage.objects.count() == 1
    assert len(confirmations(contact)) == 1


def test_stop_from_an_unknown_number_suppresses_the_number(twilio_accounts, db):
    params = {"AccountSid": TWILIO_SID, "MessageSid": "SMx", "From": "+14155557777", "To": "+1", "Body": "STOP"}
    assert signed_post(INBOUND_PATH, params).status_code == 200
    assert Suppression.objects.filter(address="+14155557777", channel=Channel.SMS).exists()


def test_a_forged_inbound_stop_is_refused_and_revokes_nothing(contact, twilio_accounts):
    params = {"AccountSid": TWILIO_SID, "MessageSid": "SMf", "From": contact.phone, "To": "+1", "Body": "STOP"}
    assert signed_post(INBOUND_PATH, params, signature="bad").status_code == 403
    assert not ConsentRecord.objects.filter(contact=contact, status=ConsentStatus.REVOKED).exists()
    assert not InboundMessage.objects.exists()
