"""Simulate a journey for one contact and a list of timed events: a dry run
of the real engine inside a transaction that is always rolled back, so the
timeline shows exactly what the engine, the gate, caps and arbitration
would do, and nothing is written (on-commit side effects never fire)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from consent.models import Contact
from journeys.engine import advance
from journeys.events import apply_events
from journeys.models import (
    Enrollment,
    EntryDecision,
    Event,
    Journey,
    JourneyStatus,
    JourneyVersion,
    StepExecution,
    VersionStatus,
)

MAX_ROUNDS = 500


@dataclass(frozen=True)
class SimEvent:
    name: str
    at: dt.datetime
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # event, entry, step, message
    what: str
    channel: str = ""
    outcome: str = ""
    reason: str = ""
    until: dt.datetime | None = None


KIND_ORDER = {"event": 0, "entry": 1, "step": 2, "message": 3}


class _Rollback(Exception):
    pass


def simulate(
    *, journey: Journey, contact: Contact, events: list[SimEvent], horizon: dt.timedelta = dt.timedelta(days=30),
    draft: bool = True,
) -> list[TimelineEntry]:
    """The timeline of what would happen, from the first event to `horizon`
    after the last. `draft` simulates the current draft, else the live version."""
    if not events:
        return []
    events = sorted(events, key=lambda e: e.at)
    timeline: list[TimelineEntry] = []
    try:
        with transaction.atomic():
            _isolate(journey, draft, events[0].at)
            _run(journey, contact, events, events[-1].at + horizon, timeline)
            raise _Rollback
    except _Rollback:
        pass
    # At one instant the story reads in causal order: the event, its entry, the step, its message.
    return sorted(timeline, key=lambda entry: (entry.at, KIND_ORDER[entry.kind]))


def _isolate(journey: Journey, draft: bool, at: dt.datetime) -> None:
    """Inside the doomed transaction: only this journey listens to events."""
    Journey.objects.exclude(pk=journey.pk).filter(status=JourneyStatus.ACTIVE).update(status=JourneyStatus.PAUSED)
    version = journey.live_version
    if draft or version is None:
        number = (journey.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        version = JourneyVersion.objects.create(
            journey=journey, number=number, definition=journey.definition, message_class=journey.message_class,
            status=VersionStatus.APPROVED, created_by="simulation", created_at=at,
        )
    Journey.objects.filter(pk=journey.pk).update(status=JourneyStatus.ACTIVE, live_version=version)


def _run(journey: Journey, contact: Contact, events: list[SimEvent], until: dt.datetime, timeline: list) -> None:
    from channels.models import MessageStatus, OutboundMessage
    from channels.services import message_transition

    pending = list(events)
    now = pending[0].at
    seen_executions: set[int] = set()
    # Enrollments of a date trigger wait at their entry: trigger event id -> when the first step runs.
    first_runs: dict[int | None, dt.datetime] = {}
    for index in range(MAX_ROUNDS):
        due = [e for e in pending if e.at <= now]
        pending = [e for e in pending if e.at > now]
        if due:
            stored = [
                Event.objects.create(name=e.name, contact=contact, properties=e.properties, occurred_at=e.at,
                                     received_at=now, idempotency_key=f"simulation:{index}:{n}", processed_at=now)
                for n, e in enumerate(due)
            ]
            for event in stored:
                timeline.append(TimelineEntry(event.occurred_at, "event", event.name))
            apply_events([Event.objects.select_related("contact").get(pk=e.pk) for e in stored], now)
        ids = list(Enrollment.objects.filter(journey=journey, contact=contact).values_list("pk", flat=True))
        waiting = Enrollment.objects.filter(pk__in=ids, created_at=now, next_run_at__gt=now)
        first_runs.update(waiting.values_list("trigger_event_id", "next_run_at"))
        while ids and advance(now=now, only_enrollment_ids=ids):
            pass
        # The delivery workers hand queued messages over within seconds; without
        # this a later exit would "cancel" what would long have gone out.
        for message in OutboundMessage.objects.filter(origin_enrollment_id__in=ids, status=MessageStatus.QUEUED):
            message_transition(message=message, to=MessageStatus.SENDING, now=now)
            message_transition(message=message, to=MessageStatus.SENT, now=now)
        _collect(ids, seen_executions, timeline)
        upcoming = [e.at for e in pending]
        next_run = (
            Enrollment.objects.filter(pk__in=ids, status="active", next_run_at__isnull=False)
            .order_by("next_run_at").values_list("next_run_at", flat=True).first()
        )
        if next_run is not None:
            upcoming.append(max(next_run, now + dt.timedelta(seconds=1)))
        if not upcoming or min(upcoming) > until:
            break
        now = min(upcoming)
    for decision in EntryDecision.objects.filter(journey=journey, contact=contact).order_by("decided_at"):
        timeline.append(TimelineEntry(decision.decided_at, "entry", f"entry: {decision.outcome}",
                                      outcome=decision.outcome, reason=decision.detail,
                                      until=first_runs.get(decision.event_id) if decision.event_id else None))
    messages = OutboundMessage.objects.filter(origin_enrollment_id__in=ids).order_by("created_at", "id")
    for message in messages:
        timeline.append(TimelineEntry(
            message.created_at, "message", f"{message.template_key} ({message.origin_step_key})",
            channel=message.channel, outcome=message.status, reason=message.decision_reason,
            until=message.deliver_after,
        ))


def _collect(ids: list[int], seen: set[int], timeline: list) -> None:
    for execution in StepExecution.objects.filter(enrollment_id__in=ids).exclude(pk__in=seen):
        seen.add(execution.pk)
        timeline.append(TimelineEntry(execution.executed_at, "step", f"{execution.step_key} ({execution.step_type})",
                                      outcome=execution.outcome, reason=execution.reason))
