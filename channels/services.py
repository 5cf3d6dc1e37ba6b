"""The one way to send (`send`), the message status transitions, fallback
ladders, cancellation and the deferred-release sweep.

Everything that writes an OutboundMessage lives here (delivery to providers
is in `channels.delivery`, which calls the transition services below)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from channels import outbound_webhooks
from channels.models import (
    CANCELLABLE,
    TRANSITIONS,
    UNSUCCESSFUL,
    DeliveryEvent,
    IntentStatus,
    MessageStatus,
    OriginKind,
    OutboundMessage,
    SendIntent,
)
from channels.signals import message_status_changed
from config.bulk import insert_objects, json_param, json_rows, unsaved
from consent import policy
from consent import services as consent_services
from consent.models import ConsentSource, ConsentStatus, Contact, MessageClass
from consent.services import actor_label
from templates.models import Template
from templates.services import (
    RenderError,
    render_context,
    render_for_send,
    render_live,
    render_version,
    templates_for_send,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ChannelsError",
    "IllegalTransition",
    "Origin",
    "OriginKind",
    "Rung",
    "SendBatch",
    "SendResult",
    "SendStatus",
    "enqueue_delivery",
    "message_transition",
    "messages_cancel",
    "messages_recheck_for_delivery",
    "register_send_guard",
    "send",
]


class ChannelsError(Exception):
    """A channels operation that cannot be done as asked (API answers 409)."""


class IllegalTransition(ChannelsError):
    def __init__(self, message: OutboundMessage, to: str):
        self.message = message
        self.to = to
        super().__init__(f"message {message.pk} cannot move from {message.status} to {to}")


@dataclass(frozen=True)
class Origin:
    """Why a message exists. Plain ids: channels never imports journeys/support."""

    kind: str
    journey_version_id: int | None = None
    step_key: str = ""
    enrollment_id: int | None = None
    case_id: int | None = None
    event_id: int | None = None
    label: str = ""

    def as_fields(self) -> dict[str, Any]:
        return {
            "origin_kind": self.kind,
            "origin_journey_version_id": self.journey_version_id,
            "origin_step_key": self.step_key,
            "origin_enrollment_id": self.enrollment_id,
            "origin_case_id": self.case_id,
            "origin_event_id": self.event_id,
            "origin_label": self.label[:200],
        }


@dataclass(frozen=True)
class Rung:
    """One step of a fallback ladder; `timeout` None waits for a failure only."""

    channel: str
    template_key: str
    timeout: dt.timedelta | None = None

    def as_json(self) -> dict[str, Any]:
        seconds = int(self.timeout.total_seconds()) if self.timeout is not None else None
        return {"channel": self.channel, "template_key": self.template_key, "timeout_seconds": seconds}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rung:
        seconds = data.get("timeout_seconds")
        timeout = dt.timedelta(seconds=seconds) if seconds is not None else None
        return cls(channel=data["channel"], template_key=data["template_key"], timeout=timeout)


class SendStatus(models.TextChoices):
    QUEUED = "queued", "Queued for delivery"
    SUPPRESSED = "suppressed", "Suppressed"
    DEFERRED = "deferred", "Deferred"
    FAILED = "failed", "Failed (not rendered)"
    DUPLICATE = "duplicate", "Duplicate idempotency key"


@dataclass(frozen=True)
class SendResult:
    status: str
    messages: list[OutboundMessage]
    reason: str = ""
    until: dt.datetime | None = None


# --- Send guards ---------------------------------------------------------

SendGuard = Callable[..., "policy.Decision | None"]
_send_guards: dict[str, SendGuard] = {}
# Guards that are asked again when a queued message is about to be handed to
# its provider (see `messages_recheck_for_delivery`).
_delivery_guards: set[str] = set()


def register_send_guard(name: str, guard: SendGuard, *, at_delivery: bool = False) -> None:
    """Higher apps (journeys' caps and arbitration, support's case hold) add a
    check after the consent gate: guard(*, contact, channel, message_class,
    origin, now) -> Decision | None. Registering a name again replaces it.

    at_delivery=True asks the guard again just before delivery. Only for
    guards that judge state (a case on hold), not ones that count the outbox
    (caps, arbitration): at delivery the message itself is already a queued
    row, so a counting guard would count it against itself."""
    _send_guards[name] = guard
    if at_delivery:
        _delivery_guards.add(name)
    else:
        _delivery_guards.discard(name)


def defer_until(decision: policy.Decision, now: dt.datetime) -> dt.datetime:
    """When a deferred message is looked at again: the decision's time, or,
    for a deferral that names none, CHANNELS_GUARD_DEFER_MINUTES from now
    (a NULL would never be released)."""
    return decision.until or now + dt.timedelta(minutes=settings.CHANNELS_GUARD_DEFER_MINUTES)


def _decide(
    *, contact: Contact, channel: str, message_class: str, origin: Origin, now: dt.datetime, facts=None,
    at_delivery: bool = False,
) -> policy.Decision:
    """The consent gate, then every guard (at delivery: the guards registered
    for it); the first refusal wins."""
    decision = policy.decide(contact=contact, channel=channel, message_class=message_class, at=now, facts=facts)
    if not decision.allowed:
        return decision
    for name, guard in _send_guards.items():
        if at_delivery and name not in _delivery_guards:
            continue
        verdict = guard(contact=contact, channel=channel, message_class=message_class, origin=origin, now=now)
        if verdict is not None and not verdict.allowed:
            detail = f"guard {name}: {verdict.detail}" if verdict.detail else f"guard {name}"
            return policy.Decision(verdict.outcome, verdict.reason, until=verdict.until, detail=detail)
    return decision


# --- Rendering (templates is below us) -------------------------------------


@dataclass(frozen=True)
class _TemplateProfile:
    channel: str
    message_class: str


def template_profile(template_key: str) -> _TemplateProfile | None:
    row = Template.objects.filter(key=template_key).values("channel", "message_class").first()
    return _TemplateProfile(row["channel"], row["message_class"]) if row else None


def _render(*, template_key: str, contact: Contact, data: dict) -> tuple[Any, str, str]:
    """(rendered, failure_reason, failure_detail): exactly one side is set."""
    try:
        return render_for_send(template_key=template_key, contact=contact, data=data), "", ""
    except RenderError as error:
        return None, error.reason, error.detail


# --- Send -------------------------------------------------------------------


def send(
    *,
    contact: Contact,
    data: dict,
    origin: Origin,
    idempotency_key: str,
    template_key: str | None = None,
    ladder: list[Rung] | None = None,
    now: dt.datetime | None = None,
) -> SendResult:
    """The one way to send. Runs in the caller's transaction: gate, guards,
    render, outbox row(s); delivery is enqueued on commit. A repeated
    idempotency key returns DUPLICATE with the existing message(s)."""
    _check_send_arguments(idempotency_key, template_key, ladder)
    now = now or timezone.now()
    duplicate = _duplicate(idempotency_key)
    if duplicate is not None:
        return duplicate
    try:
        # A savepoint, so a concurrent insert of the same key (unique
        # violation) leaves the caller's transaction usable.
        with transaction.atomic():
            messages = _send_one(_DIRECT, contact, data, origin, idempotency_key, template_key, ladder, now)
    except IntegrityError:
        duplicate = _duplicate(idempotency_key)
        if duplicate is None:
            raise
        return duplicate
    _enqueue_queued(messages)
    return _result(messages)


def _check_send_arguments(idempotency_key: str, template_key: str | None, ladder: list[Rung] | None) -> None:
    if (template_key is None) == (ladder is None):
        raise ValueError("give exactly one of template_key or ladder")
    if not idempotency_key:
        raise ValueError("idempotency_key is required")
    if ladder is not None and not ladder:
        raise ValueError("a ladder needs at least one rung")


def _send_one(
    ctx: _SendContext, contact: Contact, data: dict, origin: Origin, idempotency_key: str,
    template_key: str | None, ladder: list[Rung] | None, now: dt.datetime,
) -> list[OutboundMessage]:
    """Decide, render and write (through ctx) the message(s) of one send."""
    if ladder is not None:
        intent = ctx.intent_create(contact, data, origin, idempotency_key, ladder, now)
        return _ladder_advance_from(intent, 0, now, data=data, contact=contact, ctx=ctx)
    return [_attempt(contact, template_key, data, origin, idempotency_key, now, ctx=ctx)]


def _duplicate(idempotency_key: str) -> SendResult | None:
    intent = SendIntent.objects.filter(idempotency_key=idempotency_key).first()
    if intent is not None:
        messages = list(intent.messages.order_by("rung", "id"))
    else:
        messages = list(OutboundMessage.objects.filter(idempotency_key=idempotency_key))
        if not messages:
            return None
    return SendResult(SendStatus.DUPLICATE, messages, reason="duplicate idempotency key")


def _result(messages: list[OutboundMessage]) -> SendResult:
    """The outcome of a send is the outcome of its last rung tried."""
    last = messages[-1]
    status = {
        MessageStatus.QUEUED: SendStatus.QUEUED,
        MessageStatus.DEFERRED: SendStatus.DEFERRED,
        MessageStatus.SUPPRESSED: SendStatus.SUPPRESSED,
    }.get(last.status, SendStatus.FAILED)
    return SendResult(status, messages, reason=last.decision_reason, until=last.deliver_after)


def _attempt(
    contact: Contact,
    template_key: str,
    data: dict,
    origin: Origin,
    idempotency_key: str,
    now: dt.datetime,
    *,
    channel: str | None = None,
    intent: SendIntent | None = None,
    rung: int | None = None,
    ctx: _SendContext | None = None,
) -> OutboundMessage:
    """Decide, render and write one outbox row, whatever the outcome. `ctx`
    says where the facts come from and when the row is written (at once, or
    with the rest of a SendBatch): the decisions are these, either way."""
    ctx = ctx or _DIRECT
    message = unsaved(
        OutboundMessage,
        template_key=template_key,
        idempotency_key=idempotency_key,
        rung=rung,
        created_at=now,
        status_changed_at=now,
        **origin.as_fields(),
    )
    message.contact = contact
    if intent is not None:
        message.intent = intent  # perhaps unsaved yet (a batch): flush copies its id once it has one
    profile = ctx.profile(template_key)
    if profile is None or (channel and profile.channel != channel):
        message.channel = channel or ""
        message.message_class = profile.message_class if profile else ""
        detail = f"no template {template_key!r}"
        if profile is not None:
            detail = f"{template_key!r} is a {profile.channel} template, not {channel}"
        return ctx.write(message, MessageStatus.RENDER_FAILED, "unknown_template", detail, now)
    message.channel, message.message_class = profile.channel, profile.message_class
    decision = ctx.decide(
        contact=contact, channel=profile.channel, message_class=profile.message_class, origin=origin, now=now
    )
    _apply_decision(message, decision)
    if decision.outcome == policy.Outcome.SUPPRESS:
        return ctx.write(message, MessageStatus.SUPPRESSED, decision.reason, decision.detail, now)
    if decision.outcome == policy.Outcome.DEFER:
        message.deliver_after = defer_until(decision, now)
        message.render_data = data if intent is None else {}
        return ctx.write(message, MessageStatus.DEFERRED, decision.reason, decision.detail, now)
    return _render_and_queue(message, data, now, ctx)


def _apply_decision(message: OutboundMessage, decision: policy.Decision) -> None:
    message.address = decision.address or message.address
    message.consent_record_id = decision.consent_record_id
    message.decision_reason = decision.reason
    message.decision_detail = decision.detail[:500]


def _render_and_queue(message: OutboundMessage, data: dict, now: dt.datetime, ctx: _SendContext) -> OutboundMessage:
    rendered, failure, detail = ctx.render(template_key=message.template_key, contact=message.contact, data=data)
    if rendered is None:
        return ctx.write(message, MessageStatus.RENDER_FAILED, failure, detail, now)
    message.content = rendered.content
    message.locale = rendered.locale
    message.template_version_id = rendered.template_version_id
    message.next_attempt_at = now
    return ctx.write(message, MessageStatus.QUEUED, message.decision_reason, message.decision_detail, now)


def _set_outcome(message: OutboundMessage, status: str, reason: str, detail: str, now: dt.datetime) -> str:
    """Put the outcome on an unsaved message; returns the detail of the
    status event that goes with it (written by the caller, after the message)."""
    message.status = status
    message.decision_reason = reason or ""
    message.decision_detail = (detail or "")[:500]
    message.status_changed_at = now
    return (f"{reason}: {detail}" if detail else reason)[:500]


def _write_outcome(message: OutboundMessage, status: str, reason: str, detail: str, now: dt.datetime):
    event_detail = _set_outcome(message, status, reason, detail, now)
    if message.pk is None:
        message.save()
        DeliveryEvent.objects.create(message=message, kind=DeliveryEvent.Kind.STATUS, status=status,
                                     detail=event_detail, received_at=now)
    return message


# A status move recorded in bulk: the message, from, to, and the event's detail.
StatusMove = tuple[OutboundMessage, str, str, str]

_EVENTS_SQL = """
INSERT INTO {table} (message_id, kind, old_status, status, detail, provider, payload, received_at)
SELECT e.message_id, %s, e.old_status, e.status, e.detail, '', '{{}}'::jsonb, %s FROM ({rows}) AS e
ORDER BY e.position
"""
_EVENT_COLUMNS = (("message_id", "bigint"), ("old_status", "text"), ("status", "text"), ("detail", "text"))


def status_events_insert(moves: list[StatusMove], at: dt.datetime) -> None:
    """One status DeliveryEvent per move, in the moves' order (a message's
    later move gets the later id), in one statement."""
    if not moves:
        return
    outbound_webhooks.message_moves_emit(moves=moves, at=at)
    if connection.vendor != "postgresql":  # the embedded SQLite
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(message=m, kind=DeliveryEvent.Kind.STATUS, old_status=old, status=new, detail=detail[:500],
                          received_at=at)
            for m, old, new, detail in moves
        )
        return
    sql = _EVENTS_SQL.format(table=connection.ops.quote_name(DeliveryEvent._meta.db_table),
                             rows=json_rows(_EVENT_COLUMNS, numbered=True))
    rows = [(m.pk, old, new, detail[:500]) for m, old, new, detail in moves]
    with connection.cursor() as cursor:
        cursor.execute(sql, [DeliveryEvent.Kind.STATUS.value, at, json_param(rows)])


# --- Where a send reads and writes: at once, or as a batch ------------------------------


class _SendContext:
    """One send, on its own: every fact read when it is needed, every row
    written at once (the public `send`, ladders, releases)."""

    def profile(self, template_key: str) -> _TemplateProfile | None:
        return template_profile(template_key)

    def decide(self, *, contact: Contact, channel: str, message_class: str, origin: Origin,
               now: dt.datetime) -> policy.Decision:
        return _decide(contact=contact, channel=channel, message_class=message_class, origin=origin, now=now)

    def render(self, *, template_key: str, contact: Contact, data: dict) -> tuple[Any, str, str]:
        return _render(template_key=template_key, contact=contact, data=data)

    def write(self, message: OutboundMessage, status: str, reason: str, detail: str,
              now: dt.datetime) -> OutboundMessage:
        return _write_outcome(message, status, reason, detail, now)

    def intent_create(self, contact: Contact, data: dict, origin: Origin, idempotency_key: str,
                      ladder: list[Rung], now: dt.datetime) -> SendIntent:
        intent = _intent_new(contact, data, origin, idempotency_key, ladder, now)
        intent.save()
        return intent

    def intent_save(self, intent: SendIntent, fields: list[str]) -> None:
        intent.save(update_fields=fields)


_DIRECT = _SendContext()


def _enqueue_queued(messages: Iterable[OutboundMessage]) -> None:
    ids = [m.pk for m in messages if m.status == MessageStatus.QUEUED]
    if ids:
        enqueue_delivery(ids)


# --- Sending a batch -----------------------------------------------------------------


@dataclass(frozen=True)
class BatchMark:
    """How far a SendBatch had got: `discard_after` forgets what came later."""

    messages: int
    intents: int
    callbacks: int


class SendBatch(_SendContext):
    """Many sends decided one after the other, exactly as `send` decides
    each, and written together. For the journeys tick: the gate reads the
    batch's facts (`policy.load_facts`, loaded once), templates and their live
    versions are loaded once (`prepare`), which idempotency keys already exist
    is asked once, and `flush` writes every intent, outbox row and status event
    in a few multi-row INSERTs and publishes delivery once on commit.

    Caller's duties: run the sends and the flush in one transaction, tell
    the guards' caches what each send decided (journeys does, through
    caps.note_sent, as it does for `send`), call `flush` before anything
    reads the outbox rows back, and on a failed flush roll back to before the
    first send (a unique violation means another writer used a key: the
    sends must be decided again one by one)."""

    def __init__(self, *, contacts: Iterable[Contact], now: dt.datetime, facts: policy.GateFacts | None = None):
        contacts = list(contacts)
        self.now = now
        self.facts = facts if facts is not None else policy.load_facts(contacts, now)
        self._covered = {c.pk for c in contacts}
        self._templates: dict[str, Template | None] = {}
        self._known_absent: set[str] = set()
        self._pending: dict[str, list[OutboundMessage]] = {}
        self.messages: list[tuple[OutboundMessage, str]] = []  # with its status event's detail
        self.intents: list[SendIntent] = []
        self._callbacks: list[Callable[[], None]] = []

    def prepare(self, *, idempotency_keys: Iterable[str], template_keys: Iterable[str]) -> None:
        """Load what the coming sends will ask (a fixed number of queries):
        the templates, and which of these keys are already taken. A key or
        template not named here is looked up when it is sent."""
        keys = set(idempotency_keys)
        if keys:
            taken = set(SendIntent.objects.filter(idempotency_key__any=keys).values_list("idempotency_key", flat=True))
            taken |= set(
                OutboundMessage.objects.filter(idempotency_key__any=keys).values_list("idempotency_key", flat=True)
            )
            self._known_absent |= keys - taken
        self._load_templates(template_keys)

    def _load_templates(self, keys: Iterable[str]) -> None:
        wanted = set(keys) - set(self._templates)
        if wanted:
            found = templates_for_send(wanted)
            self._templates.update({key: found.get(key) for key in wanted})

    def send(
        self, *, contact: Contact, data: dict, origin: Origin, idempotency_key: str, template_key: str | None = None,
        ladder: list[Rung] | None = None,
    ) -> SendResult:
        """Like `send`, at the batch's `now`; the rows are written by `flush`
        (their ids are set then)."""
        _check_send_arguments(idempotency_key, template_key, ladder)
        duplicate = self._duplicate(idempotency_key)
        if duplicate is not None:
            return duplicate
        messages = _send_one(self, contact, data, origin, idempotency_key, template_key, ladder, self.now)
        self._pending[idempotency_key] = messages
        return _result(messages)

    def _duplicate(self, idempotency_key: str) -> SendResult | None:
        if idempotency_key in self._pending:
            return SendResult(SendStatus.DUPLICATE, list(self._pending[idempotency_key]),
                              reason="duplicate idempotency key")
        if idempotency_key in self._known_absent:
            return None
        return _duplicate(idempotency_key)

    # The _SendContext a batch gives `_attempt` and the ladder.

    def profile(self, template_key: str) -> _TemplateProfile | None:
        self._load_templates([template_key])
        template = self._templates[template_key]
        return _TemplateProfile(template.channel, template.message_class) if template is not None else None

    def decide(self, *, contact: Contact, channel: str, message_class: str, origin: Origin,
               now: dt.datetime) -> policy.Decision:
        # The batch's facts hold only its own contacts: any other is read on its own.
        facts = self.facts if contact.pk in self._covered else None
        return _decide(contact=contact, channel=channel, message_class=message_class, origin=origin, now=now,
                       facts=facts)

    def render(self, *, template_key: str, contact: Contact, data: dict) -> tuple[Any, str, str]:
        self._load_templates([template_key])
        try:
            rendered = render_live(template=self._templates[template_key], template_key=template_key,
                                   contact=contact, data=data)
        except RenderError as error:
            return None, error.reason, error.detail
        return rendered, "", ""

    def write(self, message: OutboundMessage, status: str, reason: str, detail: str,
              now: dt.datetime) -> OutboundMessage:
        self.messages.append((message, _set_outcome(message, status, reason, detail, now)))
        return message

    def intent_create(self, contact: Contact, data: dict, origin: Origin, idempotency_key: str,
                      ladder: list[Rung], now: dt.datetime) -> SendIntent:
        intent = _intent_new(contact, data, origin, idempotency_key, ladder, now)
        self.intents.append(intent)
        return intent

    def intent_save(self, intent: SendIntent, fields: list[str]) -> None:
        """Nothing yet: `flush` inserts the intent as it stands then."""

    # Failure isolation and the write.

    def on_flush(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the rows are written (their ids are known)."""
        self._callbacks.append(callback)

    def mark(self) -> BatchMark:
        return BatchMark(len(self.messages), len(self.intents), len(self._callbacks))

    def discard_after(self, mark: BatchMark) -> None:
        """Forget the sends made since `mark` (the caller's step failed):
        nothing of them is written."""
        dropped = {id(message) for message, _detail in self.messages[mark.messages:]}
        dropped |= {id(intent) for intent in self.intents[mark.intents:]}
        del self.messages[mark.messages:]
        del self.intents[mark.intents:]
        del self._callbacks[mark.callbacks:]
        self._pending = {
            key: messages for key, messages in self._pending.items()
            if not any(id(m) in dropped or id(m.intent) in dropped for m in messages)
        }

    def flush(self) -> list[OutboundMessage]:
        """Write the batch: intents, outbox rows and their status events in
        one statement each (the outbox rows by COPY); delivery of the queued
        rows is published once, on commit. Raises IntegrityError if a key was
        taken meanwhile."""
        messages = [message for message, _detail in self.messages]
        if self.intents:
            SendIntent.objects.bulk_create(self.intents)
            for message in messages:
                message.intent_id = message.intent.pk if message.intent is not None else None
        if messages:
            insert_objects(OutboundMessage, messages)
            status_events_insert([(message, "", message.status, detail) for message, detail in self.messages],
                                 self.now)
            _enqueue_queued(messages)
        for callback in self._callbacks:
            callback()
        # Written now: a later send with one of these keys is a duplicate the database will show.
        self._known_absent -= set(self._pending) | {message.idempotency_key for message in messages}
        self.messages, self.intents, self._callbacks, self._pending = [], [], [], {}
        return messages


