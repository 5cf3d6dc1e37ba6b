"""Events in (idempotent, atomic per batch) and event processing: exits and
goals, waking waits, and triggers that enroll contacts. Processing is
batched and claims events with SKIP LOCKED, so several workers share it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from consent.models import Contact
from consent.policy import contact_timezone
from consent.services import Actor, actor_label, contact_upsert
from journeys.conditions import all_hold, date_target, resolve
from journeys.definition import (
    at_property,
    describe_at,
    first_step,
    parse_duration,
    parse_hhmm,
    steps_by_key,
    trigger_at,
)
from journeys.engine import enrollments_end_many
from journeys.models import (
    OPEN_ENROLLMENT,
    Enrollment,
    EnrollmentStatus,
    EntryDecision,
    EntryOutcome,
    Event,
    Journey,
    JourneyStatus,
)

CONTACT_DATA_FIELDS = ("email", "phone", "whatsapp_id", "timezone", "locale", "lifecycle_stage")
# Messages of enrollments completed this recently can still be stopped by an exit or goal event.
RECENTLY_COMPLETED = dt.timedelta(days=7)
ENDED_WITH_MESSAGES = (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED, EnrollmentStatus.CONVERTED)


@dataclass(frozen=True)
class EventIn:
    """One event as an integration sends it (already validated)."""

    name: str
    external_id: str
    idempotency_key: str
    occurred_at: dt.datetime
    properties: dict[str, Any] = field(default_factory=dict)
    contact_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    event_ids: list[int]


def events_ingest(*, events: list[EventIn], actor: Actor, now: dt.datetime | None = None) -> IngestResult:
    """Store a batch atomically: upsert its contacts, insert its events, skip
    repeated idempotency keys (also when two requests race: the database
    decides), and queue processing on commit."""
    now = now or timezone.now()
    with transaction.atomic():
        contacts = _upsert_contacts(events, actor)
        seen: set[str] = set()
        rows = []
        for event in events:
            if event.idempotency_key in seen:
                continue
            seen.add(event.idempotency_key)
            rows.append((event, contacts[event.external_id]))
        ids = _insert_new(rows, now, actor_label(actor))
        if ids:
            transaction.on_commit(_enqueue_processing)
    return IngestResult(accepted=len(ids), duplicates=len(events) - len(ids), event_ids=ids)


def _enqueue_processing() -> None:
    from journeys.tasks import process_events_task

    process_events_task.delay()


def _upsert_contacts(events: list[EventIn], actor: Actor) -> dict[str, Contact]:
    """One read for the batch; contact_upsert only for contacts that are new
    or whose identifiers or attributes the events change. Attributes merge."""
    wanted: dict[str, dict[str, Any]] = defaultdict(dict)
    for event in events:
        data = wanted[event.external_id]
        for key, value in event.contact_data.items():
            if key == "attributes":
                data["attributes"] = {**data.get("attributes", {}), **value}
            else:
                data[key] = value
    existing = {c.external_id: c for c in Contact.objects.filter(external_id__in=list(wanted))}
    for external_id, data in wanted.items():
        contact = existing.get(external_id)
        if contact is not None and not _changes(contact, data):
            continue
        if contact is not None and "attributes" in data:
            data = {**data, "attributes": {**contact.attributes, **data["attributes"]}}
        existing[external_id], _ = contact_upsert(external_id=external_id, data=data, actor=actor)
    return existing


def _changes(contact: Contact, data: dict[str, Any]) -> bool:
    for key, value in data.items():
        if key == "attributes":
            if any(contact.attributes.get(k, object()) != v for k, v in value.items()):
                return True
        elif getattr(contact, key) != value:
            return True
    return False


def _insert_new(rows: list[tuple[EventIn, Contact]], now: dt.datetime, source: str) -> list[int]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the ids are exactly the
    events this call stored; a key another request holds waits for it and is
    then skipped."""
    if not rows:
        return []
    ops = connection.ops
    table = ops.quote_name(Event._meta.db_table)
    json_cast = "::jsonb" if connection.vendor == "postgresql" else ""
    placeholders = ", ".join([f"(%s, %s, %s{json_cast}, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for event, contact in rows:
        params += [
            event.name, contact.pk, json.dumps(event.properties), ops.adapt_datetimefield_value(event.occurred_at),
            ops.adapt_datetimefield_value(now), event.idempotency_key, source[:150],
        ]
    # The table name is ours and every value is a parameter.
    sql = (
        f"INSERT INTO {table} (name, contact_id, properties, occurred_at, received_at, idempotency_key, source) "  # noqa: S608
        f"VALUES {placeholders} ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


# --- Processing ----------------------------------------------------------------------


def process_events(*, now: dt.datetime, batch_size: int | None = None) -> int:
    """Claim one batch of unprocessed events and apply them. Returns how many
    were processed (0: none left)."""
    batch_size = batch_size or settings.JOURNEYS_EVENT_BATCH_SIZE
    with transaction.atomic():
        events = list(
            # of=self: locking the joined contacts too would deadlock with a tick
            # whose outbox inserts take a key-share lock on the same contact.
            Event.objects.select_for_update(skip_locked=True, of=("self",))
            # An event that has not happened yet as of `now` waits (advance_journeys --now).
            .filter(processed_at__isnull=True, occurred_at__lte=now)
            .select_related("contact")
            .order_by("id")[:batch_size]
        )
        if not events:
            return 0
        events.sort(key=lambda e: (e.occurred_at, e.pk))
        apply_events(events, now)
        Event.objects.filter(pk__in=[e.pk for e in events]).update(processed_at=now)
    return len(events)


def apply_events(events: list[Event], now: dt.datetime) -> None:
    contact_ids = {e.contact_id for e in events}
    open_rows = list(
        Enrollment.objects.filter(contact_id__in=contact_ids, status__in=OPEN_ENROLLMENT).select_related("version")
    )
    ended = _apply_exits(events, open_rows, now)
    _wake_waits(events, [e for e in open_rows if e.pk not in ended], now)
    _apply_triggers(events, now)


def scope_matches(scope_key: str, properties: dict) -> bool:
    """An event naming a `scope_key` (e.g. "case:42") ends only the enrollment
    with that scope; an event naming none, or an unscoped enrollment, as before."""
    named = properties.get("scope_key") if isinstance(properties, dict) else None
    return not scope_key or not named or str(named) == scope_key


def _apply_exits(events: list[Event], open_rows: list[Enrollment], now: dt.datetime) -> set[int]:
    """Exit and goal events end open enrollments that entered at or before
    the event happened; an older event (arriving late) does not. The whole
    batch is one UPDATE and one messages_cancel."""
    by_contact: dict[int, list[Enrollment]] = defaultdict(list)
    for enrollment in open_rows:
        by_contact[enrollment.contact_id].append(enrollment)
    endings: dict[int, tuple[str, str]] = {}
    for event in events:
        for enrollment in by_contact.get(event.contact_id, []):
            definition = enrollment.version.definition
            if enrollment.pk in endings or event.occurred_at < enrollment.entered_at:
                continue
            if not scope_matches(enrollment.scope_key, event.properties):
                continue
            if event.name in definition.get("goal_events", []):
                endings[enrollment.pk] = (EnrollmentStatus.CONVERTED, f"goal {event.name} (event {event.pk})")
            elif event.name in definition.get("exit_events", []):
                endings[enrollment.pk] = (EnrollmentStatus.EXITED, f"exit {event.name} (event {event.pk})")
    # Every enrollment the events apply to has its waiting messages cancelled, also one a tick
    # completed while we waited for its row lock (it was open when read, ended when locked).
    ended = enrollments_end_many(endings=endings, now=now, also_cancel=[*endings, *_ended_with_messages(events, now)])
    return set(ended)


def _ended_with_messages(events: list[Event], now: dt.datetime) -> list[int]:
    """Enrollments that already ended (completed with their last message
    still waiting in the outbox, deferred by quiet hours, say; or exited or
    converted by a tick): an exit or goal event still stops those messages."""
    recent = Enrollment.objects.filter(
        contact_id__in={e.contact_id for e in events}, status__in=ENDED_WITH_MESSAGES,
        ended_at__gte=now - RECENTLY_COMPLETED,
    ).only("pk", "contact_id", "entered_at", "scope_key", "version__definition").select_related("version")
    cancel: list[int] = []
    for enrollment in recent:
        definition = enrollment.version.definition
        ends = set(definition.get("exit_events", [])) | set(definition.get("goal_events", []))
        for event in events:
            if event.contact_id == enrollment.contact_id and event.name in ends \
                    and event.occurred_at >= enrollment.entered_at \
                    and scope_matches(enrollment.scope_key, event.properties):
                cancel.append(enrollment.pk)
                break
    return cancel


def _wake_waits(events: list[Event], open_rows: list[Enrollment], now: dt.datetime) -> None:
    """An enrollment waiting for this event runs at the next tick; the tick
    decides (conditions, timing) from the stored event."""
    names_by_contact: dict[int, set[str]] = defaultdict(set)
    for event in events:
        names_by_contact[event.contact_id].add(event.name)
    wake = []
    for enrollment in open_rows:
        # A wait not started yet (an enrollment waiting at its entry for a date trigger) waits for nothing.
        if enrollment.current_step_type != "wait_for_event" or enrollment.step_started_at is None:
            continue
        step = steps_by_key(enrollment.version.definition).get(enrollment.current_step, {})
        if step.get("event") in names_by_contact.get(enrollment.contact_id, set()):
            wake.append(enrollment.pk)
    if wake:
        Enrollment.objects.filter(pk__in=wake, status=EnrollmentStatus.ACTIVE, next_run_at__gt=now).update(
            next_run_at=now
        )


# --- Entry ---------------------------------------------------------------------------


@dataclass
class Candidate:
    journey: Journey
    contact: Contact
    entered_at: dt.datetime
    event: Event | None = None
    context: dict[str, Any] = field(default_factory=dict)
    # One open enrollment per journey, contact and scope: "case:42" lets a contact's second case have its own.
    scope_key: str = ""
    # A date trigger's instant: the enrollment waits at its entry until then.
    start_at: dt.datetime | None = None


def _apply_triggers(events: list[Event], now: dt.datetime) -> None:
    journeys = Journey.objects.filter(status=JourneyStatus.ACTIVE, live_version__isnull=False).select_related(
        "live_version"
    )
    by_trigger: dict[str, list[Journey]] = defaultdict(list)
    for journey in journeys:
        trigger = journey.live_version.definition.get("trigger") or {}
        if trigger.get("event"):
            by_trigger[trigger["event"]].append(journey)
    candidates, refused = [], []
    for event in events:
        for journey in by_trigger.get(event.name, []):
            conditions = journey.live_version.definition["trigger"].get("conditions", [])
            if all_hold(conditions, contact=event.contact, event=event.properties, now=now):
                candidates.append(Candidate(journey, event.contact, event.occurred_at, event, event.properties))
            else:
                refused.append(_decision(journey, event.contact, event, EntryOutcome.CONDITION_FALSE, "", now))
    EntryDecision.objects.bulk_create(refused)
    enroll(candidates, now)


def enroll(candidates: list[Candidate], now: dt.datetime) -> list[Enrollment]:
    """Enroll whoever the rules let in, set-based: history, exits and open
    enrollments are read in three queries for all candidates. Every
    candidate leaves an EntryDecision saying why it did or did not enter."""
    if not candidates:
        return []
    contact_ids = {c.contact.pk for c in candidates}
    journey_ids = {c.journey.pk for c in candidates}
    history = _history(contact_ids, journey_ids)
    exits = _exit_events(candidates, contact_ids, now)
    to_create, decisions = [], []
    for candidate in candidates:
        outcome, detail = _date_rule(candidate, now)
        if outcome == EntryOutcome.ENTERED:
            outcome, detail = _entry_rule(candidate, history, exits)
        if outcome != EntryOutcome.ENTERED:
            decisions.append(_decision(candidate.journey, candidate.contact, candidate.event, outcome, detail, now))
            continue
        history[(candidate.journey.pk, candidate.contact.pk, candidate.scope_key)].append(
            {"status": EnrollmentStatus.ACTIVE, "entered_at": candidate.entered_at}
        )
        to_create.append(_new_enrollment(candidate, now))
    # A concurrent processor may have enrolled the same contact meanwhile:
    # the partial unique constraint decides, and the loser is recorded.
    Enrollment.objects.bulk_create(to_create, ignore_conflicts=True)
    created = _created(to_create)
    for enrollment in to_create:
        key = (enrollment.journey_id, enrollment.contact_id, enrollment.scope_key, enrollment.trigger_event_id)
        outcome = EntryOutcome.ENTERED if key in created else EntryOutcome.ALREADY_ENROLLED
        detail = _entered_detail(enrollment, now) if key in created else ""
        decisions.append(
            _decision(enrollment.journey, enrollment.contact, enrollment.trigger_event, outcome, detail, now)
        )
    EntryDecision.objects.bulk_create(decisions)
    return list(created.values())


def _history(contact_ids: set[int], journey_ids: set[int]) -> dict[tuple[int, int, str], list[dict]]:
    """Past enrollments per (journey, contact, scope): re-entry rules apply within a scope."""
    history: dict[tuple[int, int, str], list[dict]] = defaultdict(list)
    rows = Enrollment.objects.filter(contact_id__in=contact_ids, journey_id__in=journey_ids).values(
        "journey_id", "contact_id", "scope_key", "status", "entered_at"
    )
    for row in rows:
        history[(row["journey_id"], row["contact_id"], row["scope_key"])].append(row)
    return history


def _exit_events(
    candidates: list[Candidate], contact_ids: set[int], now: dt.datetime
) -> dict[int, list[tuple[str, dt.datetime]]]:
    names: set[str] = set()
    for candidate in candidates:
        definition = candidate.journey.live_version.definition
        names |= set(definition.get("exit_events", [])) | set(definition.get("goal_events", []))
    exits: dict[int, list[tuple[str, dt.datetime]]] = defaultdict(list)
    if names:
        rows = Event.objects.filter(contact_id__in=contact_ids, name__in=names, occurred_at__lte=now)
        for row in rows.values(
            "contact_id", "name", "occurred_at"
        ):
            exits[row["contact_id"]].append((row["name"], row["occurred_at"]))
    return exits


def _date_rule(candidate: Candidate, now: dt.datetime) -> tuple[str, str]:
    """A date trigger: the first step runs at the event's date property plus
    the offset (read in the contact's zone). A date missing, unreadable or
    already passed when the event is processed keeps the contact out: a
    reminder is never sent late."""
    at = trigger_at(candidate.journey.live_version.definition)
    if at is None:
        return EntryOutcome.ENTERED, ""
    value = resolve(f"event.{at_property(at)}", contact=candidate.contact, event=candidate.context)
    target = date_target(
        value, offset=parse_duration(at.get("offset") or 0), zone=contact_timezone(candidate.contact),
        local_time=parse_hhmm(at["local_time"]) if at.get("local_time") else None,
    )
    if target is None:
        return EntryOutcome.CONDITION_FALSE, f"{describe_at(at)}: {at_property(at)} is missing or not a date"
    if target < now:
        return EntryOutcome.CONDITION_FALSE, f"{describe_at(at)} already passed ({target.isoformat()})"
    candidate.start_at = target
    return EntryOutcome.ENTERED, ""


def _entered_detail(enrollment: Enrollment, now: dt.datetime) -> str:
    parts = ["control group (holdout)"] if enrollment.is_control else []
    at = trigger_at(enrollment.version.definition)
    if at is not None and enrollment.next_run_at is not None:
        parts.append(f"first step at {enrollment.next_run_at.isoformat()} ({describe_at(at)})")
    return "; ".join(parts)


def _entry_rule(candidate: Candidate, history: dict, exits: dict) -> tuple[str, str]:
    definition = candidate.journey.live_version.definition
    past = history.get((candidate.journey.pk, candidate.contact.pk, candidate.scope_key), [])
    if any(row["status"] in OPEN_ENROLLMENT for row in past):
        return EntryOutcome.ALREADY_ENROLLED, "an enrollment in this journey is still open"
    reentry = definition.get("reentry", "once")
    if past and reentry == "once":
        return EntryOutcome.REENTRY_RULE, "re-entry: once ever, and this contact was enrolled before"
    if past and isinstance(reentry, dict):
        cooldown = parse_duration(reentry["cooldown"])
        last = max(row["entered_at"] for row in past)
        if candidate.entered_at < last + cooldown:
            return EntryOutcome.REENTRY_RULE, f"re-entry cooldown {reentry['cooldown']} since {last.isoformat()}"
    if candidate.event is not None:
        ends = set(definition.get("exit_events", [])) | set(definition.get("goal_events", []))
        for name, occurred_at in exits.get(candidate.contact.pk, []):
            if name in ends and occurred_at >= candidate.entered_at:
                return EntryOutcome.EXITED_BEFORE_ENTRY, f"{name} at {occurred_at.isoformat()} already ended it"
    return EntryOutcome.ENTERED, ""


def in_holdout(journey_key: str, external_id: str, percent: float) -> bool:
    """Deterministic: the same contact is always in or out of a journey's
    control group, whichever worker asks."""
    if not percent:
        return False
    digest = hashlib.sha256(f"{journey_key}:{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def _new_enrollment(candidate: Candidate, now: dt.datetime) -> Enrollment:
    version = candidate.journey.live_version
    definition = version.definition
    start = first_step(definition)
    return Enrollment(
        journey=candidate.journey,
        version=version,
        contact=candidate.contact,
        status=EnrollmentStatus.ACTIVE,
        is_control=in_holdout(candidate.journey.key, candidate.contact.external_id,
                              definition.get("holdout_percent", 0)),
        trigger_event=candidate.event,
        context=candidate.context,
        scope_key=candidate.scope_key[:100],
        current_step=start,
        current_step_type=steps_by_key(definition)[start]["type"],
        send_pending=steps_by_key(definition)[start]["type"] == "send",
        visits={start: 1},
        next_run_at=candidate.start_at or now,
        entered_at=candidate.entered_at,
        created_at=now,
    )


def _created(attempted: list[Enrollment]) -> dict[tuple[int, int, str, int | None], Enrollment]:
    """Which of the attempted enrollments exist now (ignore_conflicts gives no ids)."""
    if not attempted:
        return {}
    rows = Enrollment.objects.filter(
        journey_id__in={e.journey_id for e in attempted},
        contact_id__in={e.contact_id for e in attempted},
        created_at=attempted[0].created_at,
        status=EnrollmentStatus.ACTIVE,
    ).select_related("journey", "contact", "version")
    return {(e.journey_id, e.contact_id, e.scope_key, e.trigger_event_id): e for e in rows}


def _decision(journey: Journey, contact: Contact, event: Event | None, outcome: str, detail: str, now) -> EntryDecision:
    return EntryDecision(
        journey=journey, version=journey.live_version, contact=contact, event=event, outcome=outcome,
        detail=detail[:500], decided_at=now,
    )
