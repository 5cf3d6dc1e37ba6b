"""Delivery as the batch grows and as workers multiply: the queries of a
batch grow with its waves of provider calls, never with its messages, SMTP
sessions outlive a message, and a sender's rate limit holds at the provider
with two deliverers taking from it at once (real Redis)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels import services
from channels.delivery import CALLS_IN_FLIGHT, WAVES_PER_RECORD, deliver_batch
from channels.models import Adapter, MessageStatus, OutboundMessage, ProviderAccount
from consent.models import Channel
from tests.channels import factories
from tests.channels.fakes import FakeSmtp, RecordingHandler

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}


def queue(template, key: str) -> OutboundMessage:
    result = services.send(contact=factories.contact_with_everything(), data=DATA,
                           origin=services.Origin(kind="api"), idempotency_key=key, template_key=template.key)
    return result.messages[0]


# Each record of the answers: the accepted UPDATE and the events INSERT, and
# here (the test runs in a transaction) the savepoint around them and its release.
QUERIES_PER_RECORD = 4


@pytest.fixture
def sms_and_email(twilio_accounts, fake_twilio, fake_smtp):
    factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com",
                      options={"host": "127.0.0.1", "port": fake_smtp.port})
    return [factories.channel_template(Channel.SMS), factories.channel_template(Channel.EMAIL)]


def queries_for(templates, n: int) -> int:
    """The queries of delivering n messages, half SMS, half email, all accepted."""
    ids = [queue(templates[i % 2], f"q{n}-{i}").pk for i in range(n)]
    with CaptureQueriesContext(connection) as counted:
        report = deliver_batch(message_ids=ids)
    assert report.sent == n
    return len(counted.captured_queries)


@pytest.mark.django_db
def test_a_batch_costs_the_same_queries_for_four_or_forty_messages_in_as_many_waves(
    sms_and_email, fake_twilio, fake_smtp
):
    # Every call after each account's first in one wave: two waves per
    # account, for 2 messages as for 20.
    for account in ProviderAccount.objects.all():
        account.options = {**account.options, "calls_in_flight": 32}
        account.save()
    few, many = queries_for(sms_and_email, 4), queries_for(sms_and_email, 40)
    assert few == many
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {MessageStatus.SENT}
    assert len(fake_twilio.requests) == 22 and len(fake_smtp.handler.messages) == 22


@pytest.mark.django_db
def test_the_answers_are_recorded_every_few_waves_each_time_with_the_same_few_queries(sms_and_email):
    # One call at a time, so a wave is one message. Per account, 2 messages
    # are recorded once (at the end), 2 + WAVES_PER_RECORD twice (after
    # WAVES_PER_RECORD waves, then at the end), 2 + 2 * WAVES_PER_RECORD three times.
    for account in ProviderAccount.objects.all():
        account.options = {**account.options, "calls_in_flight": 1}
        account.save()
    once, twice, three_times = (queries_for(sms_and_email, 2 * (2 + k * WAVES_PER_RECORD)) for k in (0, 1, 2))
    assert twice - once == three_times - twice == 2 * QUERIES_PER_RECORD


class SessionCountingHandler(RecordingHandler):
    def __init__(self) -> None:
        super().__init__()
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 (aiosmtpd's naming)
        self.sessions += 1
        session.host_name = hostname
        return responses


@pytest.mark.django_db
def test_smtp_sessions_are_kept_open_across_messages_and_batches(db):
    relay = FakeSmtp()
    relay.handler = relay.controller.handler = SessionCountingHandler()
    relay.start()
    try:
        factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com",
                          options={"host": "127.0.0.1", "port": relay.port})
        template = factories.channel_template(Channel.EMAIL)
        for batch in range(3):
            ids = [queue(template, f"smtp-{batch}-{i}").pk for i in range(20)]
            assert deliver_batch(message_ids=ids).sent == 20
    finally:
        relay.stop()
    assert len(relay.handler.messages) == 60
    # At most one session per call in flight (and the first call's), not one per message.
    assert relay.handler.sessions <= CALLS_IN_FLIGHT + 1


def _busiest_window(arrivals: list[float], length: float) -> int:
    """The most arrivals in any window of `length` seconds."""
    arrivals = sorted(arrivals)
    return max(sum(1 for t in arrivals[i:] if t < start + length) for i, start in enumerate(arrivals))


@pytest.mark.django_db(transaction=True)
def test_two_deliverers_at_once_stay_within_the_senders_limit(twilio_accounts, fake_twilio):
    limit, count = 4, 24
    account = twilio_accounts[Channel.SMS]
    account.rate_limit_per_second = limit
    account.save()
    template = factories.channel_template(Channel.SMS)
    ids = [queue(template, f"rl-{i}").pk for i in range(count)]
    failures = []

    def deliverer(mine: list[int]) -> None:
        try:
            deadline = time.monotonic() + 30
            while OutboundMessage.objects.filter(pk__in=mine, status=MessageStatus.QUEUED).exists():
                assert time.monotonic() < deadline, "messages never left the queue"
                deliver_batch(message_ids=mine)
                time.sleep(0.02)
        except Exception as error:  # reported on the test's thread
            failures.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=deliverer, args=(ids[n::2],)) for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    assert set(OutboundMessage.objects.filter(pk__in=ids).values_list("status", flat=True)) == {MessageStatus.SENT}
    assert set(OutboundMessage.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}
    arrivals = [request.at for request in fake_twilio.requests]
    assert len(arrivals) == count
    # The limiter counts when it grants; the provider counts on arrival, a few
    # milliseconds later, so its window is taken a little shorter than a second.
    assert _busiest_window(arrivals, 0.95) <= limit
    assert max(arrivals) - min(arrivals) >= count / limit - 1.05