# --- Enqueueing delivery ------------------------------------------------------


class _DeliveryFlush:
    """One on-commit callback per transaction that publishes every message
    queued in it, in batches: one task per message caps delivery near 750/s."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self) -> None:
        from channels.tasks import deliver_messages

        size = settings.CHANNELS_DELIVERY_BATCH_SIZE
        for start in range(0, len(self.ids), size):
            batch = self.ids[start : start + size]
            try:
                deliver_messages.delay(batch)
            except Exception:
                # The rows are committed; the sweeper re-enqueues them.
                logger.exception("could not publish delivery of %d messages; the sweeper will retry", len(batch))


def enqueue_delivery(ids: list[int], *, countdown: float | None = None) -> None:
    """Publish delivery of these message ids when the current transaction
    commits (at once outside a transaction)."""
    if countdown:
        from channels.tasks import deliver_messages

        transaction.on_commit(lambda: _publish_later(deliver_messages, list(ids), countdown))
        return
    connection = transaction.get_connection()
    if connection.in_atomic_block and connection.run_on_commit:
        sids, func, _robust = connection.run_on_commit[-1]
        # Join the pending flush only if it would be rolled back with us.
        if isinstance(func, _DeliveryFlush) and sids == set(connection.savepoint_ids):
            func.ids.extend(ids)
            return
    flush = _DeliveryFlush()
    flush.ids.extend(ids)
    transaction.on_commit(flush)


def _publish_later(task, ids: list[int], countdown: float) -> None:
    try:
        task.apply_async(args=[ids], countdown=countdown)
    except Exception:
        logger.exception("could not publish a delayed delivery; the sweeper will retry")


# --- Status transitions ------------------------------------------------------

_TIMESTAMP_FOR = {
    MessageStatus.SENDING: "sending_at",
    MessageStatus.SENT: "sent_at",
    MessageStatus.DELIVERED: "delivered_at",
    MessageStatus.FAILED: "failed_at",
    MessageStatus.BOUNCED: "failed_at",
    MessageStatus.UNDELIVERED: "failed_at",
}


def message_transition(
    *,
    message: OutboundMessage,
    to: str,
    now: dt.datetime | None = None,
    detail: str = "",
    strict: bool = True,
    fields: dict[str, Any] | None = None,
) -> bool:
    """Move one message to `to` under a row lock, leaving a DeliveryEvent and
    announcing it on commit. An illegal move raises IllegalTransition, or with
    strict=False is ignored (late or duplicate provider reports) and returns
    False."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = OutboundMessage.objects.select_for_update().get(pk=message.pk)
        old = locked.status
        if to not in TRANSITIONS[old]:
            if strict:
                raise IllegalTransition(locked, to)
            return False
        changes = {"status": to, "status_changed_at": now, **(fields or {})}
        if to in _TIMESTAMP_FOR:
            changes[_TIMESTAMP_FOR[to]] = now
        if to in UNSUCCESSFUL and detail:
            changes.setdefault("error", detail)
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save(update_fields=list(changes))
        DeliveryEvent.objects.create(
            message=locked, kind=DeliveryEvent.Kind.STATUS, status=to, old_status=old, detail=detail[:500],
            received_at=now,
        )
        outbound_webhooks.message_moves_emit(moves=[(locked, old, to, detail)], at=now)
        for name in changes:
            setattr(message, name, getattr(locked, name))
        transaction.on_commit(
            lambda: message_status_changed.send(sender=OutboundMessage, message=locked, old_status=old, new_status=to)
        )
        if locked.intent_id and (to == MessageStatus.DELIVERED or to in UNSUCCESSFUL):
            ladder_on_outcome(message=locked, now=now)
    return True


