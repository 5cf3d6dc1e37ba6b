"""A batch that does not end normally: a worker killed between waves, the
soft time limit while calls are under way, an error part way, an account
whose adapter cannot load, a ladder that cannot be ended, rows the sweeper
moved meanwhile. What the providers answered is recorded; what never reached
a provider goes back in line without spending an attempt; only a call whose
answer never came is left to the sweeper.

Providers are faked at the network edge (a Twilio Messages API answering by
the To number, holding the numbers a test names) or are the console adapter."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import uuid

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.utils import timezone

from channels import services
from channels.delivery import deliver_batch, messages_sweep_stuck
from channels.models import Adapter, IntentStatus, MessageStatus, OutboundMessage, ProviderAccount, SendIntent
from channels.signals import message_status_changed
from channels.tasks import deliver_messages
from consent.models import Channel
from tests.channels import factories
from tests.channels.fakes import KeyedTwilio
from tests.channels.test_delivery_worker import _children, _worker_process, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}
LATER = dt.timedelta(seconds=601)  # past CHANNELS_STUCK_AFTER_SECONDS


@pytest.fixture
def keyed_twilio():
    fake = KeyedTwilio().start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _nothing_left_in_the_broker():
    from config.celery import app

    app.control.purge()
    yield
    app.control.purge()  # the retries and put-backs published on commit


def sms_account(fake: KeyedTwilio, calls_in_flight: int = 2):
    return factories.account(Channel.SMS, Adapter.TWILIO, sender="+14155550000",
                             options={"base_url": fake.url, "timeout": 10, "calls_in_flight": calls_in_flight})


@pytest.fixture
def templates(db):
    return {c: factories.channel_template(c) for c in (Channel.SMS, Channel.EMAIL, Channel.PUSH)}


def queue(templates: dict, channel: str) -> OutboundMessage:
    result = services.send(contact=factories.contact_with_everything(), data=DATA, origin=services.Origin(kind="api"),
                           idempotency_key=f"stopped-{uuid.uuid4().hex}", template_key=templates[channel].key)
    assert result.status == services.SendStatus.QUEUED, result
    return result.messages[0]


def state(message: OutboundMessage) -> tuple[str, int]:
    message.refresh_from_db()
    return message.status, message.attempts


def hold(fake: KeyedTwilio, messages: list[OutboundMessage]) -> threading.Event:
    release = threading.Event()
    for message in messages:
        fake.held[message.address] = release
    return release


def arrived(fake: KeyedTwilio, messages: list[OutboundMessage]) -> bool:
    return all(fake.received[m.address] for m in messages)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_keeps_the_waves_already_answered(settings, templates, twilio_env, keyed_twilio):
    settings.CHANNELS_STUCK_AFTER_SECONDS = 600
    sms_account(keyed_twilio)
    # Waves of [0], [1, 2], [3, 4], [5, 6] (their answers recorded after the
    # fourth, WAVES_PER_RECORD), [7, 8] held at the provider, [9, 10] never called.
    messages = [queue(templates, Channel.SMS) for _ in range(11)]
    answered, under_way, never_called = messages[:7], messages[7:9], messages[9:]
    release = hold(keyed_twilio, under_way)
    from config.celery import app

    app.control.purge()  # one task carries the whole batch
    worker = _worker_process(f"stopped-{uuid.uuid4().hex[:6]}")
    try:
        deliver_messages.delay([m.pk for m in messages])
        wait_for(lambda: arrived(keyed_twilio, under_way), timeout=30, message="the fifth wave at the provider")
        assert [state(m) for m in answered] == [(MessageStatus.SENT, 1)] * 7
        os.kill(wait_for(lambda: _children(worker.pid), message="the pool process")[0], signal.SIGKILL)
    finally:
        release.set()
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
    assert [state(m) for m in under_way + never_called] == [(MessageStatus.SENDING, 1)] * 4
    # The sweeper sends again only what had no recorded answer.
    assert messages_sweep_stuck(now=timezone.now() + LATER) == 4
    assert [state(m)[0] for m in answered] == [MessageStatus.SENT] * 7
    assert sum(keyed_twilio.received[m.address] for m in answered) == 7


def stopped_in_the_second_wave(templates, fake, soft_time_limit_when):
    """Waves [0], [1..4], [5..8]: time runs out while the second wave's calls
    are at the provider; their answers come 0.3 s later."""
    sms_account(fake, calls_in_flight=4)
    messages = [queue(templates, Channel.SMS) for _ in range(9)]
    release = hold(fake, messages[1:5])
    soft_time_limit_when(lambda: arrived(fake, messages[1:5]), then=lambda: threading.Timer(0.3, release.set).start())
    with pytest.raises(SoftTimeLimitExceeded):
        deliver_batch(message_ids=[m.pk for m in messages])
    return messages


@pytest.mark.django_db
def test_a_soft_time_limit_waits_for_the_calls_under_way_and_records_their_answers(
    templates, twilio_env, keyed_twilio, soft_time_limit_when
):
    messages = stopped_in_the_second_wave(templates, keyed_twilio, soft_time_limit_when)
    assert [state(m) for m in messages[:5]] == [(MessageStatus.SENT, 1)] * 5
    assert all(m.provider_message_id.startswith("SM") for m in messages[:5])


@pytest.mark.django_db
def test_a_soft_time_limit_puts_back_the_waves_never_called_with_their_attempt_given_back(
    templates, twilio_env, keyed_twilio, soft_time_limit_when
):
    messages = stopped_in_the_second_wave(templates, keyed_twilio, soft_time_limit_when)
    never_called = messages[5:]
    assert [state(m) for m in never_called] == [(MessageStatus.QUEUED, 0)] * 4
    assert sum(keyed_twilio.received[m.address] for m in never_called) == 0
    assert all(m.next_attempt_at is not None for m in never_called)
    why = "put back unsent: the delivery task stopped (SoftTimeLimitExceeded)"
    last_two = [list(m.events.order_by("pk").values_list("old_status", "status", "detail"))[-2:] for m in never_called]
    assert last_two == [[
        (MessageStatus.QUEUED, MessageStatus.SENDING, ""), (MessageStatus.SENDING, MessageStatus.QUEUED, why),
    ]] * 4


@pytest.mark.django_db
def test_a_batch_out_of_time_starts_no_more_waves_and_puts_the_rest_back(
    settings, templates, twilio_env, keyed_twilio
):
    """A batch starts no wave it could not finish before the soft time limit
    (limit less a call's timeout and the grace): here there is no such time,
    so only the first wave goes, and the other accounts' messages wait in
    line instead of behind a limit that stops the batch."""
    settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT = 10, 12
    sms_account(keyed_twilio, calls_in_flight=4)
    factories.account(Channel.EMAIL, Adapter.CONSOLE, sender="noreply@example.com")
    sms = [queue(templates, Channel.SMS) for _ in range(5)]
    email = [queue(templates, Channel.EMAIL) for _ in range(2)]
    report = deliver_batch(message_ids=[m.pk for m in sms + email])
    assert report.sent == 1
    assert sorted(report.out_of_time) == sorted(m.pk for m in sms[1:] + email)
    assert state(sms[0]) == (MessageStatus.SENT, 1)
    assert [state(m) for m in sms[1:] + email] == [(MessageStatus.QUEUED, 0)] * 6
    assert sum(keyed_twilio.received[m.address] for m in sms) == 1
    assert email[0].events.order_by("pk").last().detail == (
        "put back unsent: the batch ran out of time (slow provider calls)")


def test_with_the_default_limits_a_batch_has_time_for_its_waves():
    import time

    from channels.delivery import _waves_deadline

    assert _waves_deadline() - time.monotonic() >= 60


@pytest.mark.django_db
def test_an_error_part_way_keeps_the_answers_and_puts_back_what_was_not_sent(
    settings, templates, twilio_env, keyed_twilio
):
    sms_account(keyed_twilio)
    factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com", rate_limit_per_second=5,
                      options={"host": "127.0.0.1", "port": 1})
    sent = [queue(templates, Channel.SMS) for _ in range(3)]
    unsent = [queue(templates, Channel.EMAIL) for _ in range(2)]
    settings.REDIS_URL = "nowhere://rate-limits"  # the limiter's client refuses the URL: a ValueError
    with pytest.raises(ValueError, match="Redis URL"):
        deliver_batch(message_ids=[m.pk for m in sent + unsent])
    assert [state(m) for m in sent] == [(MessageStatus.SENT, 1)] * 3
    assert [state(m) for m in unsent] == [(MessageStatus.QUEUED, 0)] * 2
    assert unsent[0].events.order_by("pk").last().detail == "put back unsent: the delivery task stopped (ValueError)"


@pytest.mark.django_db
def test_an_account_whose_adapter_cannot_load_holds_only_its_own_messages(
    caplog, templates, twilio_env, keyed_twilio
):
    sms_account(keyed_twilio)
    broken = factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com")
    ProviderAccount.objects.filter(pk=broken.pk).update(adapter="carrier_pigeon")  # left by a removed adapter
    factories.account(Channel.PUSH, Adapter.CONSOLE)
    sms, email, push = queue(templates, Channel.SMS), queue(templates, Channel.EMAIL), queue(templates, Channel.PUSH)
    with caplog.at_level(logging.ERROR, logger="channels.delivery"):
        report = deliver_batch(message_ids=[sms.pk, email.pk, push.pk])
    assert (report.sent, report.retried) == (2, 1)
    assert [state(m) for m in (sms, email, push)] == [
        (MessageStatus.SENT, 1), (MessageStatus.QUEUED, 1), (MessageStatus.DELIVERED, 1)]
    assert email.error == "provider adapter 'carrier_pigeon' unavailable: KeyError: 'carrier_pigeon'"
    assert email.next_attempt_at > timezone.now()
    assert "cannot be used" in caplog.text


@pytest.mark.django_db
def test_a_ladder_that_cannot_be_ended_does_not_undo_the_deliveries_recorded_with_it(caplog):
    factories.account(Channel.PUSH, Adapter.CONSOLE)
    rungs = [services.Rung(c, factories.channel_template(c).key, dt.timedelta(minutes=5))
             for c in (Channel.PUSH, Channel.SMS)]

    def ladder_message() -> OutboundMessage:
        return services.send(
            contact=factories.contact_with_everything(), data=DATA, idempotency_key=f"ladder-{uuid.uuid4().hex}",
            origin=services.Origin(kind="journey", step_key="s1"), ladder=rungs,
        ).messages[0]

    first, stuck, beside = ladder_message(), ladder_message(), ladder_message()  # waves: [first], [stuck, beside]
    with connection.cursor() as cursor:  # the database refuses to end `stuck`'s ladder
        cursor.execute("CREATE FUNCTION refuse_intent_update() RETURNS trigger LANGUAGE plpgsql AS "
                       "$$ BEGIN RAISE EXCEPTION 'intent % is locked', OLD.id; END $$")
        cursor.execute(f"CREATE TRIGGER refuse_intent_update BEFORE UPDATE ON {SendIntent._meta.db_table} "
                       f"FOR EACH ROW WHEN (OLD.id = {stuck.intent_id}) EXECUTE FUNCTION refuse_intent_update()")
    with caplog.at_level(logging.ERROR, logger="channels.delivery"):
        report = deliver_batch(message_ids=[first.pk, stuck.pk, beside.pk])
    assert report.sent == 3
    assert [state(m)[0] for m in (first, stuck, beside)] == [MessageStatus.DELIVERED] * 3
    intents = dict(SendIntent.objects.values_list("pk", "status"))
    assert [intents[m.intent_id] for m in (first, stuck, beside)] == [
        IntentStatus.DELIVERED, IntentStatus.ACTIVE, IntentStatus.DELIVERED]
    assert f"intent {stuck.intent_id}) could not be ended" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_rate_limited_rows_the_sweeper_moved_meanwhile_are_left_as_the_sweeper_left_them(
    settings, templates, twilio_env, keyed_twilio
):
    settings.CHANNELS_STUCK_AFTER_SECONDS = 600
    sms_account(keyed_twilio)
    factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com", rate_limit_per_second=5,
                      options={"host": "127.0.0.1", "port": 1})
    sms, email = queue(templates, Channel.SMS), queue(templates, Channel.EMAIL)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # the limiter cannot be asked: the email is held
    release = hold(keyed_twilio, [sms])
    announced = []

    def note(sender, message, old_status, new_status, **kwargs):
        announced.append((message.pk, old_status, new_status))

    def sweep_while_the_batch_waits():
        try:
            wait_for(lambda: arrived(keyed_twilio, [sms]), message="the SMS at the provider")
            messages_sweep_stuck(now=timezone.now() + LATER)
        finally:
            release.set()
            connection.close()

    message_status_changed.connect(note, weak=False, dispatch_uid="stopped-delivery-test")
    try:
        sweeper = threading.Thread(target=sweep_while_the_batch_waits)
        sweeper.start()
        report = deliver_batch(message_ids=[sms.pk, email.pk])
        sweeper.join(30)
    finally:
        message_status_changed.disconnect(dispatch_uid="stopped-delivery-test")
    assert report.rate_limited == []
    assert state(email) == (MessageStatus.QUEUED, 1)  # the sweeper's move, not a rate-limit hold
    assert list(email.events.order_by("pk").values_list("detail", flat=True))[-2:] == [
        "", "recovered by the sweeper: worker lost mid-delivery"]
    assert [(old, new) for pk, old, new in announced if pk == email.pk] == [
        (MessageStatus.QUEUED, MessageStatus.SENDING), (MessageStatus.SENDING, MessageStatus.QUEUED)]
