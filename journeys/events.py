"""Events in (idempotent, atomic per batch) and event processing: exits and
goals, waking waits, and triggers that enroll contacts. Processing is
batched and claims events with SKIP LOCKED, so several workers share it."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.bulk import insert_rows
from consent.models import Contact
from consent.policy import contact_timezone
from consent.services import Actor, actor_label, contact_upsert
from journeys.conditions import all_hold, date_target, resolve
from journeys.definition import (
    END,
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
        contact_ids = _upsert_contacts(events, actor)
        seen: set[str] = set()
        rows = []
        source = actor_label(actor)[:150]
        for event in events:
            if event.idempotency_key in seen:
                continue
            seen.add(event.idempotency_key)
            rows.append((event.name, contact_ids[event.external_id], event.properties,
                         event.occurred_at, now, event.idempotency_key, source))
        # The ids returned are exactly the events this call stored; a key another
        # request holds waits for it and is then skipped.
        ids = [row[0] for row in insert_rows(Event, EVENT_COLUMNS, rows, on_conflict="(idempotency_key)",
                                             returning=("id",))]
        if ids:
            transaction.on_commit(_enqueue_processing)
    return IngestResult(accepted=len(ids), duplicates=len(events) - len(ids), event_ids=ids)


def _enqueue_processing() -> None:
    from journeys.tasks import process_events_task

    process_events_task.delay()


def _upsert_contacts(events: list[EventIn], actor: Actor) -> dict[str, int]:
    """External id -> contact id, in one read for the batch; contact_upsert
    only for contacts that are new or whose identifiers or attributes the
    events change. Attributes merge."""
    wanted: dict[str, dict[str, Any]] = defaultdict(dict)
    for event in events:
        data = wanted[event.external_id]
        for key, value in event.contact_data.items():
            if key == "attributes":
                data["attributes"] = {**data.get("attributes", {}), **value}
            else:
                data[key] = value
    contacts = Contact.objects.filter(external_id__any=list(wanted))
    if any(wanted.values()):
        existing = {c.external_id: c for c in contacts}
        ids = {external_id: c.pk for external_id, c in existing.items()}
    else:
        # Most events name a contact the CRM already synced and change nothing: its id is all they need.
        existing, ids = {}, dict(contacts.values_list("external_id", "pk"))
    for external_id, data in wanted.items():
        contact = existing.get(external_id)
        if external_id in ids and (contact is None or not _changes(contact, data)):
            continue
        if contact is not None and "attributes" in data:
            data = {**data, "attributes": {**contact.attributes, **data["attributes"]}}
        contact, _ = contact_upsert(external_id=external_id, data=data, actor=actor)
        ids[external_id] = contact.pk
    return ids


def _changes(contact: Contact, data: dict[str, Any]) -> bool:
    for key, value in data.items():
        if key == "attributes":
            if any(contact.attributes.get(k, object()) != v for k, v in value.items()):
                return True
        elif getattr(contact, key) != value:
            return True
    return False


# --- Set-based writes ------------------------------------------------------------------

# (column, PostgreSQL type) per table, in insert order.
EVENT_COLUMNS = (
    ("name", "text"), ("contact_id", "bigint"), ("properties", "jsonb"), ("occurred_at", "timestamptz"),
    ("received_at", "timestamptz"), ("idempotency_key", "text"), ("source", "text"),
)
ENROLLMENT_COLUMNS = (
    ("journey_id", "bigint"), ("version_id", "bigint"), ("contact_id", "bigint"), ("scope_key", "text"),
    ("trigger_event_id", "bigint"), ("status", "text"), ("is_control", "boolean"), ("context", "jsonb"),
    ("current_step", "text"), ("current_step_type", "text"), ("send_pending", "boolean"), ("visits", "jsonb"),
    ("failures", "smallint"), ("next_run_at", "timestamptz"), ("entered_at", "timestamptz"),
    ("ended_at", "timestamptz"), ("end_reason", "text"), ("created_at", "timestamptz"),
)
DECISION_COLUMNS = (
    ("journey_id", "bigint"), ("version_id", "bigint"), ("contact_id", "bigint"), ("event_id", "bigint"),
    ("outcome", "text"), ("detail", "text"), ("decided_at", "timestamptz"),
)


# --- Processing ----------------------------------------------------------------------


def process_events(*, now: dt.datetime, batch_size: int | None = None) -> int:
    """Claim one batch of unprocessed events and apply them. Returns how many
    were processed (0: none left)."""
    batch_size = batch_size or settings.JOURNEYS_EVENT_BATCH_SIZE
    with transaction.atomic():
        # The claim locks events only (locking their contacts too would deadlock with a tick whose outbox
        # inserts take a key-share lock on the same contact) and selects ids alone: the events table grows
        # faster than autovacuum re-analyzes it, and with stale statistics PostgreSQL sorted the whole
        # backlog joined to its contacts (70 ms per claim behind 50,000 events). The events and their
        # contacts are then read by the ids in hand: joined to the claim in one query, they were found by a
        # hash join over the whole events (or contacts) table, whatever the batch's size.
        claimed = list(
            Event.objects.select_for_update(skip_locked=True)
            # An event that has not happened yet as of `now` waits (advance_journeys --now).
            .filter(processed_at__isnull=True, occurred_at__lte=now)
            .order_by("id").values_list("id", flat=True)[:batch_size]
        )
        if not claimed:
            return 0
        # Not prefetch_related: with its `__in`, the worker spent 0.03 ms of CPU an event more (measured).
        events = list(Event.objects.filter(pk__any=claimed).order_by("id"))
        contacts = {c.pk: c for c in Contact.objects.filter(pk__any=list({e.contact_id for e in events}))}
        for event in events:
            event.contact = contacts[event.contact_id]
        apply_events(events, now)
        Event.objects.filter(pk__any=claimed).update(processed_at=now)
    return len(claimed)


def apply_events(events: list[Event], now: dt.datetime) -> None:
    """Apply a batch as if each event had been processed alone, the moment it
    arrived (in id order): an exit ends the enrollments open at that point,
    also one a trigger earlier in the batch opened, and an entry sees the
    exits that arrived before it. So one request of 1,000 events and 1,000
    requests of one decide the same. Reads are a fixed number of queries,
    writes one statement per table."""
    events = sorted(events, key=lambda e: e.pk)
    listeners = _journeys_by_trigger()
    open_rows, recently_ended = _enrollments_of(events, now)
    triggered = [e for e in events if e.name in listeners]
    journeys = {journey.pk: journey for e in triggered for journey in listeners[e.name]}
    ledger = Ledger.load(contact_ids={e.contact_id for e in triggered}, journeys=list(journeys.values()),
                         open_rows=open_rows, now=now)
    for event in events:
        ledger.apply_exits(event)
        for journey in listeners.get(event.name, []):
            conditions = journey.live_version.definition["trigger"].get("conditions", [])
            if all_hold(conditions, contact=event.contact, event=event.properties, now=now):
                ledger.admit(Candidate(journey, event.contact, event.occurred_at, event, event.properties))
            else:
                ledger.record(journey, event.contact_id, event.pk, EntryOutcome.CONDITION_FALSE, "")
    ended = ledger.end_existing(also_cancel=_ended_with_messages(events, recently_ended))
    _wake_waits(events, [e for e in open_rows if e.pk not in ended], now)
    ledger.write()


def _journeys_by_trigger() -> dict[str, list[Journey]]:
    journeys = Journey.objects.filter(status=JourneyStatus.ACTIVE, live_version__isnull=False).select_related(
        "live_version"
    )
    listeners: dict[str, list[Journey]] = defaultdict(list)
    for journey in journeys:
        trigger = journey.live_version.definition.get("trigger") or {}
        if trigger.get("event"):
            listeners[trigger["event"]].append(journey)
    return listeners


def scope_matches(scope_key: str, properties: dict) -> bool:
    """An event naming a `scope_key` (e.g. "case:42") ends only the enrollment
    with that scope; an event naming none, or an unscoped enrollment, as before."""
    named = properties.get("scope_key") if isinstance(properties, dict) else None
    return not scope_key or not named or str(named) == scope_key


def ending_for(definition: dict, event: Event) -> tuple[str, str] | None:
    """(status, reason) if this event is a goal or an exit of the definition."""
    if event.name in definition.get("goal_events", []):
        return EnrollmentStatus.CONVERTED, f"goal {event.name} (event {event.pk})"
    if event.name in definition.get("exit_events", []):
        return EnrollmentStatus.EXITED, f"exit {event.name} (event {event.pk})"
    return None


def _enrollments_of(events: list[Event], now: dt.datetime) -> tuple[list[Enrollment], list[Enrollment]]:
    """The batch's contacts' open enrollments, and those that ended recently
    (their messages may still wait in the outbox): one query."""
    rows = Enrollment.objects.filter(
        Q(status__in=OPEN_ENROLLMENT) | Q(status__in=ENDED_WITH_MESSAGES, ended_at__gte=now - RECENTLY_COMPLETED),
        contact_id__any={e.contact_id for e in events},
    ).select_related("version")
    open_rows, ended = [], []
    for enrollment in rows:
        (open_rows if enrollment.status in OPEN_ENROLLMENT else ended).append(enrollment)
    return open_rows, ended


def _ended_with_messages(events: list[Event], recent: list[Enrollment]) -> list[int]:
    """Enrollments that already ended (completed with their last message
    still waiting in the outbox, deferred by quiet hours, say; or exited or
    converted by a tick): an exit or goal event still stops those messages."""
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
        Enrollment.objects.filter(pk__any=wake, status=EnrollmentStatus.ACTIVE, next_run_at__gt=now).update(
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
    # Ended by an exit or goal later in the same batch: stored ended, as if it had been processed alone.
    end_status: str = ""
    end_reason: str = ""


@dataclass
class Ledger:
    """What a batch knows about enrollments, kept up to date event by event:
    past enrollments per (journey, contact, scope) (re-entry rules apply
    within a scope), the exit and goal events stored, the open enrollments,
    and what the batch decided. Nothing is written until `write()`."""

    now: dt.datetime
    history: dict[tuple[int, int, str], list[dict]] = field(default_factory=lambda: defaultdict(list))
    exits: dict[int, list[tuple[str, dt.datetime, int]]] = field(default_factory=lambda: defaultdict(list))
    open_by_contact: dict[int, list[Enrollment]] = field(default_factory=lambda: defaultdict(list))
    admitted: list[Candidate] = field(default_factory=list)
    admitted_by_contact: dict[int, list[Candidate]] = field(default_factory=lambda: defaultdict(list))
    decisions: list[tuple] = field(default_factory=list)
    endings: dict[int, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, *, contact_ids: set[int], journeys: list[Journey], now: dt.datetime,
             open_rows: list[Enrollment] = ()) -> Ledger:
        ledger = cls(now=now)
        for enrollment in open_rows:
            ledger.open_by_contact[enrollment.contact_id].append(enrollment)
        if not contact_ids or not journeys:
            return ledger
        rows = Enrollment.objects.filter(contact_id__any=contact_ids, journey_id__any={j.pk for j in journeys}).values(
            "id", "journey_id", "contact_id", "scope_key", "status", "entered_at"
        )
        for row in rows:
            ledger.history[(row["journey_id"], row["contact_id"], row["scope_key"])].append(row)
        names: set[str] = set()
        for journey in journeys:
            definition = journey.live_version.definition
            names |= set(definition.get("exit_events", [])) | set(definition.get("goal_events", []))
        if names:
            stored = Event.objects.filter(contact_id__any=contact_ids, name__in=names, occurred_at__lte=now)
            for contact_id, name, occurred_at, pk in stored.values_list("contact_id", "name", "occurred_at", "id"):
                ledger.exits[contact_id].append((name, occurred_at, pk))
        return ledger

    def apply_exits(self, event: Event) -> None:
        """An exit or goal ends what is open at this point and entered at or
        before it happened; an older one (arriving late) does not."""
        for enrollment in self.open_by_contact.get(event.contact_id, []):
            if enrollment.pk in self.endings or event.occurred_at < enrollment.entered_at \
                    or not scope_matches(enrollment.scope_key, event.properties):
                continue
            ending = ending_for(enrollment.version.definition, event)
            if ending is not None:
                self.endings[enrollment.pk] = ending
                self._set_status(enrollment.journey_id, enrollment.contact_id, enrollment.scope_key, ending[0],
                                 pk=enrollment.pk)
        for candidate in self.admitted_by_contact.get(event.contact_id, []):
            if candidate.end_status or event.occurred_at < candidate.entered_at \
                    or not scope_matches(candidate.scope_key, event.properties):
                continue
            ending = ending_for(candidate.journey.live_version.definition, event)
            if ending is not None:
                candidate.end_status, candidate.end_reason = ending
                self._set_status(candidate.journey.pk, candidate.contact.pk, candidate.scope_key, ending[0],
                                 candidate=candidate)

    def _set_status(self, journey_id: int, contact_id: int, scope_key: str, status: str, *, pk: int | None = None,
                    candidate: Candidate | None = None) -> None:
        for row in self.history.get((journey_id, contact_id, scope_key), []):
            if (pk is not None and row.get("id") == pk) or (candidate is not None
                                                             and row.get("candidate") is candidate):
                row["status"] = status

    def admit(self, candidate: Candidate) -> bool:
        """Decide one candidate by the date, re-entry and exit rules; the
        refused ones are recorded with why."""
        outcome, detail = _date_rule(candidate, self.now)
        if outcome == EntryOutcome.ENTERED:
            outcome, detail = _entry_rule(candidate, self.history, self.exits)
        if outcome != EntryOutcome.ENTERED:
            self.record(candidate.journey, candidate.contact.pk, candidate.event.pk if candidate.event else None,
                        outcome, detail)
            return False
        self.history[(candidate.journey.pk, candidate.contact.pk, candidate.scope_key)].append(
            {"status": EnrollmentStatus.ACTIVE, "entered_at": candidate.entered_at, "candidate": candidate}
        )
        self.admitted.append(candidate)
        self.admitted_by_contact[candidate.contact.pk].append(candidate)
        return True

    def record(self, journey: Journey, contact_id: int, event_id: int | None, outcome: str, detail: str) -> None:
        self.decisions.append(
            (journey.pk, journey.live_version_id, contact_id, event_id, outcome, detail[:500], self.now)
        )

    def end_existing(self, *, also_cancel: list[int]) -> set[int]:
        """End the stored enrollments the batch's exits and goals reached (one
        UPDATE) and cancel their waiting messages, and those of `also_cancel`."""
        if not self.endings and not also_cancel:
            return set()
        return set(enrollments_end_many(endings=self.endings, now=self.now, also_cancel=[*self.endings, *also_cancel]))

    def write(self) -> dict[tuple[int, int, str, int | None], int]:
        """Insert the admitted enrollments and every decision: one statement
        each. A concurrent processor may have enrolled the same contact
        meanwhile: the partial unique constraint decides, and the loser is
        recorded as already enrolled. Returns the ids of those stored."""
        rows = [_enrollment_row(candidate, self.now) for candidate in self.admitted]
        stored = {
            (journey_id, contact_id, scope_key, event_id): pk
            for pk, journey_id, contact_id, scope_key, event_id in insert_rows(
                Enrollment, ENROLLMENT_COLUMNS, rows, on_conflict="",  # the partial one-open-enrollment index
                returning=("id", "journey_id", "contact_id", "scope_key", "trigger_event_id"),
            )
        }
        for candidate, row in zip(self.admitted, rows, strict=True):
            if _key(candidate) in stored:
                self.record(candidate.journey, candidate.contact.pk, row[4], EntryOutcome.ENTERED,
                            _entered_detail(candidate, row))
            else:
                self.record(candidate.journey, candidate.contact.pk, row[4], EntryOutcome.ALREADY_ENROLLED,
                            "another processor enrolled them at the same moment")
        insert_rows(EntryDecision, DECISION_COLUMNS, self.decisions)
        return stored


def _key(candidate: Candidate) -> tuple[int, int, str, int | None]:
    return (candidate.journey.pk, candidate.contact.pk, candidate.scope_key[:100],
            candidate.event.pk if candidate.event else None)


def enroll(candidates: list[Candidate], now: dt.datetime) -> list[Enrollment]:
    """Enroll whoever the rules let in (manual enrollment, enrollment_start),
    set-based: history and exits are read in two queries for all candidates.
    Every candidate leaves an EntryDecision saying why it did or did not enter."""
    if not candidates:
        return []
    ledger = Ledger.load(contact_ids={c.contact.pk for c in candidates}, journeys=[c.journey for c in candidates],
                         now=now)
    for candidate in candidates:
        ledger.admit(candidate)
    stored = ledger.write()
    created = []
    for candidate in ledger.admitted:
        if _key(candidate) in stored:
            enrollment = _new_enrollment(candidate, now)
            enrollment.pk = stored[_key(candidate)]
            created.append(enrollment)
    return created


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


def _entered_detail(candidate: Candidate, row: tuple) -> str:
    columns = dict(zip((name for name, _ in ENROLLMENT_COLUMNS), row, strict=True))
    parts = ["control group (holdout)"] if columns["is_control"] else []
    at = trigger_at(candidate.journey.live_version.definition)
    if at is not None and candidate.start_at is not None:
        parts.append(f"first step at {candidate.start_at.isoformat()} ({describe_at(at)})")
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
        # Exits that arrived before this event (as if it had been processed the moment it came).
        ends = set(definition.get("exit_events", [])) | set(definition.get("goal_events", []))
        for name, occurred_at, pk in exits.get(candidate.contact.pk, []):
            if name in ends and occurred_at >= candidate.entered_at and pk < candidate.event.pk:
                return EntryOutcome.EXITED_BEFORE_ENTRY, f"{name} at {occurred_at.isoformat()} already ended it"
    return EntryOutcome.ENTERED, ""


def in_holdout(journey_key: str, external_id: str, percent: float) -> bool:
    """Deterministic: the same contact is always in or out of a journey's
    control group, whichever worker asks."""
    if not percent:
        return False
    digest = hashlib.sha256(f"{journey_key}:{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def _first_step(definition: dict) -> tuple[str, str]:
    start = first_step(definition)
    return start, steps_by_key(definition)[start]["type"] if start != END else ""


def _enrollment_row(candidate: Candidate, now: dt.datetime) -> tuple:
    """The Enrollment row as ENROLLMENT_COLUMNS, without a model instance."""
    version = candidate.journey.live_version
    definition = version.definition
    start, kind = _first_step(definition)
    ended = bool(candidate.end_status)
    return (
        candidate.journey.pk, version.pk, candidate.contact.pk, candidate.scope_key[:100],
        candidate.event.pk if candidate.event else None,
        candidate.end_status or EnrollmentStatus.ACTIVE,
        in_holdout(candidate.journey.key, candidate.contact.external_id, definition.get("holdout_percent", 0)),
        candidate.context, start, "" if ended else kind,
        kind == "send" and not ended, {start: 1}, 0,
        None if ended else candidate.start_at or now, candidate.entered_at,
        now if ended else None, candidate.end_reason[:200], now,
    )


def _new_enrollment(candidate: Candidate, now: dt.datetime) -> Enrollment:
    """The stored row as a model instance, for callers that enroll one by one."""
    columns = dict(zip((name for name, _ in ENROLLMENT_COLUMNS), _enrollment_row(candidate, now), strict=True))
    return Enrollment(journey=candidate.journey, version=candidate.journey.live_version, contact=candidate.contact,
                      trigger_event=candidate.event, **{k: v for k, v in columns.items()
                                                         if k not in ("journey_id", "version_id", "contact_id",
                                                                      "trigger_event_id")})