def messages_cancel(*, queryset_filter: dict, reason: str, now: dt.datetime | None = None) -> int:
    """Cancel messages not yet handed to a provider (queued, deferred) and
    stop the ladders they belong to. Returns how many messages were cancelled."""
    now = now or timezone.now()
    with transaction.atomic():
        waiting = OutboundMessage.objects.filter(**queryset_filter).filter(status__in=CANCELLABLE)
        # Only ladders this cancel actually stops: a matching message already
        # handed over (an SMS sent before a STOP) leaves its ladder running.
        intent_ids = list(
            SendIntent.objects.filter(status=IntentStatus.ACTIVE, messages__in=waiting)
            .distinct().values_list("pk", flat=True)
        )
        SendIntent.objects.filter(pk__in=intent_ids, status=IntentStatus.ACTIVE).update(
            status=IntentStatus.CANCELLED, finished_at=now, next_rung_at=None
        )
        # Every waiting message of a stopped ladder goes, matching or not (a
        # retried earlier rung may still be queued beside the current one).
        targets = OutboundMessage.objects.filter(
            models.Q(pk__in=waiting.values("pk")) | models.Q(intent_id__in=intent_ids), status__in=CANCELLABLE
        ).select_for_update(skip_locked=True).order_by("pk")
        cancelled = 0
        for message in targets:
            if message_transition(message=message, to=MessageStatus.CANCELLED, now=now, detail=reason, strict=False):
                cancelled += 1
    return cancelled


