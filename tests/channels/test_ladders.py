"""Fallback ladders: the next rung when a rung is not allowed, fails, or is
not delivered in time; one intent, at most one delivered message."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from channels import services
from channels.delivery import deliver_batch
from channels.models import Adapter, IntentStatus, MessageStatus, OutboundMessage, SendIntent
from consent.models import Channel, PushDevice, QuietHoursRule
from consent.policy import Reason
from tests.channels import factories
from tests.channels.fakes import FakeTwilio

pytestmark = pytest.mark.django_db
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "7"}}


@pytest.fixture
def templates(db):
    return {c: factories.channel_template(c) for c in (Channel.PUSH, Channel.SMS, Channel.EMAIL)}


def ladder(templates, timeout: dt.timedelta | None = None) -> list[services.Rung]:
    return [services.Rung(c, templates[c].key, timeout) for c in (Channel.PUSH, Channel.SMS, Channel.EMAIL)]


def send_ladder(contact, templates, key="ladder-1", timeout=None, now=None):
    return services.send(contact=contact, data=DATA, origin=services.Origin(kind="journey", step_key="s1"),
                         idempotency_key=key, ladder=ladder(templates, timeout), now=now)


def rungs(result) -> list[tuple[str, str, str]]:
    intent = SendIntent.objects.get(idempotency_key=result.messages[0].idempotency_key.split("#")[0])
    return [(m.channel, m.status, m.decision_reason) for m in intent.messages.order_by("rung")]


def test_a_rung_not_allowed_is_skipped_with_its_reason(templates):
    contact = factories.contact_with_everything()
    PushDevice.objects.filter(contact=contact).delete()
    result = send_ladder(contact, templates)
    assert result.status == services.SendStatus.QUEUED
    assert rungs(result) == [
        (Channel.PUSH, MessageStatus.SUPPRESSED, Reason.NO_ADDRESS),
        (Channel.SMS, MessageStatus.QUEUED, Reason.NO_CONSENT_NEEDED),
    ]


def test_a_failed_rung_starts_the_next_one(templates, twilio_accounts, fake_twilio, console_accounts):
    contact = factories.contact_with_everything()
    PushDevice.objects.filter(contact=contact).delete()
    fake_twilio.script.append(FakeTwilio.error(400, 21614, "not a mobile number"))
    result = send_ladder(contact, templates)
    deliver_batch(message_ids=[m.pk for m in result.messages])
    intent = SendIntent.objects.get()
    assert [(m.channel, m.status) for m in intent.messages.order_by("rung")] == [
        (Channel.PUSH, MessageStatus.SUPPRESSED), (Channel.SMS, MessageStatus.FAILED),
        (Channel.EMAIL, MessageStatus.QUEUED),
    ]
    sms = intent.messages.get(rung=1)
    assert sms.events.filter(kind="rung", detail="rung failed").exists()


def test_a_delivered_rung_ends_the_ladder(templates, console_accounts):
    contact = factories.contact_with_everything()
    result = send_ladder(contact, templates, timeout=dt.timedelta(minutes=5))
    deliver_batch(message_ids=[result.messages[0].pk])
    intent = SendIntent.objects.get()
    assert intent.status == IntentStatus.DELIVERED
    assert services.ladders_advance_due(now=timezone.now() + dt.timedelta(hours=1)) == 0
    assert [m.status for m in intent.messages.all()] == [MessageStatus.DELIVERED]


def test_a_rung_not_delivered_within_its_timeout_moves_on_and_cancels_what_waits(templates):
    contact = factories.contact_with_everything()
    start = timezone.now()
    send_ladder(contact, templates, timeout=dt.timedelta(minutes=5), now=start)
    assert services.ladders_advance_due(now=start + dt.timedelta(minutes=4)) == 0
    assert services.ladders_advance_due(now=start + dt.timedelta(minutes=6)) == 1
    intent = SendIntent.objects.get()
    push, sms = intent.messages.order_by("rung")
    assert push.status == MessageStatus.CANCELLED  # never handed over, so it never will be
    assert push.events.filter(kind="rung", detail="not delivered within the rung timeout").exists()
    assert sms.status == MessageStatus.QUEUED
    assert intent.current_rung == 1


def test_a_sent_but_undelivered_rung_is_kept_when_the_ladder_moves_on(templates, fake_fcm, console_accounts):
    contact = factories.contact_with_everything()
    factories.account(Channel.PUSH, Adapter.FCM, priority=1,
                      options={"project_id": "demo", "endpoint": fake_fcm.url, "anonymous": True})
    start = timezone.now()
    result = send_ladder(contact, templates, timeout=dt.timedelta(minutes=5), now=start)
    deliver_batch(message_ids=[result.messages[0].pk])
    services.ladders_advance_due(now=start + dt.timedelta(minutes=6))
    push, sms = SendIntent.objects.get().messages.order_by("rung")
    assert push.status == MessageStatus.SENT
    assert sms.status == MessageStatus.QUEUED


def test_a_late_failure_report_of_an_old_rung_does_not_start_another(templates, console_accounts):
    contact = factories.contact_with_everything()
    start = timezone.now()
    result = send_ladder(contact, templates, timeout=dt.timedelta(minutes=5), now=start)
    push = result.messages[0]
    services.message_transition(message=push, to=MessageStatus.SENDING)
    services.message_transition(message=push, to=MessageStatus.SENT)
    services.ladders_advance_due(now=start + dt.timedelta(minutes=6))
    services.message_transition(message=push, to=MessageStatus.FAILED, detail="late report")
    intent = SendIntent.objects.get()
    assert intent.current_rung == 1
    assert intent.messages.count() == 2


def test_every_rung_refused_exhausts_the_intent(templates):
    contact = factories.contact_with_everything(email="", phone="")
    PushDevice.objects.filter(contact=contact).delete()
    result = send_ladder(contact, templates)
    assert result.status == services.SendStatus.SUPPRESSED
    assert len(result.messages) == 3
    assert SendIntent.objects.get().status == IntentStatus.EXHAUSTED


def test_cancelling_by_origin_stops_the_ladder(templates):
    contact = factories.contact_with_everything()
    start = timezone.now()
    services.send(contact=contact, data=DATA, origin=services.Origin(kind="journey", enrollment_id=99),
                  idempotency_key="enr-99", ladder=ladder(templates, dt.timedelta(minutes=5)), now=start)
    assert services.messages_cancel(queryset_filter={"origin_enrollment_id__in": [99]}, reason="exited") == 1
    assert SendIntent.objects.get().status == IntentStatus.CANCELLED
    assert services.ladders_advance_due(now=start + dt.timedelta(minutes=6)) == 0


def test_a_repeated_ladder_key_is_a_duplicate_with_the_same_messages(templates):
    contact = factories.contact_with_everything()
    first = send_ladder(contact, templates)
    again = send_ladder(contact, templates)
    assert again.status == services.SendStatus.DUPLICATE
    assert [m.pk for m in again.messages] == [m.pk for m in first.messages]


def test_a_late_delivered_report_of_an_earlier_rung_cancels_the_later_ones(templates, fake_fcm, twilio_accounts,
                                                                             fake_twilio, console_accounts):
    contact = factories.contact_with_everything()
    factories.account(Channel.PUSH, Adapter.FCM, priority=1,
                      options={"project_id": "demo", "endpoint": fake_fcm.url, "anonymous": True})
    start = timezone.now()
    result = send_ladder(contact, templates, timeout=dt.timedelta(seconds=60), now=start)
    push = result.messages[0]
    deliver_batch(message_ids=[push.pk])  # sent, no receipt within the timeout
    assert services.ladders_advance_due(now=start + dt.timedelta(seconds=61)) == 1
    sms = SendIntent.objects.get().messages.get(rung=1)
    assert sms.status == MessageStatus.QUEUED
    services.message_transition(message=push, to=MessageStatus.DELIVERED, detail="late receipt")
    deliver_batch(message_ids=[sms.pk])
    assert fake_twilio.requests == []
    sms.refresh_from_db()
    assert sms.status == MessageStatus.CANCELLED
    intent = SendIntent.objects.get()
    assert intent.status == IntentStatus.DELIVERED
    assert services.ladders_advance_due(now=start + dt.timedelta(hours=1)) == 0
    assert intent.messages.count() == 2


def test_a_late_delivered_report_cancels_a_deferred_later_rung(templates, console_accounts):
    contact = factories.contact_with_everything()
    start = timezone.now()
    result = send_ladder(contact, templates, timeout=dt.timedelta(seconds=60), now=start)
    push = result.messages[0]
    services.message_transition(message=push, to=MessageStatus.SENDING)
    services.message_transition(message=push, to=MessageStatus.SENT)
    QuietHoursRule.objects.create(name="always", start=dt.time(0), end=dt.time(23, 59))
    services.ladders_advance_due(now=start + dt.timedelta(seconds=61))
    sms = SendIntent.objects.get().messages.get(rung=1)
    assert sms.status == MessageStatus.DEFERRED
    services.message_transition(message=push, to=MessageStatus.DELIVERED)
    QuietHoursRule.objects.all().delete()
    assert services.messages_release_deferred(now=start + dt.timedelta(days=2)) == 0
    sms.refresh_from_db()
    assert sms.status == MessageStatus.CANCELLED


def test_delivery_and_release_skip_messages_of_a_ladder_that_is_no_longer_active(templates, console_accounts):
    contact = factories.contact_with_everything()
    result = send_ladder(contact, templates)
    # The race the claim guards against: the ladder ended while its rung waited.
    SendIntent.objects.update(status=IntentStatus.DELIVERED)
    report = deliver_batch(message_ids=[result.messages[0].pk])
    assert report.claimed == 0
    assert OutboundMessage.objects.get(pk=result.messages[0].pk).status == MessageStatus.CANCELLED


def test_cancelling_matching_messages_leaves_a_ladder_whose_match_was_already_sent(templates, twilio_accounts,
                                                                                   fake_twilio):
    contact = factories.contact_with_everything()
    PushDevice.objects.filter(contact=contact).delete()
    start = timezone.now()
    result = send_ladder(contact, templates, timeout=dt.timedelta(minutes=5), now=start)
    deliver_batch(message_ids=[result.messages[-1].pk])  # the SMS rung is sent
    # A STOP on SMS cancels what waits on SMS; this ladder has nothing waiting there.
    assert services.messages_cancel(queryset_filter={"contact": contact, "channel": Channel.SMS},
                                    reason="contact replied STOP") == 0
    assert SendIntent.objects.get().status == IntentStatus.ACTIVE
    assert services.ladders_advance_due(now=start + dt.timedelta(minutes=6)) == 1
    assert SendIntent.objects.get().messages.get(rung=2).status == MessageStatus.QUEUED


def test_cancelling_a_ladder_cancels_every_message_of_it_still_waiting(templates):
    contact = factories.contact_with_everything()
    start = timezone.now()
    push = send_ladder(contact, templates, timeout=dt.timedelta(minutes=5), now=start).messages[0]
    services.message_transition(message=push, to=MessageStatus.SENDING)
    services.ladders_advance_due(now=start + dt.timedelta(minutes=6))  # push was in flight: not cancelled
    services.message_transition(message=push, to=MessageStatus.QUEUED, detail="transient: retry")
    sms = SendIntent.objects.get().messages.get(rung=1)
    assert services.messages_cancel(queryset_filter={"pk": sms.pk}, reason="operator") == 2
    assert set(SendIntent.objects.get().messages.values_list("status", flat=True)) == {MessageStatus.CANCELLED}
    assert SendIntent.objects.get().status == IntentStatus.CANCELLED
