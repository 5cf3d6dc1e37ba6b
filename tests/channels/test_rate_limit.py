"""Per-sender rate limits held in Redis, shared by every worker."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import ratelimit, services
from channels.delivery import deliver_batch
from channels.models import Adapter, MessageStatus, OutboundMessage
from consent.models import Channel
from tests.channels import factories

pytestmark = [pytest.mark.redis, pytest.mark.django_db]


def test_the_budget_is_shared_across_workers_within_its_window(db):
    account = factories.account(Channel.SMS, Adapter.CONSOLE, rate_limit_per_second=2)
    second = time.time() + 1000  # a window no other test touches
    # Two "workers" are two independent callers: the count lives in Redis.
    granted = [ratelimit.try_acquire(account, at=second) for _ in range(5)]
    assert granted == [True, True, False, False, False]
    # The window is 50 ms longer than a second, so that the provider, which
    # sees each send a few milliseconds after its grant, never counts more
    # than the limit in one of its seconds.
    assert ratelimit.try_acquire(account, at=second + 1.0) is False
    assert ratelimit.try_acquire(account, at=second + 1.06) is True


@pytest.fixture
def forgotten_lines(settings):
    """Lines made at a time of the test's choosing are dropped after it:
    another test's account may get the same id (rolled-back ids repeat on SQLite)."""
    yield
    client = ratelimit._client(settings.REDIS_URL)
    for key in client.scan_iter("channels:rate-line:*"):
        client.delete(key)


@pytest.mark.usefixtures("forgotten_lines")
def test_held_sends_of_several_batches_wait_in_one_line_at_the_senders_rate(db):
    account = factories.account(Channel.SMS, Adapter.CONSOLE, rate_limit_per_second=25)
    at = time.time() + 2000  # a line no other test touches
    assert ratelimit.hold_line(account, 50, shortest_wait=1.0, at=at) == [1.0] * 25 + [1.0 + ratelimit.LINE_SECOND] * 25
    # Another worker's batch, a moment later: after the 50 (two of the line's seconds at 25/s).
    assert ratelimit.hold_line(account, 10, shortest_wait=1.0, at=at + 0.5) == pytest.approx(
        [0.5 + 2 * ratelimit.LINE_SECOND] * 10)
    # The 10 left room for 15 in their second: the next 5 share it.
    assert ratelimit.hold_line(account, 5, shortest_wait=1.0, at=at + 0.5) == pytest.approx(
        [0.5 + 2 * ratelimit.LINE_SECOND] * 5)
    # 12 more: 10 fill that second, 2 start the next.
    assert ratelimit.hold_line(account, 12, shortest_wait=1.0, at=at + 0.5) == pytest.approx(
        [0.5 + 2 * ratelimit.LINE_SECOND] * 10 + [0.5 + 3 * ratelimit.LINE_SECOND] * 2)
    # Once the line has gone by, a held send waits the shortest time again.
    assert ratelimit.hold_line(account, 1, shortest_wait=1.0, at=at + 10) == [1.0]


_lines = itertools.count()


@pytest.mark.usefixtures("forgotten_lines")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 600), joins=st.lists(st.integers(1, 700), min_size=1, max_size=12))
def test_batches_joining_the_line_fill_each_second_to_the_limit_and_never_past_it(db, limit, joins):
    """However many batches hold however many sends, at the same moment: the
    line's seconds are LINE_SECOND apart, none holds more than the limit,
    every second but the last holds exactly the limit (no room wasted), and
    a batch's sends come after those of the batches before it."""
    account = factories.account(Channel.SMS, Adapter.CONSOLE, rate_limit_per_second=limit, name=f"line {next(_lines)}")
    ratelimit._client(django_settings.REDIS_URL).delete(f"channels:rate-line:{account.pk}")
    at = time.time() + 5000
    waits = [w for count in joins for w in ratelimit.hold_line(account, count, shortest_wait=1.0, at=at)]
    places = [round((w - 1.0) / ratelimit.LINE_SECOND) for w in waits]  # which of the line's seconds
    assert waits == pytest.approx([1.0 + k * ratelimit.LINE_SECOND for k in places])
    assert places == sorted(places)
    seconds = Counter(places)
    assert sorted(seconds) == list(range(len(seconds)))
    assert max(seconds.values()) <= limit
    assert all(seconds[k] == limit for k in range(len(seconds) - 1))


@pytest.mark.usefixtures("forgotten_lines")
def test_a_line_written_by_the_previous_version_is_read_as_full_up_to_its_end(db, settings):
    """Before an upgrade the key held only when the line ends."""
    account = factories.account(Channel.SMS, Adapter.CONSOLE, rate_limit_per_second=25)
    at = time.time() + 3000
    ratelimit._client(settings.REDIS_URL).set(f"channels:rate-line:{account.pk}", str(round((at + 4.0) * 1_000_000)))
    assert ratelimit.hold_line(account, 30, shortest_wait=1.0, at=at) == pytest.approx(
        [4.0] * 25 + [4.0 + ratelimit.LINE_SECOND] * 5)


def test_no_limit_means_no_redis_round_trip(db):
    account = factories.account(Channel.SMS, Adapter.CONSOLE, rate_limit_per_second=0)
    assert all(ratelimit.try_acquire(account, at=1.0) for _ in range(100))


def test_messages_over_the_limit_wait_in_the_queue_without_spending_an_attempt(
    contact, sms_template, twilio_accounts, fake_twilio
):
    account = twilio_accounts[Channel.SMS]
    account.rate_limit_per_second = 1
    account.save()

    ids = [services.send(contact=contact, data={"event": {"code": str(n)}}, origin=services.Origin(kind="api"),
                         idempotency_key=f"rl-{n}", template_key=sms_template.key).messages[0].pk for n in range(3)]
    deadline = time.monotonic() + 15
    while OutboundMessage.objects.filter(pk__in=ids, status=MessageStatus.QUEUED).exists():
        assert time.monotonic() < deadline, "messages never left the queue"
        deliver_batch(message_ids=ids)
        time.sleep(0.2)
    assert set(OutboundMessage.objects.filter(pk__in=ids).values_list("status", flat=True)) == {MessageStatus.SENT}
    assert set(OutboundMessage.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}
    # One per one-second window: three sends span more than one second.
    arrivals = sorted(request.at for request in fake_twilio.requests)
    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] > 0.9


def test_held_messages_come_back_at_the_accounts_pace_not_all_at_once(
    contact, sms_template, twilio_accounts, fake_twilio
):
    """Sent back all together, every second would let the limit's worth
    through and put all the rest back again: a write, an event and a task
    per message, over and over."""
    account = twilio_accounts[Channel.SMS]
    account.rate_limit_per_second = 2
    account.save()
    ids = [services.send(contact=contact, data={"event": {"code": str(n)}}, origin=services.Origin(kind="api"),
                         idempotency_key=f"pace-{n}", template_key=sms_template.key).messages[0].pk for n in range(7)]

    report = deliver_batch(message_ids=ids)

    assert report.sent == 2
    held = OutboundMessage.objects.filter(pk__in=report.rate_limited).order_by("next_attempt_at")
    waits = [round((m.next_attempt_at - m.status_changed_at).total_seconds()) for m in held]
    assert waits == [1, 1, 2, 2, 3]  # two a second, as the limit lets them through
    assert {m.attempts for m in held} == {0}
    assert deliver_batch(message_ids=ids).claimed == 0  # not before their time