# --- Fallback ladders -----------------------------------------------------------


def _intent_new(
    contact: Contact, data: dict, origin: Origin, idempotency_key: str, ladder: list[Rung], now: dt.datetime
) -> SendIntent:
    return SendIntent(
        contact=contact,
        ladder=[rung.as_json() for rung in ladder],
        data=data,
        idempotency_key=idempotency_key,
        origin_kind=origin.kind,
        origin_label=origin.label[:200],
        origin_payload=asdict(origin),
        created_at=now,
    )


def _rung_key(intent: SendIntent, index: int) -> str:
    return f"{intent.idempotency_key}#rung{index}"


def _ladder_advance_from(
    intent: SendIntent, start: int, now: dt.datetime, *, data: dict | None = None, contact: Contact | None = None,
    ctx: _SendContext | None = None,
) -> list[OutboundMessage]:
    """Try rungs from `start` until one is queued or deferred; each rung
    skipped leaves its message with the reason. Returns the messages written."""
    ctx = ctx or _DIRECT
    origin = Origin(**intent.origin_payload)
    contact = contact or intent.contact
    data = intent.data if data is None else data
    written: list[OutboundMessage] = []
    for index in range(start, len(intent.ladder)):
        rung = Rung.from_json(intent.ladder[index])
        message = _attempt(
            contact, rung.template_key, data, origin, _rung_key(intent, index), now,
            channel=rung.channel, intent=intent, rung=index, ctx=ctx,
        )
        written.append(message)
        if message.status in (MessageStatus.QUEUED, MessageStatus.DEFERRED):
            timeout_from = message.deliver_after or now
            intent.current_rung = index
            intent.next_rung_at = timeout_from + rung.timeout if rung.timeout is not None else None
            ctx.intent_save(intent, ["current_rung", "next_rung_at"])
            return written
    intent.current_rung = len(intent.ladder) - 1
    intent.status = IntentStatus.EXHAUSTED
    intent.next_rung_at = None
    intent.finished_at = now
    ctx.intent_save(intent, ["current_rung", "status", "next_rung_at", "finished_at"])
    return written


