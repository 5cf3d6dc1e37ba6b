"""Governance at send time: frequency caps and arbitration between journeys.

Both are channels send guards (registered in JourneysConfig.ready), so they
apply to every send that passes channels.services.send, after the consent
gate. Inside a tick the messages and pending sends of the whole batch are
loaded once (`tick_cache`); outside one (API sends, deferred releases) each
guard call reads what it needs itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models.functions import Coalesce

from consent.models import MessageClass
from consent.policy import Decision, Outcome
from journeys.models import CapRule, Enrollment, EnrollmentStatus, JourneyStatus, JourneyVersion

CAP_REASON = "frequency_cap"
ARBITRATION_REASON = "arbitration"
PAUSED_REASON = "journey_paused"
ARCHIVED_REASON = "journey_archived"
# What counts against a cap: messages on their way or gone, not ones held back.
COUNTED = ("queued", "sending", "sent", "delivered", "failed", "bounced", "undelivered")


@dataclass(frozen=True)
class VersionPolicy:
    journey_id: int
    priority: int
    on_cap: str
    on_conflict: str
    journey_status: str = JourneyStatus.ACTIVE


@dataclass
class TickCache:
    contact_ids: set[int]
    messages: dict[int, list[dict]] = field(default_factory=lambda: defaultdict(list))
    pending: dict[int, list[dict]] = field(default_factory=lambda: defaultdict(list))
    rules: list[CapRule] = field(default_factory=list)
    policies: dict[int, VersionPolicy] = field(default_factory=dict)


_cache: contextvars.ContextVar[TickCache | None] = contextvars.ContextVar("journeys_tick_cache", default=None)


def _lookback(now: dt.datetime, rules: list[CapRule]) -> dt.datetime:
    hours = max([r.window_hours for r in rules] + [0])
    return now - max(dt.timedelta(hours=hours), arbitration_window())


def arbitration_window() -> dt.timedelta:
    return dt.timedelta(minutes=settings.JOURNEYS_ARBITRATION_WINDOW_MINUTES)


def _message_rows(contact_ids: Iterable[int], since: dt.datetime) -> Iterator[dict]:
    """Messages counted at the moment they went (or will go) out, not when
    they were created: sent_at once handed to a provider, else the end of
    their deferral (deliver_after: a message deferred Monday and released
    Tuesday is Tuesday's), else created_at. channels keeps no "queued at"
    column, so a queued message released from a deferral counts at
    deliver_after, the instant it became due.

    Statuses are filtered here rather than in SQL: the filter drops few rows,
    and in SQL a stale estimate of how few (an outbox that grew fast since
    its last ANALYZE) led PostgreSQL to walk the status index over the whole
    outbox, 400 ms a batch at 700,000 messages, instead of each contact's
    messages, 0.1 ms."""
    from channels.models import OutboundMessage

    rows = (
        OutboundMessage.objects.filter(contact_id__any=list(contact_ids))
        .annotate(counted_at=Coalesce("sent_at", "deliver_after", "created_at"))
        .filter(counted_at__gte=since)
        .order_by("counted_at", "id")
        .values("contact_id", "channel", "message_class", "counted_at", "origin_journey_version_id", "status")
        .iterator()
    )
    return (row for row in rows if row["status"] in COUNTED)


def counted_at(message) -> dt.datetime:
    return message.sent_at or message.deliver_after or message.created_at


def _pending_rows(contact_ids: Iterable[int], until: dt.datetime) -> Iterator[dict]:
    return (
        Enrollment.objects.filter(
            contact_id__any=list(contact_ids), status=EnrollmentStatus.ACTIVE, send_pending=True,
            next_run_at__lte=until, is_control=False,
        )
        .order_by("next_run_at", "pk")
        .values("pk", "contact_id", "journey_id", "journey__priority", "next_run_at")
        .iterator()
    )


@contextlib.contextmanager
def tick_cache(contact_ids: list[int], now: dt.datetime) -> Iterator[TickCache]:
    """Load the batch's recent messages, pending sends and the cap rules once."""
    cache = TickCache(contact_ids=set(contact_ids), rules=list(CapRule.objects.filter(active=True)))
    for row in _message_rows(cache.contact_ids, _lookback(now, cache.rules)):
        cache.messages[row["contact_id"]].append(row)
    for row in _pending_rows(cache.contact_ids, now + arbitration_window()):
        cache.pending[row["contact_id"]].append(row)
    token = _cache.set(cache)
    try:
        yield cache
    finally:
        _cache.reset(token)


def note_sent(contact_id: int, messages: Iterable, *, enrollment_id: int | None = None) -> None:
    """Tell the tick cache what a send just wrote, so the next send in the
    same batch counts it, and that the enrollment's send is no longer
    pending. Give only new messages: a duplicate's were counted already."""
    cache = _cache.get()
    if cache is None:
        return
    messages = list(messages)
    if enrollment_id is None:
        enrollment_id = _enrollment_of(messages)
    for message in messages:
        if message.status in COUNTED:
            cache.messages[contact_id].append(
                {"contact_id": contact_id, "channel": message.channel, "message_class": message.message_class,
                 "counted_at": counted_at(message), "origin_journey_version_id": message.origin_journey_version_id}
            )
    cache.pending[contact_id] = [p for p in cache.pending.get(contact_id, []) if p["pk"] != enrollment_id]


def checkpoint(contact_id: int) -> Callable[[], None]:
    """What the tick cache holds for this contact now; the returned function
    puts it back (a step that failed is undone, the sends it noted too)."""
    cache = _cache.get()
    if cache is None:
        return lambda: None
    messages = list(cache.messages.get(contact_id, []))
    pending = list(cache.pending.get(contact_id, []))

    def restore() -> None:
        cache.messages[contact_id] = messages
        cache.pending[contact_id] = pending

    return restore


def _enrollment_of(messages: Iterable) -> int | None:
    for message in messages:
        return message.origin_enrollment_id
    return None


def _recent(contact_id: int, now: dt.datetime, rules: list[CapRule]) -> list[dict]:
    cache = _cache.get()
    if cache is not None and contact_id in cache.contact_ids:
        return cache.messages.get(contact_id, [])
    return list(_message_rows([contact_id], _lookback(now, rules)))


def _rules() -> list[CapRule]:
    cache = _cache.get()
    return cache.rules if cache is not None else list(CapRule.objects.filter(active=True))


def version_policy(version_id: int | None) -> VersionPolicy | None:
    if version_id is None:
        return None
    cache = _cache.get()
    if cache is not None and version_id in cache.policies:
        return cache.policies[version_id]
    row = (
        JourneyVersion.objects.filter(pk=version_id)
        .values("journey_id", "journey__priority", "journey__status", "definition")
        .first()
    )
    if row is None:
        return None
    policy = VersionPolicy(
        journey_id=row["journey_id"], priority=row["journey__priority"],
        on_cap=row["definition"].get("on_cap", "defer"), on_conflict=row["definition"].get("on_conflict", "defer"),
        journey_status=row["journey__status"],
    )
    if cache is not None:
        cache.policies[version_id] = policy
    return policy


def _hold(policy_name: str, reason: str, until: dt.datetime, detail: str) -> Decision:
    if policy_name == "drop":
        return Decision(Outcome.SUPPRESS, reason, detail=f"{detail}; dropped")
    return Decision(Outcome.DEFER, reason, until=until, detail=detail)


# --- Frequency caps ------------------------------------------------------------------


def frequency_cap_guard(*, contact, channel: str, message_class: str, origin, now: dt.datetime) -> Decision | None:
    """At most N messages per contact over a rolling window (per channel and/or
    class). Transactional messages and test sends are exempt."""
    if message_class == MessageClass.TRANSACTIONAL or origin.kind == "test":
        return None
    rules = [r for r in _rules() if r.channel in ("", channel) and r.message_class in ("", message_class)]
    if not rules:
        return None
    recent = _recent(contact.pk, now, rules)
    for rule in rules:
        since = now - dt.timedelta(hours=rule.window_hours)
        counted = [
            m for m in recent
            if m["counted_at"] > since
            and m["message_class"] != MessageClass.TRANSACTIONAL
            and (not rule.channel or m["channel"] == rule.channel)
            and (not rule.message_class or m["message_class"] == rule.message_class)
        ]
        if len(counted) < rule.max_messages:
            continue
        # The window frees a slot when the oldest message that keeps it full leaves it.
        freeing = sorted(m["counted_at"] for m in counted)[len(counted) - rule.max_messages]
        until = freeing + dt.timedelta(hours=rule.window_hours)
        policy = version_policy(origin.journey_version_id)
        detail = f"cap {rule.name!r}: {len(counted)} of {rule.max_messages} in {rule.window_hours}h"
        return _hold(policy.on_cap if policy else "defer", CAP_REASON, until, detail)
    return None


# --- Arbitration -------------------------------------------------------------------------


def arbitration_guard(*, contact, channel: str, message_class: str, origin, now: dt.datetime) -> Decision | None:
    """When a higher-priority journey sent to this contact within the window,
    or is about to, this journey's message waits (or is dropped)."""
    if origin.kind != "journey" or message_class == MessageClass.TRANSACTIONAL:
        return None
    mine = version_policy(origin.journey_version_id)
    if mine is None:
        return None
    window = arbitration_window()
    latest = None
    for message in _recent(contact.pk, now, []):
        theirs = version_policy(message["origin_journey_version_id"])
        if (
            theirs is not None and theirs.journey_id != mine.journey_id and theirs.priority > mine.priority
            and message["counted_at"] > now - window
        ):
            # The latest such message says how long to wait; among messages of
            # the same instant, the highest journey is named, whatever the rows' order.
            key = (message["counted_at"], theirs.priority, theirs.journey_id)
            if latest is None or key > latest[0]:
                latest = (key, theirs)
    if latest is not None:
        (at, _priority, _journey), theirs = latest
        detail = f"journey {theirs.journey_id} (priority {theirs.priority}) messaged within {window}"
        return _hold(mine.on_conflict, ARBITRATION_REASON, at + window, detail)
    for pending in _pending(contact.pk, now):
        if pending["journey_id"] != mine.journey_id and pending["journey__priority"] > mine.priority:
            detail = f"journey {pending['journey_id']} (priority {pending['journey__priority']}) sends first"
            until = max(pending["next_run_at"], now) + dt.timedelta(minutes=1)
            return _hold(mine.on_conflict, ARBITRATION_REASON, until, detail)
    return None


def _pending(contact_id: int, now: dt.datetime) -> list[dict]:
    cache = _cache.get()
    if cache is not None and contact_id in cache.contact_ids:
        return cache.pending.get(contact_id, [])
    return list(_pending_rows([contact_id], now + arbitration_window()))


# --- Paused and archived journeys ------------------------------------------------------


def journey_state_guard(*, contact, channel: str, message_class: str, origin, now: dt.datetime) -> Decision | None:
    """A journey's messages go out only while it is active: a paused journey's
    deferred or queued messages wait (looked at again every few minutes, so
    they go soon after resume); an archived journey's are dropped. Also asked
    at delivery, so a message queued before the pause waits too."""
    if origin.kind != "journey":
        return None
    mine = version_policy(origin.journey_version_id)
    if mine is None or mine.journey_status == JourneyStatus.ACTIVE:
        return None
    if mine.journey_status == JourneyStatus.ARCHIVED:
        return Decision(Outcome.SUPPRESS, ARCHIVED_REASON, detail=f"journey {mine.journey_id} is archived")
    until = now + dt.timedelta(minutes=settings.JOURNEYS_PAUSED_RECHECK_MINUTES)
    detail = f"journey {mine.journey_id} is {mine.journey_status}"
    return Decision(Outcome.DEFER, PAUSED_REASON, until=until, detail=detail)


def register() -> None:
    from channels.services import register_send_guard

    register_send_guard("journeys.journey_state", journey_state_guard, at_delivery=True)
    register_send_guard("journeys.frequency_cap", frequency_cap_guard)
    register_send_guard("journeys.arbitration", arbitration_guard)

