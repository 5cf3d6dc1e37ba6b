"""One handler per step type. A handler gets the enrollment, the step (its
definition) and the batch, and answers with a StepResult: go on to a step,
wait until an instant, or end. Handlers change nothing but the enrollment
object and the side effect of their step; the engine saves the enrollment."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from channels.services import Origin, OriginKind, Rung, SendStatus, send
from consent import policy
from consent.models import ConsentStatus, MessageClass
from journeys import caps
from journeys.conditions import all_hold, as_datetime
from journeys.definition import default_next, parse_duration, parse_hhmm
from journeys.models import Enrollment, EnrollmentStatus, StepOutcome, Task, WebhookCall
from templates.services import render_context

if TYPE_CHECKING:
    from journeys.engine import Batch

SYSTEM_ACTOR = "journeys"
FAILED_STATUSES = ("failed", "bounced", "undelivered", "suppressed", "render_failed", "cancelled")
HANDED_STATUSES = ("queued", "sending", "sent", "delivered", "failed", "bounced", "undelivered")
UNSUBSCRIBED_REASONS = ("consent_revoked",)


@dataclass
class StepResult:
    outcome: str = StepOutcome.DONE
    next_step: str = ""
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    wait_until: dt.datetime | None = None
    end_status: str = ""
    end_reason: str = ""


def _next(enrollment: Enrollment, step: dict, key: str | None = None) -> str:
    return key or step.get("next") or default_next(enrollment.version.definition, step["key"])


def exit_hit(enrollment: Enrollment, batch: Batch) -> tuple[str, str] | None:
    """An exit or goal event that happened at or after the entry ends the
    enrollment, even if it is not processed yet (checked before every step).
    An event older than the entry belongs to an earlier life and is ignored."""
    definition = enrollment.version.definition
    goals, exits = set(definition.get("goal_events", [])), set(definition.get("exit_events", []))
    for event in batch.events_for(enrollment.contact_id, goals | exits, enrollment.entered_at):
        named = event["properties"].get("scope_key") if isinstance(event["properties"], dict) else None
        if enrollment.scope_key and named and str(named) != enrollment.scope_key:
            continue  # an event about another case (scope) of the same contact
        if event["name"] in goals:
            return EnrollmentStatus.CONVERTED, f"goal {event['name']} (event {event['id']})"
        return EnrollmentStatus.EXITED, f"exit {event['name']} (event {event['id']})"
    return None


def contact_zone(contact) -> zoneinfo.ZoneInfo:
    return policy.contact_timezone(contact)


# --- send -----------------------------------------------------------------------


def origin_for(enrollment: Enrollment, step: dict):
    version = enrollment.version
    return Origin(
        kind=OriginKind.JOURNEY,
        journey_version_id=version.pk,
        step_key=step["key"],
        enrollment_id=enrollment.pk,
        event_id=enrollment.trigger_event_id,
        label=f"{enrollment.journey.key} v{version.number} · step {step['key']}",
    )


def ladder_for(step: dict) -> list:
    rungs = []
    for rung in step["ladder"]:
        timeout = parse_duration(rung["timeout"]) if rung.get("timeout") is not None else None
        rungs.append(Rung(channel=rung["channel"], template_key=rung["template"], timeout=timeout))
    return rungs


def send_key(enrollment: Enrollment, step_key: str) -> str:
    """The idempotency key of the send of this step at its current visit."""
    return f"journey:{enrollment.pk}:{step_key}:{enrollment.visits.get(step_key, 1)}"


def run_send(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    if enrollment.is_control:
        return StepResult(StepOutcome.HOLDOUT, _next(enrollment, step), reason="holdout")
    kwargs: dict[str, Any] = {"ladder": ladder_for(step)} if step.get("ladder") else {"template_key": step["template"]}
    kwargs.update(
        contact=enrollment.contact,
        data=render_context(enrollment.contact, event_properties=enrollment.context),
        origin=origin_for(enrollment, step),
        idempotency_key=send_key(enrollment, step["key"]),
    )
    # In a tick the batch decides now and writes every send of the batch at its end.
    result = batch.sends.send(**kwargs) if batch.sends is not None else send(now=batch.now, **kwargs)
    # A duplicate's messages were written (and counted) before.
    new_messages = [] if result.status == SendStatus.DUPLICATE else result.messages
    caps.note_sent(enrollment.contact_id, new_messages, enrollment_id=enrollment.pk)
    detail = {
        "messages": [m.pk for m in result.messages],
        "channels": [m.channel for m in result.messages],
        "until": result.until.isoformat() if result.until else None,
    }
    if batch.sends is not None and any(m.pk is None for m in result.messages):
        messages = result.messages
        batch.sends.on_flush(lambda: detail.update(messages=[m.pk for m in messages]))
    outcome = {
        SendStatus.QUEUED: StepOutcome.SENT,
        SendStatus.DEFERRED: StepOutcome.DEFERRED,
        SendStatus.SUPPRESSED: StepOutcome.SUPPRESSED,
        SendStatus.DUPLICATE: StepOutcome.DUPLICATE,
    }.get(result.status, StepOutcome.FAILED)
    step_result = StepResult(outcome, _next(enrollment, step), reason=result.reason, detail=detail)
    if (
        outcome == StepOutcome.SUPPRESSED
        and result.reason in UNSUBSCRIBED_REASONS
        and enrollment.version.message_class == MessageClass.MARKETING
    ):
        step_result.end_status = EnrollmentStatus.EXITED
        step_result.end_reason = f"unsubscribed ({result.reason})"
    return step_result


# --- waits -------------------------------------------------------------------------


def run_wait(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    if enrollment.step_started_at is None:
        enrollment.step_started_at = batch.now
        enrollment.wait_target = batch.now + parse_duration(step["duration"])
    if batch.now < enrollment.wait_target:
        return StepResult(StepOutcome.WAITING, wait_until=enrollment.wait_target)
    return StepResult(StepOutcome.DONE, _next(enrollment, step), detail={"waited_until": _iso(enrollment.wait_target)})


def next_local_time(now: dt.datetime, hhmm: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The first instant after `now` at which the contact's wall clock reads
    HH:MM. In a spring-forward gap the clock never reads it: the instant the
    clock jumps is used. In an autumn fold the first occurrence is used."""
    local = now.astimezone(zone)
    for days in range(3):
        naive = dt.datetime.combine(local.date() + dt.timedelta(days=days), hhmm)
        candidate = naive.replace(tzinfo=zone, fold=0)
        instant = candidate.astimezone(dt.UTC)
        if instant.astimezone(zone).replace(tzinfo=None) != naive:
            # Nonexistent wall time: fold=0 maps past the jump; move back to the jump itself.
            instant = _gap_end(naive, zone)
        if instant > now:
            return instant
    raise AssertionError("a wall-clock time recurs within three days")


