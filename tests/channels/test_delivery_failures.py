"""What delivery does when the world misbehaves: the task runs out of time,
the provider's answer never comes, Redis is down, an account or its secret
is missing."""

from __future__ import annotations

import datetime as dt
import signal
import threading

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from channels import ratelimit, services
from channels.delivery import deliver_batch, messages_sweep_stuck
from channels.models import Adapter, MessageStatus, OutboundMessage
from consent.models import Channel
from tests.channels import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}


def queue(contact, template, key="f"):
    return services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"), idempotency_key=key,
                         template_key=template.key).messages[0]


def status_of(message) -> str:
    return OutboundMessage.objects.values_list("status", flat=True).get(pk=message.pk)


@pytest.fixture
def soft_time_limit_in(monkeypatch):
    """Raise SoftTimeLimitExceeded from a signal handler, as Celery's pool
    does when a task passes its soft time limit."""

    def arm(seconds: float) -> None:
        def on_alarm(signum, frame):
            raise SoftTimeLimitExceeded()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        monkeypatch.setattr(arm, "previous", previous, raising=False)
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, getattr(arm, "previous", signal.SIG_DFL))


def test_a_soft_time_limit_stops_the_batch_leaves_the_call_under_way_for_the_sweeper_and_puts_back_the_rest(
    contact, sms_template, twilio_accounts, fake_twilio, soft_time_limit_in
):
    first, second = queue(contact, sms_template, "a"), queue(contact, sms_template, "b")
    fake_twilio.hold = threading.Event()  # the provider call is under way when time runs out
    soft_time_limit_in(0.5)
    with pytest.raises(SoftTimeLimitExceeded):
        deliver_batch(message_ids=[first.pk, second.pk])
    fake_twilio.hold.set()
    assert len(fake_twilio.requests) == 1
    # The first may have reached Twilio; the second never did (attempt given back).
    assert (status_of(first), status_of(second)) == (MessageStatus.SENDING, MessageStatus.QUEUED)
    assert OutboundMessage.objects.get(pk=second.pk).attempts == 0
    assert not OutboundMessage.objects.filter(events__detail__startswith="transient").exists()


def test_a_read_timeout_after_sending_is_left_for_the_callback_or_the_sweeper(
    settings, contact, sms_template, twilio_accounts, fake_twilio
):
    account = twilio_accounts[Channel.SMS]
    account.options = {**account.options, "timeout": 0.5}
    account.save()
    fake_twilio.hold = threading.Event()  # the request arrives; the answer never comes back in time
    message = queue(contact, sms_template)
    report = deliver_batch(message_ids=[message.pk])
    fake_twilio.hold.set()
    assert (report.ambiguous, report.retried, report.failed) == (1, 0, 0)
    message.refresh_from_db()
    assert message.status == MessageStatus.SENDING  # not re-queued: it may already be on its way
    assert message.error.startswith("ambiguous")
    assert len(fake_twilio.requests) == 1
    # No callback came: past the threshold the sweeper puts it back in line.
    settings.CHANNELS_STUCK_AFTER_SECONDS = 600
    assert messages_sweep_stuck(now=timezone.now() + dt.timedelta(seconds=601)) == 1
    assert status_of(message) == MessageStatus.QUEUED


def test_a_redis_outage_holds_rate_limited_sends_instead_of_failing_the_batch(
    settings, contact, sms_template, twilio_accounts, fake_twilio
):
    account = twilio_accounts[Channel.SMS]
    account.rate_limit_per_second = 5
    account.save()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    message = queue(contact, sms_template)
    report = deliver_batch(message_ids=[message.pk])
    assert report.rate_limited == [message.pk]
    assert fake_twilio.requests == []
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)


def test_try_acquire_answers_no_when_redis_is_unreachable(settings, db):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    account = factories.account(Channel.SMS, rate_limit_per_second=5)
    assert ratelimit.try_acquire(account) is False


def test_no_active_provider_account_is_retried_with_backoff_not_failed(settings, contact, sms_template):
    settings.CHANNELS_MAX_ATTEMPTS = 2
    message = queue(contact, sms_template)
    report = deliver_batch(message_ids=[message.pk])
    assert report.retried == 1
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 1)
    assert message.next_attempt_at > timezone.now()
    assert "no active provider account" in message.error
    deliver_batch(message_ids=[message.pk], now=message.next_attempt_at)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert "gave up after 2 attempts" in message.error


def test_a_missing_secret_is_retried_with_backoff_not_failed(monkeypatch, contact, sms_template, fake_twilio):
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    factories.account(Channel.SMS, Adapter.TWILIO, sender="+14155550000", options={"base_url": fake_twilio.url})
    message = queue(contact, sms_template)
    report = deliver_batch(message_ids=[message.pk])
    assert report.retried == 1
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 1)
    assert "TWILIO_ACCOUNT_SID" in message.error
    assert fake_twilio.requests == []
