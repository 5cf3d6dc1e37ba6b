"""Delivery: claim queued messages, hand each to its provider adapter, record
the outcome; retries with backoff, permanent failures with feedback, and the
sweeper that recovers what a lost task or a dead worker left behind.

Safe to run twice: a message is only handed to a provider after this worker
moved it queued -> sending with a conditional update; a redelivered task
finds it past queued and does nothing.

A task delivers its batch in a number of queries that grows with its
waves of provider calls (below), never with its messages: one claim (which
also counts the attempt of every claimed row, before any provider call, so
a crash inside a call still counts), one lookup of the accounts (and one of
push platforms), then, every WAVES_PER_RECORD waves of an account and when
its calls end, the answers recorded together (every accepted message in one
UPDATE ... FROM (VALUES ...) and one DeliveryEvent INSERT, rate-limited ones
back in line in one UPDATE), so a worker lost mid-batch loses at most that
many waves' answers. Failures, rarer, go one by one through
message_transition as before.

A batch stopped part way (the soft time limit, an error) waits a little for
the calls under way, records every answer that came, and puts back in line,
with the attempt given back, every message no call was made for; only the
calls whose answer never came stay in `sending` for the sweeper. A batch
also starts no wave it could not finish before the soft time limit (slow
providers): its rest goes back in line the same way.

Provider calls of one account go in waves: the first call alone (it opens
the client or SMTP session the others reuse, and if it hangs nothing else
of the batch has gone out), then up to `calls_in_flight` at once (account
option, CALLS_IN_FLIGHT by default; 1 sends one at a time). A call carries
one message, or, for an adapter with a batch API (`send_batch`: Postmark),
up to its batch size, each message answered on its own. Calls run on one event
loop per worker process for an adapter with an async client
(`send_async`: Twilio), on a small thread pool for the others. Neither
writes to the database: every write stays on the task's thread. Each wave
takes its sends from the sender's shared rate limit in one Redis round trip
just before it goes, so the limit holds at the provider's edge; what the
limit refuses goes back to `queued` without spending an attempt."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels import ratelimit
from channels.models import Adapter, DeliveryEvent, MessageStatus, OutboundMessage, ProviderAccount
from channels.providers.base import (
    Accepted,
    AmbiguousError,
    Feedback,
    PermanentError,
    Provider,
    TransientError,
)
from channels.providers.registry import provider_for
from channels.services import (
    StatusMove,
    enqueue_delivery,
    ladder_on_outcome,
    message_transition,
    messages_recheck_for_delivery,
    status_events_insert,
)
from channels.signals import message_status_changed
from config.bulk import json_param, json_rows
from consent import services as consent_services
from consent.models import Channel, DevicePlatform, PushDevice, SuppressionReason

logger = logging.getLogger(__name__)
SYSTEM_ACTOR = "channels"
RATE_LIMITED_DELAY = 1.0
# Messages a stopped batch never sent go back in line after this long: soon,
# not after the sweeper, but a fault that stops every batch must not spin.
STOPPED_RETRY_DELAY = 5.0
# How long a stopped batch waits for provider calls already under way (at
# most: see _grace_seconds); the adapters' own timeouts are about 10 s.
CALLS_UNDER_WAY_GRACE_SECONDS = 15.0
# The adapters' default call timeout: the last wave a batch starts may take this long.
PROVIDER_TIMEOUT_SECONDS = 10.0
OUT_OF_TIME = "put back unsent: the batch ran out of time (slow provider calls)"
# Provider calls in flight per account and task (the work is waiting on the
# network); an account's options.calls_in_flight overrides it.
CALLS_IN_FLIGHT = 8
MAX_CALLS_IN_FLIGHT = 32
# An account's answers are committed every this many waves (and when its
# calls end): one record (an UPDATE, an INSERT, a commit) for 32 SMS instead
# of 8 (bench, back to back: 1,614 -> 2,173 messages/s). A worker killed
# mid-batch loses at most this many waves' answers, which the sweeper sends
# again. Waves four times as big, taking turns under a semaphore, measured
# as fast, but a send the rate limit granted could then wait three rounds
# before it went, widening the gap between the limiter's window and the
# provider's second.
WAVES_PER_RECORD = 4


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    ambiguous: int = 0
    rate_limited: list[int] = field(default_factory=list)
    out_of_time: list[int] = field(default_factory=list)


@dataclass
class _Outcome:
    """What happened to one claimed message: the provider's answer (Accepted
    or the error it raised), or None when the rate limit held it back."""

    message: OutboundMessage
    account: ProviderAccount | None
    answer: Accepted | Exception | None


# Push is one channel served by two kinds of service: browsers subscribe with
# Web Push, apps register FCM tokens.
_PUSH_ADAPTERS = {
    DevicePlatform.WEB: (Adapter.WEBPUSH, Adapter.CONSOLE),
    DevicePlatform.ANDROID: (Adapter.FCM, Adapter.CONSOLE),
    DevicePlatform.IOS: (Adapter.FCM, Adapter.CONSOLE),
}


def account_for(accounts: list[ProviderAccount], channel: str, platform: str = "") -> ProviderAccount | None:
    """Of the active accounts (ordered by priority, then pk), the first that
    serves the channel (for push: among the adapters that can reach the
    device's platform)."""
    adapters = _PUSH_ADAPTERS.get(platform, (Adapter.CONSOLE,)) if channel == Channel.PUSH and platform else None
    for account in accounts:
        if account.channel == channel and (adapters is None or account.adapter in adapters):
            return account
    return None


def _routes(messages: list[OutboundMessage]) -> list[tuple[ProviderAccount | None, list[OutboundMessage]]]:
    """The messages grouped by the account that serves them, in two queries
    for the whole batch."""
    accounts = list(ProviderAccount.objects.filter(active=True, channel__in={m.channel for m in messages})
                    .order_by("priority", "pk"))
    tokens = [m.address for m in messages if m.channel == Channel.PUSH]
    platforms = dict(PushDevice.objects.filter(token__in=tokens).values_list("token", "platform")) if tokens else {}
    groups: dict[int | None, tuple[ProviderAccount | None, list[OutboundMessage]]] = {}
    for message in messages:
        account = account_for(accounts, message.channel, platforms.get(message.address, ""))
        groups.setdefault(account.pk if account else None, (account, []))[1].append(message)
    return list(groups.values())


def messages_claim(*, message_ids: list[int], now: dt.datetime) -> list[OutboundMessage]:
    """queued -> sending, for the rows that are still queued and due and that
    the gate still allows (consent may have changed since they were queued),
    counting an attempt for each; rows another worker holds are skipped,
    never waited for."""
    with transaction.atomic():
        candidates = list(
            OutboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("contact", "intent")
            .filter(pk__any=message_ids, status=MessageStatus.QUEUED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("pk")
        )
        claimed = messages_recheck_for_delivery(messages=candidates, now=now)
        updated = OutboundMessage.objects.filter(pk__any=[m.pk for m in claimed], status=MessageStatus.QUEUED).update(
            status=MessageStatus.SENDING, sending_at=now, status_changed_at=now, attempts=F("attempts") + 1
        )
        if updated != len(claimed):
            raise AssertionError("rows locked for the claim changed under the lock")
        moves = [(m, MessageStatus.QUEUED, MessageStatus.SENDING, "") for m in claimed]
        status_events_insert(moves, now)
        for message in claimed:  # the rows are locked: memory and table agree
            message.status, message.sending_at, message.status_changed_at = MessageStatus.SENDING, now, now
            message.attempts += 1
        transaction.on_commit(lambda: _announce(moves))
    return claimed


def _announce(moves: list[StatusMove]) -> None:
    for message, old, new, _detail in moves:
        message_status_changed.send(sender=OutboundMessage, message=message, old_status=old, new_status=new)


def deliver_batch(*, message_ids: list[int], now: dt.datetime | None = None) -> BatchReport:
    now = now or timezone.now()
    batch = _Batch(report=BatchReport(), deadline=_waves_deadline())
    claimed = messages_claim(message_ids=message_ids, now=now)
    batch.report.claimed = len(claimed)
    if not claimed:
        return batch.report
    batch.unstarted = {m.pk: m for m in claimed}
    try:
        for account, messages in _routes(claimed):
            if batch.out_of_time():
                break
            if account is None:
                # Configuration an operator can fix (add or activate an
                # account): wait for it with backoff rather than lose the message.
                for message in messages:
                    batch.answer([message], None, TransientError(f"no active provider account for channel "
                                                                 f"{message.channel}"))
                batch.record()
            else:
                _send_group(batch, account, messages)
        if batch.unstarted:  # out of time: what no call began for goes back in line, its attempt given back
            batch.report.out_of_time = _put_back(list(batch.unstarted.values()),
                                                 detail=dict.fromkeys(batch.unstarted, OUT_OF_TIME),
                                                 delay=STOPPED_RETRY_DELAY)
    except BaseException as stop:
        # The soft time limit, or anything else that stops the batch: record
        # what the providers answered (an accepted message left in `sending`
        # would be sent again after the sweeper) and put back in line, with
        # its attempt given back, what never reached a provider. Calls under
        # way whose answer never came stay in `sending`: the sweeper
        # recovers them.
        _settle_stopped(batch, stop)
        raise
    return batch.report


@dataclass
class _Batch:
    """A batch under way: the messages no provider call has begun for, and
    the answers (and rate-limit holds) not yet recorded."""

    report: BatchReport
    # No wave starts after this (time.monotonic()), but the batch's first always does.
    deadline: float = float("inf")
    waves: int = 0
    unstarted: dict[int, OutboundMessage] = field(default_factory=dict)
    answered: list[_Outcome] = field(default_factory=list)

    def started(self, messages: list[OutboundMessage]) -> None:
        for message in messages:
            self.unstarted.pop(message.pk, None)

    def not_begun(self, messages: list[OutboundMessage]) -> None:
        self.unstarted.update((message.pk, message) for message in messages)

    def out_of_time(self) -> bool:
        return self.waves > 0 and time.monotonic() >= self.deadline

    def answer(self, messages: list[OutboundMessage], account: ProviderAccount | None,
               answer: Accepted | Exception | None) -> None:
        self.started(messages)
        self.answered += [_Outcome(message, account, answer) for message in messages]

    def record(self) -> None:
        """Record the answers so far. Each part leaves `answered` once it is
        committed, so that after an interruption the rest, and only the
        rest, can be recorded again."""
        accepted = [o for o in self.answered if isinstance(o.answer, Accepted)]
        if accepted:
            _record_accepted(accepted)
            self.report.sent += len(accepted)
            self.answered = [o for o in self.answered if not isinstance(o.answer, Accepted)]
        held = [o for o in self.answered if o.answer is None]
        if held:
            self.report.rate_limited += _put_back_paced(held)
            self.answered = [o for o in self.answered if o.answer is not None]
        while self.answered:
            outcome = self.answered[0]
            with transaction.atomic():  # the move, its retry task and its feedback, or none of them
                _record_error(outcome.message, outcome.answer, self.report)
            self.answered.pop(0)


def _put_back_paced(held: list[_Outcome]) -> list[int]:
    """Messages a rate limit held go back in line at their account's pace,
    after those of other batches already waiting (`ratelimit.hold_line`):
    the limit's worth a second. Sent back all together after a second, each
    second let the limit's worth through and put the rest back again, each
    time an UPDATE, an event and a task per message: 30,375 put-backs for
    1,250 SMS behind a limit of 25/s."""
    by_account: dict[int, list[_Outcome]] = {}
    for outcome in held:
        by_account.setdefault(outcome.account.pk, []).append(outcome)
    back: list[int] = []
    for outcomes in by_account.values():
        account = outcomes[0].account
        waits = ratelimit.hold_line(account, len(outcomes), shortest_wait=RATE_LIMITED_DELAY)
        for delay, group in itertools.groupby(zip(waits, outcomes, strict=True), key=lambda pair: pair[0]):
            messages = [outcome.message for _delay, outcome in group]
            back += _put_back(messages, detail=dict.fromkeys((m.pk for m in messages), f"rate limit of {account.name}"),
                              delay=delay)
    return back


def _settle_stopped(batch: _Batch, stop: BaseException) -> None:
    try:
        batch.record()
    except Exception:
        logger.exception("delivery stopped by %r and its answers could not be recorded: the sweeper recovers them",
                         stop)
    try:
        unstarted = list(batch.unstarted.values())
        if unstarted:
            why = f"put back unsent: the delivery task stopped ({type(stop).__name__})"
            _put_back(unstarted, detail=dict.fromkeys(batch.unstarted, why), delay=STOPPED_RETRY_DELAY)
    except Exception:
        logger.exception("delivery stopped by %r and its unsent messages could not be put back: the sweeper "
                         "recovers them", stop)


# --- Calling the providers --------------------------------------------------------


def _send_group(batch: _Batch, account: ProviderAccount, messages: list[OutboundMessage]) -> None:
    """One account's messages, in waves: the first alone, then up to
    calls_in_flight at once; each wave takes its rate-limit budget just
    before it goes, and the answers are recorded every WAVES_PER_RECORD
    waves and when the account's calls end (a worker lost later keeps
    them)."""
    try:
        provider = provider_for(account)
    except Exception as error:
        # An unknown adapter, an SDK that fails to import: only this
        # account's messages wait (with backoff, as for a missing secret);
        # the other accounts' still go.
        if not isinstance(error, ImproperlyConfigured):
            logger.error("provider account %s (%s) cannot be used", account.name, account.adapter, exc_info=error)
            error = TransientError(f"provider adapter {account.adapter!r} unavailable: "
                                   f"{type(error).__name__}: {error}")
        batch.answer(messages, account, error)
        batch.record()
        return
    in_flight = _calls_in_flight(account, provider)
    per_call = provider.batch_size(account) if hasattr(provider, "send_batch") else 1
    first, rest = messages[:per_call], messages[per_call:]
    step = in_flight * per_call
    waves = [first] + [rest[i:i + step] for i in range(0, len(rest), step)]
    for index, wave in enumerate(waves):
        if batch.out_of_time():
            break
        granted = ratelimit.acquire(account, len(wave))
        batch.waves += 1
        going = wave[:granted]
        _call_wave(batch, provider, account, [going[i:i + per_call] for i in range(0, granted, per_call)])
        if granted < len(wave):
            # The budget is spent: this wave's rest and every later wave wait.
            batch.answer(wave[granted:] + [m for later in waves[index + 1:] for m in later], account, None)
            break
        if (index + 1) % WAVES_PER_RECORD == 0:
            batch.record()
    batch.record()


def _calls_in_flight(account: ProviderAccount, provider: Provider) -> int:
    if not provider.concurrent_calls:
        return 1
    wanted = (account.options or {}).get("calls_in_flight", CALLS_IN_FLIGHT)
    try:
        return max(1, min(MAX_CALLS_IN_FLIGHT, int(wanted)))
    except (TypeError, ValueError):
        return CALLS_IN_FLIGHT


def _call_wave(batch: _Batch, provider: Provider, account: ProviderAccount,
               calls: list[list[OutboundMessage]]) -> None:
    """Make a wave's calls (each one message, or one batch for an adapter
    with `send_batch`) and note every message's answer."""
    on_loop = hasattr(provider, "send_async")
    if len(calls) <= 1 and not on_loop:
        for messages in calls:
            batch.started(messages)
            _note_answers(batch, account, messages, _call(provider, messages, account))
        return
    futures: dict[Future, list[OutboundMessage]] = {}
    stop = threading.Event()
    try:
        for messages in calls:
            # Counted as started before it is handed over: a message whose
            # call may have begun is never put back as unsent.
            batch.started(messages)
            try:
                if on_loop:
                    future = asyncio.run_coroutine_threadsafe(_call_async(provider, messages[0], account, stop),
                                                              _event_loop())
                else:
                    future = _executor().submit(_call, provider, messages, account)
            except RuntimeError:  # the pool or the loop is shutting down: this call never began
                batch.not_begun(messages)
                raise
            futures[future] = messages
        wait(futures)
    finally:
        # Also when the task is stopped while waiting (the soft time limit)
        # or while handing calls over: calls not begun never begin and their
        # messages count as unstarted again; calls under way may reach the
        # provider whatever we do, so their answers are waited for a while,
        # within the time left before the hard limit. (A call on the loop is
        # never cancelled: cancelling it mid-request could not tell whether
        # the request went out; one not yet begun sees `stop` and does not.)
        stop.set()
        under_way = []
        for future, messages in futures.items():
            if not on_loop and future.cancel():
                batch.not_begun(messages)
            else:
                under_way.append(future)
        if not all(future.done() for future in under_way):
            wait(under_way, timeout=_grace_seconds())
        for future in under_way:
            if future.done():
                answers = future.result()
                if answers is NOT_BEGUN:
                    batch.not_begun(futures[future])
                else:
                    _note_answers(batch, account, futures[future], answers)


def _note_answers(batch: _Batch, account: ProviderAccount, messages: list[OutboundMessage],
                  answers: list[Accepted | Exception]) -> None:
    for message, answer in zip(messages, answers, strict=True):
        batch.answer([message], account, answer)


def _waves_deadline() -> float:
    """When a batch starts its last wave: early enough that the wave's calls
    end (or time out) and are recorded before the soft time limit. A slow or
    hung provider then puts the batch's rest back in line, rather than the
    limit stopping the batch every time with other accounts' messages queued
    behind it."""
    budget = settings.CELERY_TASK_SOFT_TIME_LIMIT - PROVIDER_TIMEOUT_SECONDS - _grace_seconds()
    return time.monotonic() + max(0.0, budget)


def _grace_seconds() -> float:
    """How long a stopped batch waits for calls under way: the provider's
    usual timeout, and never more than half the time between the soft and
    the hard time limit (recording what came needs the rest)."""
    gap = settings.CELERY_TASK_TIME_LIMIT - settings.CELERY_TASK_SOFT_TIME_LIMIT
    return max(0.0, min(CALLS_UNDER_WAY_GRACE_SECONDS, gap / 2))


def _call(provider: Provider, messages: list[OutboundMessage], account: ProviderAccount) -> list[Accepted | Exception]:
    """One call: one message through `send`, or several through
    `send_batch`; an answer per message."""
    try:
        if hasattr(provider, "send_batch"):
            return provider.send_batch(messages, account)
        return [provider.send(messages[0], account)]
    except SoftTimeLimitExceeded:
        raise  # only ever raised on the task's own thread: stop the batch
    except Exception as error:  # classified on the task's thread
        return [error] * len(messages)


# What a call on the loop answers when the batch stopped before it began.
NOT_BEGUN = object()


async def _call_async(provider: Provider, message: OutboundMessage, account: ProviderAccount,
                      stop: threading.Event) -> list[Accepted | Exception] | object:
    if stop.is_set():
        return NOT_BEGUN
    try:
        return [await provider.send_async(message, account)]
    except Exception as error:  # classified on the task's thread
        return [error]


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0


def _event_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, on its own thread, made after the
    worker's fork; its clients keep their connections between batches."""
    global _loop, _loop_pid
    with _pool_lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="delivery-calls", daemon=True).start()
            _loop_pid = os.getpid()
        return _loop


def _executor() -> ThreadPoolExecutor:
    """One pool per process, made after the worker's fork."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=MAX_CALLS_IN_FLIGHT, thread_name_prefix="delivery")
            _pool_pid = os.getpid()
        return _pool


# --- Recording the outcomes -------------------------------------------------------


def _record_accepted(accepted: list[_Outcome]) -> None:
    """sending -> sent (-> delivered when the adapter knows at once) for every
    accepted message in one UPDATE, with their DeliveryEvents and signals,
    as message_transition would record each."""
    now = timezone.now()
    with transaction.atomic():
        moved = _mark_accepted(accepted, now)
        moves: list[StatusMove] = []
        for outcome in accepted:
            if outcome.message.pk in moved:
                moves += _accepted_moves(outcome, now)
        status_events_insert(moves, now)
        # A fast provider may already have reported (a webhook landed first):
        # then only the bookkeeping fields are filled in.
        for outcome in accepted:
            if outcome.message.pk not in moved:
                OutboundMessage.objects.filter(pk=outcome.message.pk).update(**_provider_fields(outcome))
        for message, _old, new, _detail in moves:
            if new == MessageStatus.DELIVERED and message.intent_id:
                _ladder_on_delivery(message, now)
        transaction.on_commit(lambda: _announce(moves))


def _ladder_on_delivery(message: OutboundMessage, now: dt.datetime) -> None:
    """End the message's ladder, in a savepoint of its own: a ladder that
    cannot be ended must not undo the record of the messages accepted with
    it (left in `sending`, the sweeper would send them all again)."""
    try:
        with transaction.atomic():
            ladder_on_outcome(message=message, now=now)
    except Exception:
        logger.exception("message %s was delivered but its ladder (intent %s) could not be ended",
                         message.pk, message.intent_id)


_ACCEPTED_SQL = """
UPDATE {table} AS m
SET status = v.status, status_changed_at = %s, sent_at = %s,
    delivered_at = CASE WHEN v.status = 'delivered' THEN %s ELSE m.delivered_at END,
    provider = v.provider, provider_account_id = v.account_id, provider_message_id = v.provider_message_id,
    cost_estimate = v.cost_estimate, error = ''
FROM ({rows}) AS v
WHERE m.id = v.id AND m.status = 'sending'
RETURNING m.id
"""
_ACCEPTED_COLUMNS = (("id", "bigint"), ("status", "text"), ("provider", "text"), ("account_id", "bigint"),
                     ("provider_message_id", "text"), ("cost_estimate", "numeric"))


def _mark_accepted(accepted: list[_Outcome], now: dt.datetime) -> set[int]:
    """Move the accepted rows still in `sending`; returns the ids moved."""
    if connection.vendor != "postgresql":  # the embedded SQLite: one conditional UPDATE each
        return {o.message.pk for o in accepted if OutboundMessage.objects.filter(
            pk=o.message.pk, status=MessageStatus.SENDING).update(**_accepted_fields(o, now))}
    rows = []
    for outcome in accepted:
        fields = _accepted_fields(outcome, now)
        rows.append((outcome.message.pk, fields["status"], fields["provider"], fields["provider_account_id"],
                     fields["provider_message_id"], fields["cost_estimate"]))
    sql = _ACCEPTED_SQL.format(table=connection.ops.quote_name(OutboundMessage._meta.db_table),
                               rows=json_rows(_ACCEPTED_COLUMNS))
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, now, now, json_param(rows)])
        return {row[0] for row in cursor.fetchall()}


def _accepted_fields(outcome: _Outcome, now: dt.datetime) -> dict:
    delivered = outcome.answer.delivered
    fields = {**_provider_fields(outcome), "status": MessageStatus.DELIVERED if delivered else MessageStatus.SENT,
              "status_changed_at": now, "sent_at": now}
    if delivered:
        fields["delivered_at"] = now
    return fields


def _provider_fields(outcome: _Outcome) -> dict:
    return {"provider": outcome.account.adapter, "provider_account_id": outcome.account.pk,
            "provider_message_id": outcome.answer.provider_message_id[:200],
            "cost_estimate": outcome.answer.cost_estimate, "error": ""}


def _accepted_moves(outcome: _Outcome, now: dt.datetime) -> list[StatusMove]:
    """The message's new state in memory, and its moves."""
    message = outcome.message
    for name, value in _provider_fields(outcome).items():
        setattr(message, name, value)
    message.status, message.status_changed_at, message.sent_at = MessageStatus.SENT, now, now
    moves = [(message, MessageStatus.SENDING, MessageStatus.SENT, "")]
    if outcome.answer.delivered:
        message.status, message.delivered_at = MessageStatus.DELIVERED, now
        moves.append((message, MessageStatus.SENT, MessageStatus.DELIVERED, "console adapter"))
    return moves


_PUT_BACK_SQL = """
UPDATE {table}
SET status = 'queued', status_changed_at = %s, next_attempt_at = %s, attempts = attempts - 1
WHERE id = ANY(%s::bigint[]) AND status = 'sending'
RETURNING id
"""


def _put_back(messages: list[OutboundMessage], *, detail: dict[int, str], delay: float) -> list[int]:
    """sending -> queued without spending an attempt (the claim counted one:
    give it back), for messages no provider call was made for, tried again
    after `delay`. Only the rows still in `sending` move, and only they get
    an event and an announcement (the sweeper may have moved one
    meanwhile); returns their ids."""
    now = timezone.now()
    not_before = now + dt.timedelta(seconds=delay)
    with transaction.atomic():
        moved = _mark_put_back([m.pk for m in messages], now, not_before)
        moves = [(m, MessageStatus.SENDING, MessageStatus.QUEUED, detail[m.pk]) for m in messages if m.pk in moved]
        status_events_insert(moves, now)
        for message, _old, _new, _detail in moves:
            message.status, message.status_changed_at, message.next_attempt_at = MessageStatus.QUEUED, now, not_before
            message.attempts -= 1
        transaction.on_commit(lambda: _announce(moves))
        back = [message.pk for message, _old, _new, _detail in moves]
        if back:
            enqueue_delivery(back, countdown=delay)
    return back


def _mark_put_back(ids: list[int], now: dt.datetime, not_before: dt.datetime) -> set[int]:
    """Move the rows still in `sending` back to `queued`; returns the ids moved."""
    if connection.vendor != "postgresql":  # the embedded SQLite: one conditional UPDATE each
        return {pk for pk in ids if OutboundMessage.objects.filter(pk=pk, status=MessageStatus.SENDING).update(
            status=MessageStatus.QUEUED, status_changed_at=now, next_attempt_at=not_before,
            attempts=F("attempts") - 1)}
    sql = _PUT_BACK_SQL.format(table=connection.ops.quote_name(OutboundMessage._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, not_before, ids])
        return {row[0] for row in cursor.fetchall()}


def _record_error(message: OutboundMessage, error: Exception, report: BatchReport) -> None:
    if isinstance(error, AmbiguousError):
        _ambiguous(message, error, report)
    elif isinstance(error, TransientError):
        _retry_or_fail(message, error, report)
    elif isinstance(error, PermanentError):
        _fail(message, f"{error.code}: {error}" if error.code else str(error), report)
        feedback_apply(message=message, feedback=error.feedback, detail=str(error))
    elif isinstance(error, ImproperlyConfigured):  # a missing secret: an operator can fix it, so wait for it
        _retry_or_fail(message, TransientError(f"provider account misconfigured: {error}"), report)
    else:  # an adapter bug or an unmapped library error: retry, do not lose it
        logger.error("unexpected error delivering message %s", message.pk, exc_info=error)
        _retry_or_fail(message, TransientError(f"unexpected {type(error).__name__}: {error}"), report)


def _ambiguous(message: OutboundMessage, error: AmbiguousError, report: BatchReport) -> None:
    """The request reached the provider but its answer did not reach us: it
    may have been accepted. Sending again now could deliver it twice, so the
    row stays in `sending`: the provider's status callback (it carries our
    message id) settles it, and if none comes the sweeper re-queues it after
    CHANNELS_STUCK_AFTER_SECONDS (or fails it at the attempt limit)."""
    detail = f"ambiguous, left for the status callback or the sweeper: {error}"
    OutboundMessage.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(error=detail[:2000])
    DeliveryEvent.objects.create(message=message, kind=DeliveryEvent.Kind.STATUS, status=MessageStatus.SENDING,
                                 old_status=MessageStatus.SENDING, detail=detail[:500], received_at=timezone.now())
    report.ambiguous += 1


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, then a
    random point in its upper half so retries from a burst spread out."""
    ceiling = min(settings.CHANNELS_RETRY_MAX_SECONDS, settings.CHANNELS_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def _retry_or_fail(message: OutboundMessage, error: TransientError, report: BatchReport) -> None:
    if message.attempts >= settings.CHANNELS_MAX_ATTEMPTS:
        _fail(message, f"gave up after {message.attempts} attempts: {error}", report)
        return
    delay = backoff_seconds(message.attempts)
    not_before = timezone.now() + dt.timedelta(seconds=delay)
    message_transition(message=message, to=MessageStatus.QUEUED, detail=f"transient: {error}"[:500],
                       fields={"next_attempt_at": not_before, "error": str(error)[:2000]})
    enqueue_delivery([message.pk], countdown=delay)
    report.retried += 1


def _fail(message: OutboundMessage, detail: str, report: BatchReport) -> None:
    message_transition(message=message, to=MessageStatus.FAILED, detail=detail[:500], fields={"error": detail[:2000]})
    report.failed += 1


def feedback_apply(*, message: OutboundMessage, feedback: str, detail: str) -> None:
    """What a permanent failure teaches about the address: a dead push token
    is deactivated; a hard bounce or complaint suppresses the address."""
    if feedback == Feedback.UNREGISTERED_DEVICE:
        for device in PushDevice.objects.filter(token=message.address, active=True):
            consent_services.push_device_deactivate(device=device, reason=f"provider: {detail}"[:200])
    elif feedback in (Feedback.HARD_BOUNCE, Feedback.COMPLAINT):
        reason = SuppressionReason.HARD_BOUNCE if feedback == Feedback.HARD_BOUNCE else SuppressionReason.SPAM_COMPLAINT
        consent_services.suppression_create(
            reason=reason, actor=SYSTEM_ACTOR, address=message.address, channel=message.channel,
            note=f"message {message.pk}: {detail}"[:1000],
        )


# --- The sweeper -----------------------------------------------------------------


def messages_sweep_stuck(*, now: dt.datetime | None = None, limit: int = 5000) -> int:
    """Re-enqueue what the broker lost (queued past the threshold) and recover
    what a dead worker left in `sending` (past the task time limit, so the
    task cannot still be running). Returns how many were re-enqueued."""
    now = now or timezone.now()
    threshold = now - dt.timedelta(seconds=settings.CHANNELS_STUCK_AFTER_SECONDS)
    with transaction.atomic():
        stuck_sending = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.SENDING, sending_at__lt=threshold)
            .order_by("sending_at")[:limit]
        )
        for message in stuck_sending:
            if message.attempts >= settings.CHANNELS_MAX_ATTEMPTS:
                # A message that kills its worker every time must not loop forever.
                message_transition(message=message, to=MessageStatus.FAILED, now=now,
                                   detail=f"worker lost mid-delivery {message.attempts} times")
                continue
            message_transition(message=message, to=MessageStatus.QUEUED, now=now,
                               detail="recovered by the sweeper: worker lost mid-delivery",
                               fields={"next_attempt_at": now})
        lost = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.QUEUED, next_attempt_at__lt=threshold)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        # Restamp so the next sweep waits a full threshold before trying again.
        OutboundMessage.objects.filter(pk__in=lost).update(next_attempt_at=now)
        ids = [m.pk for m in stuck_sending if m.status == MessageStatus.QUEUED] + lost
        if ids:
            enqueue_delivery(ids)
    if ids:
        logger.info("sweeper re-enqueued %d messages (%d from sending)", len(ids), len(stuck_sending))
    return len(ids)