def ladder_on_outcome(*, message: OutboundMessage, now: dt.datetime) -> None:
    """Called when a ladder's message is delivered (the intent is done, later
    rungs never start) or failed (the next rung starts now)."""
    if message.status == MessageStatus.DELIVERED:
        # A late report may name an earlier rung after the ladder moved on
        # (or ran out): that rung reached the person, so nothing else goes.
        SendIntent.objects.filter(
            pk=message.intent_id, status__in=(IntentStatus.ACTIVE, IntentStatus.EXHAUSTED)
        ).update(status=IntentStatus.DELIVERED, next_rung_at=None, finished_at=now)
        others = OutboundMessage.objects.filter(intent_id=message.intent_id, status__in=CANCELLABLE).exclude(
            pk=message.pk
        )
        for other in others.order_by("pk"):
            message_transition(message=other, to=MessageStatus.CANCELLED, now=now, strict=False,
                               detail=f"rung {message.rung} (message {message.pk}) was delivered")
        return
    _ladder_step(intent_id=message.intent_id, from_rung=message.rung, now=now, why=f"rung {message.status}")


def _ladder_step(*, intent_id: int, from_rung: int, now: dt.datetime, why: str) -> list[OutboundMessage]:
    """Move an active intent from `from_rung` to the next rung, once: the
    conditional update is the claim, so a duplicate report does nothing."""
    claimed = SendIntent.objects.filter(pk=intent_id, status=IntentStatus.ACTIVE, current_rung=from_rung).update(
        current_rung=from_rung + 1, next_rung_at=None
    )
    if claimed != 1:
        return []
    intent = SendIntent.objects.select_related("contact").get(pk=intent_id)
    previous = intent.messages.filter(rung=from_rung).first()
    if previous is not None:
        DeliveryEvent.objects.create(
            message=previous, kind=DeliveryEvent.Kind.RUNG, status="next_rung", detail=why[:500], received_at=now
        )
    messages = _ladder_advance_from(intent, from_rung + 1, now)
    _enqueue_queued(messages)
    return messages