def _gap_end(naive: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant a spring-forward jump skips over `naive`."""
    low = naive.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    high = naive.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    low, high = min(low, high), max(low, high)
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def wait_until_target(enrollment: Enrollment, step: dict, now: dt.datetime) -> dt.datetime | None:
    zone = contact_zone(enrollment.contact)
    offset = parse_duration(step["offset"]) if step.get("offset") is not None else dt.timedelta(0)
    if step.get("local_time"):
        return next_local_time(now + offset, parse_hhmm(step["local_time"]), zone)
    path = step["property"].removeprefix("event.")
    value: Any = enrollment.context
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    base = as_datetime(value, zone)
    return base + offset if base is not None else None


def run_wait_until(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    grace = parse_duration(step.get("grace", settings.JOURNEYS_DEFAULT_GRACE))
    if enrollment.step_started_at is None:
        target = wait_until_target(enrollment, step, batch.now)
        if target is None:
            return StepResult(
                StepOutcome.FAILED, _next(enrollment, step, step.get("on_passed")), reason="missing_date",
                detail={"property": step.get("property")},
            )
        enrollment.step_started_at = batch.now
        enrollment.wait_target = target
    target = enrollment.wait_target
    if batch.now < target:
        return StepResult(StepOutcome.WAITING, wait_until=target)
    if batch.now - target > grace:
        if step.get("local_time") and not step.get("on_passed"):
            # A local time of day missed (a pause, an outage): aim at the next one.
            enrollment.wait_target = next_local_time(batch.now, parse_hhmm(step["local_time"]),
                                                     contact_zone(enrollment.contact))
            return StepResult(StepOutcome.WAITING, wait_until=enrollment.wait_target)
        # The moment has passed (booked too late, or resumed after a pause):
        # skip what it was waiting for rather than send it late.
        return StepResult(
            StepOutcome.PASSED, _next(enrollment, step, step.get("on_passed")), reason="window_passed",
            detail={"target": _iso(target), "late_by_seconds": int((batch.now - target).total_seconds())},
        )
    return StepResult(StepOutcome.DONE, _next(enrollment, step), detail={"target": _iso(target)})


def run_wait_for_event(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    if enrollment.step_started_at is None:
        enrollment.step_started_at = batch.now
        enrollment.wait_target = batch.now + parse_duration(step["timeout"])
    conditions = step.get("conditions", [])
    for event in batch.events_for(enrollment.contact_id, {step["event"]}, enrollment.step_started_at):
        if all_hold(conditions, contact=enrollment.contact, event=event["properties"], now=batch.now):
            # Later branches read what came as `event.last_event.<property>`.
            enrollment.context = {**enrollment.context, "last_event": {"name": event["name"], **event["properties"]}}
            return StepResult(
                StepOutcome.BRANCHED, _next(enrollment, step, step.get("on_event")), reason="event_came",
                detail={"event": event["id"]},
            )
    if batch.now >= enrollment.wait_target:
        return StepResult(StepOutcome.BRANCHED, _next(enrollment, step, step.get("on_timeout")), reason="timed_out")
    return StepResult(StepOutcome.WAITING, wait_until=enrollment.wait_target)


# --- decisions ---------------------------------------------------------------------


def branch_condition_holds(condition: dict, enrollment: Enrollment, batch: Batch) -> bool:
    if "seen" in condition:
        return bool(batch.events_for(enrollment.contact_id, {condition["seen"]}, enrollment.entered_at))
    if "message" in condition:
        return message_outcome(enrollment, condition["message"], condition["outcome"], batch)
    if "consent" in condition:
        purpose = condition.get("purpose", enrollment.version.message_class)
        record = batch.facts.latest_consent.get((enrollment.contact_id, condition["consent"], purpose))
        return record is not None and record.status == ConsentStatus.GRANTED
    if "reachable" in condition:
        decision = policy.decide(
            contact=enrollment.contact, channel=condition["reachable"], message_class=enrollment.version.message_class,
            at=batch.now, facts=batch.facts,
        )
        return decision.outcome != policy.Outcome.SUPPRESS
    return all_hold([condition], contact=enrollment.contact, event=enrollment.context, now=batch.now)


def message_outcome(enrollment: Enrollment, step_key: str, outcome: str, batch: Batch) -> bool:
    rows = [m for m in batch.outcomes.get(enrollment.pk, []) if m["origin_step_key"] == step_key]
    checks = {
        "sent": lambda m: m["status"] in HANDED_STATUSES,
        "delivered": lambda m: m["status"] == "delivered" or m["delivered_at"] is not None,
        "opened": lambda m: m["first_opened_at"] is not None,
        "clicked": lambda m: m["first_clicked_at"] is not None,
        "replied": lambda m: m["replied_at"] is not None,
    }
    if outcome == "failed":
        # Failed means no message of the step reached the person.
        return bool(rows) and all(m["status"] in FAILED_STATUSES for m in rows)
    return any(checks[outcome](m) for m in rows)


def run_branch(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    for index, branch in enumerate(step["branches"]):
        if all(branch_condition_holds(c, enrollment, batch) for c in branch.get("when", [])):
            return StepResult(
                StepOutcome.BRANCHED, _next(enrollment, step, branch.get("next")), reason=f"branch {index}",
                detail={"branch": index},
            )
    return StepResult(
        StepOutcome.BRANCHED, _next(enrollment, step, step.get("else")), reason="else", detail={"branch": "else"}
    )


def run_split(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    visit = enrollment.visits.get(step["key"], 1)
    # Seeded by the execution's identity: a retried tick draws the same branch.
    roll = random.Random(f"{enrollment.pk}:{step['key']}:{visit}").uniform(0, 100)
    cumulative = 0.0
    chosen = step["branches"][-1]
    for branch in step["branches"]:
        cumulative += branch["percent"]
        if roll < cumulative:
            chosen = branch
            break
    index = step["branches"].index(chosen)
    return StepResult(
        StepOutcome.BRANCHED, _next(enrollment, step, chosen.get("next")), reason=f"split {index}",
        detail={"branch": index, "roll": round(roll, 3)},
    )


# --- effects ----------------------------------------------------------------------


def run_update_attribute(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    from consent.services import contact_upsert

    contact = enrollment.contact
    attributes = dict(contact.attributes or {})
    if step["value"] is None:
        attributes.pop(step["attribute"], None)
    else:
        attributes[step["attribute"]] = step["value"]
    contact_upsert(
        external_id=contact.external_id, data={"attributes": attributes}, actor=f"journey:{enrollment.journey.key}"
    )
    enrollment.contact.attributes = attributes
    return StepResult(
        StepOutcome.DONE, _next(enrollment, step), detail={"attribute": step["attribute"], "value": step["value"]}
    )


def run_task(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    if enrollment.is_control:
        return StepResult(StepOutcome.HOLDOUT, _next(enrollment, step), reason="holdout")
    due_at = batch.now + parse_duration(step["due_in"]) if step.get("due_in") else None
    task = Task.objects.create(
        journey=enrollment.journey, enrollment=enrollment, contact=enrollment.contact, title=step["title"][:200],
        description=step.get("description", ""), due_at=due_at, created_at=batch.now,
    )
    return StepResult(StepOutcome.DONE, _next(enrollment, step), detail={"task": task.pk, "title": step["title"]})


def run_webhook(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    if enrollment.is_control:
        return StepResult(StepOutcome.HOLDOUT, _next(enrollment, step), reason="holdout")
    payload = {
        "journey": enrollment.journey.key,
        "version": enrollment.version.number,
        "step": step["key"],
        "enrollment": enrollment.pk,
        "contact": {"external_id": enrollment.contact.external_id},
        "event": enrollment.context,
        "data": step.get("payload", {}),
        "at": batch.now.isoformat(),
    }
    # Due a minute from now for the tick: the on-commit publish below is the first try,
    # the tick's re-enqueue the safety net if that publish is lost.
    from journeys.webhooks import REQUEUE_AFTER

    call = WebhookCall.objects.create(enrollment=enrollment, url=step["url"], payload=payload, created_at=batch.now,
                                      next_attempt_at=batch.now + REQUEUE_AFTER)
    from journeys.tasks import deliver_webhook

    # Delivered after commit, carrying the id only; a redelivered task finds it no longer pending.
    transaction.on_commit(lambda: deliver_webhook.delay(call.pk))
    return StepResult(StepOutcome.DONE, _next(enrollment, step), detail={"webhook_call": call.pk, "url": step["url"]})


def run_exit(enrollment: Enrollment, step: dict, batch: Batch) -> StepResult:
    reason = step.get("reason", f"exit step {step['key']}")
    return StepResult(StepOutcome.EXITED, end_status=EnrollmentStatus.COMPLETED, end_reason=reason, reason="exit")


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


HANDLERS: dict[str, Callable[[Enrollment, dict, Batch], StepResult]] = {
    "send": run_send,
    "wait": run_wait,
    "wait_until": run_wait_until,
    "wait_for_event": run_wait_for_event,
    "branch": run_branch,
    "split": run_split,
    "update_attribute": run_update_attribute,
    "task": run_task,
    "webhook": run_webhook,
    "exit": run_exit,
}
