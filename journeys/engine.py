"""The journey engine: event processing (triggers, exits, waits) and the tick
that advances due enrollments.

Both claim their rows with SELECT ... FOR UPDATE SKIP LOCKED in batches and
commit per batch, so any number of ticks and processors run side by side
without coordination and without processing a row twice. Both take `now`, so
`advance_journeys --now` and the Beat tick are the same code path.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, Value, When

from channels import outbound_webhooks
from channels.services import SendBatch
from config.bulk import columns_of, insert_rows, update_rows
from consent import policy
from consent.models import Contact
from journeys import caps
from journeys.definition import (
    END,
    describe_at,
    first_step,
    parse_duration,
    steps_by_key,
    successors,
    template_keys,
    trigger_at,
)
from journeys.models import (
    OPEN_ENROLLMENT,
    Enrollment,
    EnrollmentStatus,
    Event,
    Journey,
    JourneyVersion,
    StepExecution,
    StepOutcome,
)
from journeys.steps import HANDLERS, StepResult, exit_hit

logger = logging.getLogger(__name__)

ENROLLMENT_FIELDS = [
    "status", "current_step", "current_step_type", "step_started_at", "wait_target", "visits", "next_run_at",
    "ended_at", "end_reason", "context", "send_pending", "failures",
]
# Ending an enrollment this way stops its earlier steps' messages still waiting in the outbox.
STOPPING = (EnrollmentStatus.EXITED, EnrollmentStatus.CONVERTED)
STOP_REASON = "journey ended: exit or goal"
# Steps that write nothing to the database: a failure in them needs no savepoint to undo.
PURE_STEPS = {"wait", "wait_until", "wait_for_event", "branch", "split", "exit"}


@dataclass
class Batch:
    """Everything a tick batch reads, loaded once for all its enrollments."""

    now: dt.datetime
    events: dict[int, list[dict]] = field(default_factory=lambda: defaultdict(list))
    outcomes: dict[int, list[dict]] = field(default_factory=lambda: defaultdict(list))
    facts: policy.GateFacts | None = None
    # The batch's sends, decided as they come and written together (None: each send writes at once).
    sends: SendBatch | None = None
    # Step executions to write with the batch, as rows (_execution_row).
    executions: list[tuple] = field(default_factory=list)
    # Enrollments this batch ended as exited or converted: their waiting messages are cancelled.
    stopped: list[int] = field(default_factory=list)
    # The savepoint of the enrollment being run, taken before its first step that writes.
    savepoint: str | None = None

    def events_for(self, contact_id: int, names: set[str], since: dt.datetime) -> list[dict]:
        return [e for e in self.events.get(contact_id, []) if e["name"] in names and e["occurred_at"] >= since]


def _claim(now: dt.datetime, batch_size: int, only_enrollment_ids: list[int] | None) -> list[Enrollment]:
    query = (
        Enrollment.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("contact")
        # Timestamps the tick never reads: Django parses each in Python, a
        # third of the claim's CPU at a thousand rows.
        .defer("created_at", "contact__created_at", "contact__updated_at")
        .filter(status=EnrollmentStatus.ACTIVE, next_run_at__lte=now)
        .order_by("next_run_at")
    )
    if only_enrollment_ids is not None:
        query = query.filter(pk__any=only_enrollment_ids)
    enrollments = list(query[:batch_size])
    # A batch holds a few journeys: load each version (its definition) and journey once, not once per row.
    versions = JourneyVersion.objects.select_related("journey").in_bulk({e.version_id for e in enrollments})
    journeys = {version.journey_id: version.journey for version in versions.values()}
    journeys.update(Journey.objects.in_bulk({e.journey_id for e in enrollments} - set(journeys)))
    for enrollment in enrollments:
        enrollment.version, enrollment.journey = versions[enrollment.version_id], journeys[enrollment.journey_id]
    return enrollments


def advance(
    *, now: dt.datetime, batch_size: int | None = None, only_enrollment_ids: list[int] | None = None
) -> int:
    """Claim one batch of due enrollments, run each until it waits or ends,
    and commit. Returns how many enrollments were advanced (0: nothing due)."""
    batch_size = batch_size or settings.JOURNEYS_BATCH_SIZE
    with transaction.atomic():
        enrollments = _claim(now, batch_size, only_enrollment_ids)
        if not enrollments:
            return 0
        batch = load_batch(enrollments, now)
        run_batch(enrollments, batch)
    return len(enrollments)


def load_batch(enrollments: list[Enrollment], now: dt.datetime) -> Batch:
    """Events, message outcomes and gate facts for the batch: a fixed number
    of queries whatever its size."""
    from channels.models import OutboundMessage

    batch = Batch(now=now)
    contact_ids = {e.contact_id for e in enrollments}
    names: set[str] = set()
    for enrollment in enrollments:
        names |= referenced_events(enrollment.version.definition)
    since = min(e.entered_at for e in enrollments)
    if names:
        rows = (
            Event.objects.filter(
                contact_id__any=contact_ids, name__in=names, occurred_at__gte=since, occurred_at__lte=now
            )
            .order_by("occurred_at", "id")
            .values("id", "contact_id", "name", "occurred_at", "properties")
        )
        for row in rows:
            batch.events[row["contact_id"]].append(row)
    messages = OutboundMessage.objects.filter(origin_enrollment_id__any=[e.pk for e in enrollments]).values(
        "origin_enrollment_id", "origin_step_key", "status", "channel", "delivered_at", "first_opened_at",
        "first_clicked_at", "replied_at",
    )
    for row in messages:
        batch.outcomes[row["origin_enrollment_id"]].append(row)
    contacts = {e.contact_id: e.contact for e in enrollments}
    batch.facts = policy.load_facts(contacts.values(), now)
    batch.sends = SendBatch(contacts=contacts.values(), now=now, facts=batch.facts)
    batch.sends.prepare(idempotency_keys=expected_send_keys(enrollments),
                        template_keys={k for e in enrollments for k in template_keys(e.version.definition)})
    return batch


def expected_send_keys(enrollments: list[Enrollment]) -> set[str]:
    """The idempotency keys the batch's sends will most likely use: the send
    an enrollment rests on, or a send its current step leads to. A send not
    foreseen here still works; its key is looked up when it is sent."""
    keys: set[str] = set()
    for enrollment in enrollments:
        definition = enrollment.version.definition
        steps = steps_by_key(definition)
        current = enrollment.current_step or first_step(definition)
        visits = enrollment.visits if enrollment.current_step else {**enrollment.visits, current: enrollment.visits.get(
            current, 0) + 1}
        step = steps.get(current)
        if step is None:
            continue
        if step["type"] == "send":
            keys.add(f"journey:{enrollment.pk}:{current}:{visits.get(current, 1)}")
        for key in successors(definition, step):
            if steps.get(key, {}).get("type") == "send":
                keys.add(f"journey:{enrollment.pk}:{key}:{visits.get(key, 0) + 1}")
    return keys


def referenced_events(definition: dict) -> set[str]:
    names = set(definition.get("exit_events", [])) | set(definition.get("goal_events", []))
    for step in definition.get("steps", []):
        if step.get("type") == "wait_for_event":
            names.add(step["event"])
        for branch in step.get("branches", []) if step.get("type") == "branch" else []:
            names |= {c["seen"] for c in branch.get("when", []) if "seen" in c}
    return names


def run_batch(enrollments: list[Enrollment], batch: Batch) -> None:
    # Higher-priority journeys go first within a batch (arbitration).
    ordered = sorted(enrollments, key=lambda e: (-e.journey.priority, e.next_run_at, e.pk))
    if batch.sends is None or not run_set_based(ordered, batch):
        run_each(ordered, batch)
    save_enrollments(enrollments)
    outbound_webhooks.enrollments_ended_emit(statuses={e.pk: e.status for e in enrollments}, at=batch.now)
    # A second execution of the same (enrollment, step, visit) violates the
    # unique constraint and rolls the whole batch back: never a double effect.
    insert_rows(StepExecution, columns_of(StepExecution), batch.executions)
    if batch.stopped:
        from channels.services import messages_cancel

        # One cancel for the batch: earlier steps' deferred or queued messages must not go out.
        messages_cancel(queryset_filter={"origin_enrollment_id__in": batch.stopped}, reason=STOP_REASON,
                        now=batch.now)


def run_each(ordered: list[Enrollment], batch: Batch) -> None:
    with caps.tick_cache([e.contact_id for e in ordered], batch.now):
        for enrollment in ordered:
            run_isolated(enrollment, batch)


def run_set_based(ordered: list[Enrollment], batch: Batch) -> bool:
    """Run the batch with its sends decided one by one and written together
    at the end. If that write fails (a key taken by another writer meanwhile,
    a row the database refuses), everything the batch did is rolled back and
    the enrollments are put back as claimed: returns False, and the caller
    runs the batch again with each send written at once, where a failing
    send costs only its own enrollment."""
    savepoint = transaction.savepoint()
    # A bare savepoint does not scope on_commit callbacks: the ones this pass
    # registers (a webhook call, delivery) must go with what it rolls back.
    callbacks = len(connection.run_on_commit)
    try:
        run_each(ordered, batch)
        batch.sends.flush()
    except Exception:
        # Not only database errors: anything the batched write raises would
        # otherwise roll back every tick of this batch; one by one, it parks
        # only the enrollment it belongs to.
        logger.warning("journeys: writing the batch's sends together failed; running them one by one",
                       exc_info=True)
        # A failed write inside Django's atomic blocks marks the whole transaction
        # for rollback; rolling back to our savepoint, taken before it, makes it usable.
        transaction.set_rollback(False)
        transaction.savepoint_rollback(savepoint)
        del connection.run_on_commit[callbacks:]
        _restore_as_claimed(ordered)
        batch.executions.clear()
        batch.stopped.clear()
        batch.sends = None
        return False
    transaction.savepoint_commit(savepoint)
    return True


def _restore_as_claimed(enrollments: list[Enrollment]) -> None:
    """Put the enrollments, and the attributes of their contacts (the one
    contact field a step changes), back as the claim read them. Their rows
    are locked and the batch's savepoint is rolled back, so the database
    holds exactly that; reading it back on this rare path spares every
    batch a copy of its enrollments."""
    rows = {row["pk"]: row for row in Enrollment.objects.filter(pk__any=[e.pk for e in enrollments])
            .values("pk", *ENROLLMENT_FIELDS)}
    attributes = dict(Contact.objects.filter(pk__any=[e.contact_id for e in enrollments])
                      .values_list("pk", "attributes"))
    for enrollment in enrollments:
        _set_fields(enrollment, {name: rows[enrollment.pk][name] for name in ENROLLMENT_FIELDS})
        enrollment.contact.attributes = attributes[enrollment.contact_id]


_field_values = operator.attrgetter(*ENROLLMENT_FIELDS)


def _fields_of(enrollment: Enrollment) -> dict[str, Any]:
    # Only visits and context are mutable (dicts); the rest are immutable values.
    fields = dict(zip(ENROLLMENT_FIELDS, _field_values(enrollment), strict=True))
    fields["visits"], fields["context"] = _shallow_copy(fields["visits"]), _shallow_copy(fields["context"])
    return fields


def _shallow_copy(value: Any) -> Any:
    return value.copy() if isinstance(value, dict | list) else value


def _set_fields(enrollment: Enrollment, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        setattr(enrollment, name, value)


def run_isolated(enrollment: Enrollment, batch: Batch) -> None:
    """Run one enrollment so that a step that raises costs only this
    enrollment: it is parked with a backoff and a FAILED step execution says
    why, while the rest of the batch commits (a batch that always rolls back
    would be reclaimed forever). Steps that write (send, task, webhook,
    update attribute) run inside a savepoint taken just before the first of
    them, which the failure rolls back; steps that only compute need none,
    so a batch of waits costs no extra queries."""
    before = _fields_of(enrollment)
    executions, stopped = len(batch.executions), len(batch.stopped)
    sends = batch.sends.mark() if batch.sends is not None else None
    restore_caps = caps.checkpoint(enrollment.contact_id)
    batch.savepoint = None
    try:
        run_enrollment(enrollment, batch)
    except Exception as error:
        if batch.savepoint is not None:
            transaction.savepoint_rollback(batch.savepoint)
        elif isinstance(error, DatabaseError):
            raise  # the transaction is broken and no savepoint holds it: the batch rolls back
        failing_step = enrollment.current_step
        logger.exception("journeys: enrollment %s failed at step %r", enrollment.pk, failing_step)
        _set_fields(enrollment, before)
        del batch.executions[executions:]
        del batch.stopped[stopped:]
        if sends is not None:
            batch.sends.discard_after(sends)  # its sends were decided but not written: forget them
        restore_caps()
        park(enrollment, failing_step, error, batch)
    else:
        if batch.savepoint is not None:
            transaction.savepoint_commit(batch.savepoint)
        enrollment.failures = 0
    finally:
        batch.savepoint = None


def park(enrollment: Enrollment, failing_step: str, error: Exception, batch: Batch) -> None:
    """Back off (doubling, capped) and record the failure. The failure takes
    the current visit of the step the enrollment rests on, and the retry is a
    new visit, so the (enrollment, step, visit) constraint keeps both."""
    enrollment.failures += 1
    delay = min(settings.JOURNEYS_FAILURE_BACKOFF_SECONDS * 2 ** (enrollment.failures - 1),
                settings.JOURNEYS_FAILURE_BACKOFF_MAX_SECONDS)
    enrollment.next_run_at = batch.now + dt.timedelta(seconds=delay)
    key = enrollment.current_step or failing_step or "(start)"
    visit = enrollment.visits.get(key, 1)
    batch.executions.append(_execution_row(
        enrollment, key, enrollment.current_step_type, visit, StepOutcome.FAILED, reason="error",
        detail={"error": f"{type(error).__name__}: {error}"[:1000], "failing_step": failing_step,
                "failures": enrollment.failures, "retry_at": enrollment.next_run_at.isoformat()},
        next_step="", at=batch.now,
    ))
    enrollment.visits = {**enrollment.visits, key: visit + 1}


# Column casts for the one-statement batch update on PostgreSQL.
_PG_TYPES = {
    "status": "text", "current_step": "text", "current_step_type": "text", "step_started_at": "timestamptz",
    "wait_target": "timestamptz", "visits": "jsonb", "next_run_at": "timestamptz", "ended_at": "timestamptz",
    "end_reason": "text", "context": "jsonb", "send_pending": "boolean", "failures": "smallint",
}


def save_enrollments(enrollments: list[Enrollment]) -> None:
    """Write the batch's enrollments back in one UPDATE (config.bulk): Django's
    bulk_update builds a CASE per row and field, which measured ~90% of a
    tick's time at 500 rows. Only rows still active are written: one a hook
    ended during the tick (same transaction) stays ended."""
    if connection.vendor != "postgresql":
        active = set(Enrollment.objects.filter(pk__in=[e.pk for e in enrollments], status=EnrollmentStatus.ACTIVE)
                     .values_list("pk", flat=True))
        Enrollment.objects.bulk_update([e for e in enrollments if e.pk in active], ENROLLMENT_FIELDS)
        return
    rows = [[e.pk, *(getattr(e, name) for name in ENROLLMENT_FIELDS)] for e in enrollments]
    columns = [(name, _PG_TYPES[name]) for name in ENROLLMENT_FIELDS]
    update_rows(Enrollment, columns, rows, where="t.status = %s", params=[EnrollmentStatus.ACTIVE.value])


def run_enrollment(enrollment: Enrollment, batch: Batch) -> None:
    definition = enrollment.version.definition
    steps = steps_by_key(definition)
    for _ in range(settings.JOURNEYS_MAX_STEPS_PER_RUN):
        hit = exit_hit(enrollment, batch)
        if hit is not None:
            status, reason = hit
            end(enrollment, status, reason, batch.now)
            batch.stopped.append(enrollment.pk)
            return
        if entry_date_missed(enrollment, definition, batch.now):
            at = trigger_at(definition)
            due = enrollment.next_run_at
            record(enrollment, steps[enrollment.current_step], StepResult(
                StepOutcome.PASSED, reason="date_passed",
                detail={"due": due.isoformat(), "late_by_s": int((batch.now - due).total_seconds())},
            ), batch)
            end(enrollment, EnrollmentStatus.EXITED, f"{describe_at(at)} passed while waiting "
                f"(due {due.isoformat()}; journey paused or ticks stopped)", batch.now)
            return
        if not enrollment.current_step:
            move_to(enrollment, first_step(definition), steps, batch.now)
        if enrollment.current_step == END:
            end(enrollment, EnrollmentStatus.COMPLETED, "reached the end", batch.now)
            return
        step = steps[enrollment.current_step]
        if writes(step, batch) and batch.savepoint is None:
            batch.savepoint = transaction.savepoint()
        result = HANDLERS[step["type"]](enrollment, step, batch)
        if result.wait_until is not None:
            enrollment.next_run_at = result.wait_until
            enrollment.send_pending = leads_to_send(definition, step)
            return
        record(enrollment, step, result, batch)
        if result.end_status:
            end(enrollment, result.end_status, result.end_reason, batch.now)
            if result.end_status in STOPPING:
                batch.stopped.append(enrollment.pk)
            return
        move_to(enrollment, result.next_step, steps, batch.now)
    # A long run of instant steps: carry on at the next tick rather than hog this one.
    enrollment.next_run_at = batch.now


def writes(step: dict, batch: Batch) -> bool:
    """Whether the step writes at once (and so needs a savepoint to undo): a
    send of a set-based batch only decides; the batch writes it at the end."""
    if step["type"] == "send":
        return batch.sends is None
    return step["type"] not in PURE_STEPS


def entry_date_missed(enrollment: Enrollment, definition: dict, now: dt.datetime) -> bool:
    """A date-triggered enrollment still resting at its entry (nothing run
    yet) reached more than the trigger's grace after its date: a paused
    journey resumed, or ticks that stopped. Like a passed send window, it is
    skipped rather than sent late."""
    at = trigger_at(definition)
    if at is None or enrollment.step_started_at is not None or enrollment.next_run_at is None:
        return False
    if enrollment.visits != {enrollment.current_step: 1} or enrollment.current_step != first_step(definition):
        return False
    grace = parse_duration(at.get("grace", settings.JOURNEYS_DEFAULT_GRACE))
    return now - enrollment.next_run_at > grace


def leads_to_send(definition: dict, step: dict) -> bool:
    """Whether a waiting step goes on to a send when its time comes: higher-
    priority sends due soon hold lower-priority journeys back (arbitration)."""
    steps = steps_by_key(definition)
    return any(steps.get(key, {}).get("type") == "send" for key in successors(definition, step))


def move_to(enrollment: Enrollment, key: str, steps: dict[str, dict], now: dt.datetime) -> None:
    enrollment.current_step = key
    enrollment.current_step_type = steps[key]["type"] if key in steps else ""
    enrollment.send_pending = enrollment.current_step_type == "send"
    enrollment.step_started_at = None
    enrollment.wait_target = None
    enrollment.next_run_at = now
    if key in steps:
        enrollment.visits = {**enrollment.visits, key: enrollment.visits.get(key, 0) + 1}


def end(enrollment: Enrollment, status: str, reason: str, now: dt.datetime) -> None:
    enrollment.send_pending = False
    enrollment.status = status
    enrollment.end_reason = reason[:200]
    enrollment.ended_at = now
    enrollment.next_run_at = None
    enrollment.current_step_type = ""


def record(enrollment: Enrollment, step: dict, result: StepResult, batch: Batch) -> None:
    visit = enrollment.visits.get(step["key"], 1)
    batch.executions.append(_execution_row(
        enrollment, step["key"], step["type"], visit, result.outcome, reason=result.reason[:64],
        detail=result.detail, next_step=result.next_step or "", at=batch.now,
    ))


def _execution_row(enrollment: Enrollment, step_key: str, step_type: str, visit: int, outcome: str, *,
                   reason: str, detail: dict, next_step: str, at: dt.datetime) -> tuple:
    """A StepExecution as a plain row, its columns in the model's order
    (`columns_of`): a fraction of the cost of a model instance, one per enrollment."""
    return (enrollment.pk, step_key, step_type, visit, f"{enrollment.pk}:{step_key}:{visit}", outcome, reason,
            detail, next_step, at)


# --- Ending enrollments from outside a tick -------------------------------------


def enrollments_end(*, enrollment_ids: list[int], status: str, reason: str, now: dt.datetime) -> list[int]:
    """End open enrollments (conditional update: a row a tick holds is waited
    for, one already ended is left alone) and cancel their messages not yet
    handed to a provider. Returns the ids actually ended."""
    return enrollments_end_many(endings={pk: (status, reason) for pk in enrollment_ids}, now=now, cancel_reason=reason)


def enrollments_end_many(
    *, endings: dict[int, tuple[str, str]], now: dt.datetime, also_cancel: list[int] | tuple = (),
    cancel_reason: str = STOP_REASON,
) -> list[int]:
    """End many open enrollments, each with its own (status, reason), in one
    UPDATE, and cancel the waiting messages of those ended plus `also_cancel`
    (already ended ones) in one messages_cancel. Returns the ids ended."""
    from channels.services import messages_cancel

    ended: list[int] = []
    with transaction.atomic():
        if endings:
            ended = list(
                Enrollment.objects.select_for_update()
                .filter(pk__in=list(endings), status__in=OPEN_ENROLLMENT)
                .values_list("pk", flat=True)
            )
        if ended:
            by_status: dict[str, list[int]] = defaultdict(list)
            by_reason: dict[str, list[int]] = defaultdict(list)
            for pk in ended:
                status, reason = endings[pk]
                by_status[status].append(pk)
                by_reason[reason[:200]].append(pk)
            Enrollment.objects.filter(pk__in=ended).update(
                status=Case(*[When(pk__in=ids, then=Value(status)) for status, ids in by_status.items()]),
                end_reason=Case(*[When(pk__in=ids, then=Value(reason)) for reason, ids in by_reason.items()]),
                ended_at=now, next_run_at=None, current_step_type="", send_pending=False,
            )
            outbound_webhooks.enrollments_ended_emit(statuses={pk: endings[pk][0] for pk in ended}, at=now)
        cancel = sorted({*ended, *also_cancel})
        if cancel:
            messages_cancel(queryset_filter={"origin_enrollment_id__in": cancel}, reason=cancel_reason, now=now)
    return ended