def ladders_advance_due(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Rungs whose timeout passed without delivery: cancel what has not been
    handed over and start the next rung."""
    now = now or timezone.now()
    advanced = 0
    with transaction.atomic():
        due = list(
            SendIntent.objects.select_for_update(skip_locked=True)
            .filter(status=IntentStatus.ACTIVE, next_rung_at__lte=now)
            .order_by("next_rung_at")
            .values_list("pk", "current_rung")[:limit]
        )
        for intent_id, rung in due:
            for waiting in OutboundMessage.objects.filter(intent_id=intent_id, rung=rung, status__in=CANCELLABLE):
                message_transition(message=waiting, to=MessageStatus.CANCELLED, now=now, detail="rung timed out",
                                   strict=False)
            intent = SendIntent.objects.get(pk=intent_id)
            if intent.status != IntentStatus.ACTIVE or intent.current_rung != rung:
                continue
            _ladder_step(intent_id=intent_id, from_rung=rung, now=now, why="not delivered within the rung timeout")
            advanced += 1
    return advanced


# --- Deferred release -------------------------------------------------------------


def messages_release_deferred(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Deferred messages whose time has come: the gate and guards decide
    again (consent may have changed), then render the live version."""
    now = now or timezone.now()
    released: list[OutboundMessage] = []
    with transaction.atomic():
        due = list(
            OutboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("contact", "intent")
            .filter(status=MessageStatus.DEFERRED, deliver_after__lte=now)
            .order_by("deliver_after")[:limit]
        )
        facts = policy.load_facts([m.contact for m in due], now)
        for message in due:
            released.append(_release_one(message, facts, now))
    return sum(1 for m in released if m.status == MessageStatus.QUEUED)


def _ladder_finished(message: OutboundMessage) -> bool:
    return bool(message.intent_id) and message.intent.status != IntentStatus.ACTIVE


def _cancel_ladder_leftover(message: OutboundMessage, now: dt.datetime) -> None:
    message_transition(message=message, to=MessageStatus.CANCELLED, now=now, strict=False,
                       detail=f"ladder already {message.intent.status}")


def _release_one(message: OutboundMessage, facts: policy.GateFacts, now: dt.datetime) -> OutboundMessage:
    if _ladder_finished(message):
        _cancel_ladder_leftover(message, now)
        return message
    origin = _origin_of(message)
    decision = _decide(
        contact=message.contact, channel=message.channel, message_class=message.message_class, origin=origin,
        now=now, facts=facts,
    )
    if decision.outcome == policy.Outcome.DEFER:
        message_transition(message=message, to=MessageStatus.DEFERRED, now=now, detail=f"{decision.reason} again",
                           fields={"deliver_after": defer_until(decision, now), "decision_reason": decision.reason})
        return message
    if decision.outcome == policy.Outcome.SUPPRESS:
        message_transition(message=message, to=MessageStatus.SUPPRESSED, now=now, detail=decision.reason,
                           fields={"decision_reason": decision.reason, "decision_detail": decision.detail[:500]})
        _ladder_after_skip(message, now)
        return message
    data = message.intent.data if message.intent_id else message.render_data
    if message.content and not message.render_data:
        # Deferred at delivery: rendered once already, and the data it was
        # rendered from is not kept. The same words go out.
        rendered, failure, detail = _Rendered(message.content, message.locale, message.template_version_id), "", ""
    elif message.origin_kind == OriginKind.SYSTEM:
        rendered, failure, detail = _SystemText(data.get("system_text", ""), message.channel), "", ""
    else:
        rendered, failure, detail = _render(template_key=message.template_key, contact=message.contact, data=data)
    if rendered is None:
        message_transition(message=message, to=MessageStatus.RENDER_FAILED, now=now, detail=f"{failure}: {detail}",
                           fields={"decision_reason": failure, "decision_detail": detail[:500]})
        _ladder_after_skip(message, now)
        return message
    message_transition(
        message=message, to=MessageStatus.QUEUED, now=now, detail="released",
        fields={
            "content": rendered.content, "locale": rendered.locale, "template_version_id": rendered.template_version_id,
            "address": decision.address, "consent_record_id": decision.consent_record_id,
            "decision_reason": decision.reason, "next_attempt_at": now, "render_data": {},
        },
    )
    enqueue_delivery([message.pk])
    return message


def messages_recheck_for_delivery(*, messages: list[OutboundMessage], now: dt.datetime) -> list[OutboundMessage]:
    """The gate again, just before queued messages (locked by the caller) are
    handed to their provider: a suppression, unsubscribe or revocation since
    they were queued stops them. Refused rows move to suppressed, deferred
    ones to deferred (until when), leftovers of a finished ladder to
    cancelled, each with its reason; returns the rows still allowed. The
    consent facts of the whole batch are loaded once (a fixed number of
    queries); only guards registered with at_delivery=True are asked."""
    if not messages:
        return []
    facts = policy.load_facts({m.contact_id: m.contact for m in messages}.values(), now)
    allowed = []
    for message in messages:
        if _ladder_finished(message):
            _cancel_ladder_leftover(message, now)
        elif message.origin_kind == OriginKind.SYSTEM:
            # Keyword answers reply to what the person just sent; the STOP
            # confirmation is queued before the revocation it confirms.
            allowed.append(message)
        elif _recheck_one(message, facts, now):
            allowed.append(message)
    return allowed


def _recheck_one(message: OutboundMessage, facts: policy.GateFacts, now: dt.datetime) -> bool:
    decision = _decide(
        contact=message.contact, channel=message.channel, message_class=message.message_class,
        origin=_origin_of(message), now=now, facts=facts, at_delivery=True,
    )
    if decision.allowed:
        return True
    why = {"decision_reason": decision.reason, "decision_detail": decision.detail[:500]}
    if decision.outcome == policy.Outcome.DEFER:
        message_transition(message=message, to=MessageStatus.DEFERRED, now=now,
                           detail=f"at delivery: {decision.reason}", fields={**why, "deliver_after": defer_until(
                               decision, now)})
        return False
    message_transition(message=message, to=MessageStatus.SUPPRESSED, now=now,
                       detail=f"at delivery: {decision.reason}: {decision.detail}".rstrip(": ")[:500], fields=why)
    _ladder_after_skip(message, now)
    return False


@dataclass(frozen=True)
class _Rendered:
    content: dict
    locale: str
    template_version_id: int | None


@dataclass(frozen=True)
class _SystemText:
    """A keyword answer shaped like a rendered template."""

    text: str
    channel: str
    locale: str = ""
    template_version_id: int | None = None

    @property
    def content(self) -> dict[str, str]:
        return {"body": self.text, "template_name": ""} if self.channel == "whatsapp" else {"body": self.text}


def _ladder_after_skip(message: OutboundMessage, now: dt.datetime) -> None:
    if message.intent_id:
        _ladder_step(intent_id=message.intent_id, from_rung=message.rung, now=now, why=f"rung {message.status}")


def _origin_of(message: OutboundMessage) -> Origin:
    return Origin(
        kind=message.origin_kind,
        journey_version_id=message.origin_journey_version_id,
        step_key=message.origin_step_key,
        enrollment_id=message.origin_enrollment_id,
        case_id=message.origin_case_id,
        event_id=message.origin_event_id,
        label=message.origin_label,
    )


__all__ += ["OriginKind"]


# --- Provider reports ---------------------------------------------------------------

ENGAGEMENT_KINDS = {
    DeliveryEvent.Kind.OPENED: "first_opened_at",
    DeliveryEvent.Kind.CLICKED: "first_clicked_at",
    DeliveryEvent.Kind.REPLIED: "replied_at",
}


def message_for_report(*, provider_message_id: str, message_id: int | None = None) -> OutboundMessage | None:
    """The message a provider report is about: by the provider's id, or by
    our id carried in the callback URL when the report beat our own commit
    of the provider id."""
    if provider_message_id:
        found = OutboundMessage.objects.filter(provider_message_id=provider_message_id).first()
        if found is not None:
            return found
    if message_id is not None:
        found = OutboundMessage.objects.filter(pk=message_id).first()
        if found is not None and found.provider_message_id in ("", provider_message_id):
            return found
    return None


def message_report(
    *,
    message: OutboundMessage,
    provider: str,
    reported: str,
    status: str = "",
    engagement: str = "",
    dedupe_key: str,
    payload: dict,
    occurred_at: dt.datetime | None = None,
    detail: str = "",
    now: dt.datetime | None = None,
) -> bool:
    """Record one provider report and apply it. Returns False for a
    duplicate (same dedupe key), which changes nothing. A status that would
    move the message backwards (sent after delivered) is kept as a report but
    does not change the status, so out-of-order reports end on the right one."""
    now = now or timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                DeliveryEvent.objects.create(
                    message=message, kind=DeliveryEvent.Kind.REPORT, status=reported[:32], provider=provider,
                    dedupe_key=dedupe_key[:250], payload=payload, occurred_at=occurred_at, detail=detail[:500],
                    received_at=now,
                )
        except IntegrityError:
            return False
        if status:
            message_transition(message=message, to=status, now=now, detail=f"{provider}: {reported} {detail}".strip(),
                               strict=False)
        if engagement:
            message_engagement_record(message=message, kind=engagement, at=occurred_at or now, now=now)
    return True


def message_engagement_record(*, message: OutboundMessage, kind: str, at: dt.datetime, now: dt.datetime) -> None:
    """Opened, clicked, replied: events after delivery; the first time of each
    is kept on the message."""
    column = ENGAGEMENT_KINDS[kind]
    OutboundMessage.objects.filter(pk=message.pk, **{f"{column}__isnull": True}).update(**{column: at})
    DeliveryEvent.objects.create(message=message, kind=kind, status=kind, received_at=now, occurred_at=at)


# --- System replies (STOP/START/HELP answers) ------------------------------------


def system_reply_send(
    *, contact: Contact, channel: str, text: str, idempotency_key: str, label: str, now: dt.datetime | None = None
) -> OutboundMessage:
    """A keyword answer from settings text. Not a template, but through the
    same gate as everything else (transactional class): no second path."""
    now = now or timezone.now()
    existing = OutboundMessage.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    origin = Origin(kind=OriginKind.SYSTEM, label=label)
    message = OutboundMessage(
        contact=contact, channel=channel, message_class="transactional", idempotency_key=idempotency_key,
        created_at=now, status_changed_at=now, **origin.as_fields(),
    )
    decision = _decide(contact=contact, channel=channel, message_class="transactional", origin=origin, now=now)
    _apply_decision(message, decision)
    if decision.outcome == policy.Outcome.SUPPRESS:
        return _write_outcome(message, MessageStatus.SUPPRESSED, decision.reason, decision.detail, now)
    if decision.outcome == policy.Outcome.DEFER:
        message.deliver_after = defer_until(decision, now)
        message.render_data = {"system_text": text}
        return _write_outcome(message, MessageStatus.DEFERRED, decision.reason, decision.detail, now)
    message.content = _SystemText(text, channel).content
    message.next_attempt_at = now
    _write_outcome(message, MessageStatus.QUEUED, decision.reason, decision.detail, now)
    enqueue_delivery([message.pk])
    return message


# --- Test sends ------------------------------------------------------------------------

TEST_SENDABLE = ("draft", "approved")


SEED_EVIDENCE = {"note": "internal seed list", "setting": "TEMPLATES_INTERNAL_SEED_ADDRESSES"}


def internal_seed_contact(*, address: str, channel: str, actor: Any) -> Contact:
    """The contact standing for an internal seed address (a staff inbox or
    phone from settings), created on first use. A seed contact we created is
    given marketing consent on the channel the first time it is used there
    (the seed list is the staff's say-so), so test sends of marketing
    templates are not always suppressed; they still pass the gate, so a
    revocation or suppression of the seed address still stops them."""
    if address not in settings.TEMPLATES_INTERNAL_SEED_ADDRESSES:
        raise ChannelsError(f"{address!r} is not in TEMPLATES_INTERNAL_SEED_ADDRESSES")
    field = {"email": "email", "whatsapp": "whatsapp_id", "push": ""}.get(channel, "phone")
    if field == "":
        owner = Contact.objects.filter(push_devices__token=address).first()
        if owner is None:
            raise ChannelsError(f"no push device {address!r} is registered to an internal contact")
        return owner
    value = address.lower() if field == "email" else address
    contact = Contact.objects.filter(**{field: value}).first()
    if contact is None:
        digest = hashlib.sha256(value.encode()).hexdigest()[:12]
        try:
            contact, _ = consent_services.contact_upsert(
                external_id=f"internal-seed-{digest}", data={field: value, "attributes": {"internal_seed": True}},
                actor=actor,
            )
        except (ValidationError, consent_services.ConsentError) as error:
            raise ChannelsError(f"seed address {address!r} cannot be used on {channel}: {_error_text(error)}") from None
    if (contact.attributes or {}).get("internal_seed"):
        _seed_marketing_grant(contact, channel, actor)
    return contact


def _error_text(error: Exception) -> str:
    return "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)


def _seed_marketing_grant(contact: Contact, channel: str, actor: Any) -> None:
    """Once per channel: a channel with any marketing record (granted, or
    revoked by a STOP from the seed phone) is left as it is."""
    records = contact.consent_records.filter(channel=channel, purpose=MessageClass.MARKETING)
    if records.exclude(status=ConsentStatus.PENDING).exists():
        return
    record = consent_services.consent_record(
        contact=contact, channel=channel, purpose=MessageClass.MARKETING, status=ConsentStatus.GRANTED,
        source=ConsentSource.ADMIN, actor=actor, evidence=SEED_EVIDENCE,
    )
    if record.status == ConsentStatus.PENDING:
        # A double opt-in channel: the seed list stands for the confirmation.
        consent_services.consent_confirm(pending=record, evidence=SEED_EVIDENCE, actor=actor)


def seed_render_data(contact: Contact, data: dict | None) -> dict:
    """What a test send renders with: the seed contact's own context, with
    the form's data merged over it (its "event" as the event properties)."""
    data = dict(data or {})
    context = render_context(contact, data.pop("event", None))
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(context.get(key), dict):
            context[key] = {**context[key], **value}
        else:
            context[key] = value
    return context


def message_test_send(
    *, version: Any, address: str, data: dict | None, actor: Any, now: dt.datetime | None = None
) -> OutboundMessage:
    """A test send of a draft or approved version to an internal seed address:
    rendered as a preview (marked), through the same gate, flagged is_test."""
    now = now or timezone.now()
    if version.status not in TEST_SENDABLE:
        raise ChannelsError(f"only draft or approved versions can be test-sent; this one is {version.status}")
    template = version.template
    contact = internal_seed_contact(address=address, channel=template.channel, actor=actor)
    origin = Origin(kind=OriginKind.TEST, label=f"test send of {version} by {actor_label(actor)}")
    message = OutboundMessage(
        contact=contact, channel=template.channel, message_class=template.message_class, template_key=template.key,
        template_version=version, idempotency_key=f"test:{uuid.uuid4().hex}", is_test=True, created_at=now,
        status_changed_at=now, **origin.as_fields(),
    )
    with transaction.atomic():
        decision = _decide(contact=contact, channel=template.channel, message_class=template.message_class,
                           origin=origin, now=now)
        _apply_decision(message, decision)
        if not decision.allowed:
            # A test send waits for nobody: a deferral is reported, not kept.
            return _write_outcome(message, MessageStatus.SUPPRESSED, decision.reason, decision.detail, now)
        try:
            rendered = render_version(version=version, contact=contact, data=seed_render_data(contact, data),
                                      preview=True)
        except RenderError as error:
            return _write_outcome(message, MessageStatus.RENDER_FAILED, error.reason, error.detail, now)
        message.content, message.locale, message.next_attempt_at = rendered.content, rendered.locale, now
        _write_outcome(message, MessageStatus.QUEUED, decision.reason, decision.detail, now)
        enqueue_delivery([message.pk])
    return message
