"""Writes of the journeys app: journeys, their versions and approval, pause
and resume, operator actions on enrollments, manual enrollment, tasks.

Event ingestion and processing live in journeys.events, the engine in
journeys.engine; both are re-exported here as the app's public surface."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from guardian.shortcuts import assign_perm

from consent.models import Contact, MessageClass
from consent.services import Actor, actor_label
from journeys import definition as definitions
from journeys.engine import advance, enrollments_end
from journeys.events import Candidate, EventIn, IngestResult, enroll, events_ingest, process_events
from journeys.models import (
    JOURNEY_TRANSITIONS,
    OPEN_ENROLLMENT,
    VERSION_TRANSITIONS,
    Enrollment,
    EnrollmentImport,
    EnrollmentImportRow,
    EnrollmentStatus,
    EntryDecision,
    EntryOutcome,
    ImportStatus,
    Journey,
    JourneyStatus,
    JourneyStep,
    JourneyVersion,
    Task,
    TaskStatus,
    VersionStatus,
)
from journeys.tick_hooks import run_tick_hooks

__all__ = [
    "EnrollReport", "EventIn", "IngestResult", "JourneyError", "advance", "enrollment_exit", "enrollment_start",
    "enrollments_enroll", "enrollments_enroll_report", "events_ingest", "journey_steps_save",
    "journey_archive", "journey_create", "journey_pause", "journey_publish", "journey_resume", "journey_update",
    "journey_version_approve", "enrollments_exit_unsubscribed", "journey_version_reject", "process_events",
    "run_until_idle", "task_complete", "template_problem",
]

OBJECT_PERMS = ("view_journey", "change_journey")


class JourneyError(Exception):
    """A journey operation that cannot be done as asked (API answers 409)."""


class IllegalTransition(JourneyError):
    pass


def template_problem(template_key: str) -> str:
    """'' if the template exists and has an approved version, else why not."""
    from templates.models import Template
    from templates.services import template_has_approved_version

    if not Template.objects.filter(key=template_key).exists():
        return f"unknown template {template_key!r}"
    if not template_has_approved_version(template_key):
        return f"template {template_key!r} has no approved version"
    return ""


def template_unknown(template_key: str) -> str:
    """'' if the template exists (a draft may use one not approved yet)."""
    from templates.models import Template

    return "" if Template.objects.filter(key=template_key).exists() else f"unknown template {template_key!r}"


def validate_definition(definition: Any, *, check_templates: bool = True) -> list[definitions.Problem]:
    problems = definitions.validate(definition, template_check=template_problem if check_templates else None)
    return problems + _step_row_problems(definition)


def validate_draft(definition: Any) -> list[definitions.Problem]:
    """The editor's check: everything activation checks except that a
    template has an approved version (a draft may wait for one)."""
    return definitions.validate(definition, template_check=template_unknown) + _step_row_problems(definition)


def _step_row_problems(definition: Any) -> list[definitions.Problem]:
    """What the editor's step rows (and enrollments' current_step) cannot hold."""
    steps = definition.get("steps") if isinstance(definition, dict) else None
    limit = JourneyStep._meta.get_field("key").max_length
    return [
        definitions.Problem(f"steps[{index}] ({step['key']}).key", f"at most {limit} characters")
        for index, step in enumerate(steps if isinstance(steps, list) else [])
        if isinstance(step, dict) and isinstance(step.get("key"), str) and len(step["key"]) > limit
    ]


def _require_valid(definition: Any, *, check_templates: bool) -> None:
    problems = validate_definition(definition, check_templates=check_templates)
    if problems:
        raise definitions.DefinitionError(problems)


def _editor_label(actor: Actor) -> str:
    return actor_label(actor)


def journey_create(
    *,
    key: str,
    name: str,
    message_class: str,
    actor: Actor,
    definition: dict | None = None,
    priority: int = 50,
    description: str = "",
    owner=None,
    team: Group | None = None,
) -> Journey:
    """A draft journey; owner and team get object permissions on it."""
    definition = definition or {"steps": []}
    if definition.get("steps"):
        _require_valid(definition, check_templates=False)
    with transaction.atomic():
        journey = Journey(
            key=key, name=name, message_class=message_class, priority=priority, description=description,
            owner=owner, team=team, definition=definition, draft_editors=[_editor_label(actor)],
        )
        journey._change_reason = f"created by {actor_label(actor)}"
        journey.save()
        _rebuild_steps(journey)
        for perm in OBJECT_PERMS:
            if owner is not None:
                assign_perm(perm, owner, journey)
            if team is not None:
                assign_perm(perm, team, journey)
    return journey


def journey_update(*, journey: Journey, actor: Actor, definition: dict | None = None, **fields: Any) -> Journey:
    """Edit the draft (a live journey keeps running its published version
    until a new one is approved). The editor is remembered for maker-checker."""
    allowed = {"name", "description", "priority", "message_class", "owner", "team"}
    unknown = set(fields) - allowed
    if unknown:
        raise JourneyError(f"cannot change {', '.join(sorted(unknown))} here")
    if journey.status == JourneyStatus.ARCHIVED:
        raise JourneyError("an archived journey cannot be edited")
    if definition is not None:
        _require_valid(definition, check_templates=False)
        journey.definition = definition
        fields["definition"] = definition
    for name, value in fields.items():
        setattr(journey, name, value)
    for holder in (fields.get("owner"), fields.get("team")):
        if holder is not None:
            for perm in OBJECT_PERMS:
                assign_perm(perm, holder, journey)
    editor = _editor_label(actor)
    if editor not in journey.draft_editors:
        journey.draft_editors = [*journey.draft_editors, editor]
    journey._change_reason = f"edited by {actor_label(actor)}"
    with transaction.atomic():
        journey.save(update_fields=[*fields.keys(), "draft_editors", "updated_at"])
        if definition is not None:
            _rebuild_steps(journey)
    return journey


def journey_steps_save(
    *, journey: Journey, actor: Actor, settings: dict[str, Any], steps: list[dict], **fields: Any
) -> Journey:
    """The editor's save: the journey-level settings and the steps (in
    order, as its rows give them) become the draft definition, validated
    like any other; the rows are then rebuilt from it."""
    definition = {**{k: v for k, v in settings.items() if k != "steps"}, "steps": steps}
    return journey_update(journey=journey, actor=actor, definition=definition, **fields)


def _rebuild_steps(journey: Journey) -> None:
    """The editor's rows from the definition (its one writer is this module)."""
    JourneyStep.objects.filter(journey=journey).delete()
    JourneyStep.objects.bulk_create(
        JourneyStep.from_step(journey, position, step)
        for position, step in enumerate(journey.definition.get("steps") or [])
    )


def needs_approval(message_class: str) -> bool:
    return message_class in settings.JOURNEYS_APPROVAL_CLASSES


def journey_publish(*, journey: Journey, actor: Actor, now: dt.datetime | None = None) -> JourneyVersion:
    """Freeze the draft as a new immutable version. Classes that need review
    wait for a reviewer who did not edit it; others go live at once."""
    now = now or timezone.now()
    _require_valid(journey.definition, check_templates=True)
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status == JourneyStatus.ARCHIVED:
            raise IllegalTransition("an archived journey cannot be published")
        if journey.versions.filter(status=VersionStatus.IN_REVIEW).exists():
            raise JourneyError("a version of this journey is already waiting for review")
        number = (journey.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        editors = sorted({*journey.draft_editors, _editor_label(actor)})
        version = JourneyVersion.objects.create(
            journey=journey, number=number, definition=journey.definition, message_class=journey.message_class,
            created_by=_editor_label(actor), editors=editors, created_at=now,
        )
        if not needs_approval(journey.message_class):
            _go_live(journey, version, reviewer="(no review needed for this class)", now=now)
    return version


def journey_version_approve(
    *, version: JourneyVersion, actor: Actor, note: str = "", now: dt.datetime | None = None
) -> JourneyVersion:
    """Maker-checker: nobody approves a version they created or edited."""
    now = now or timezone.now()
    reviewer = _editor_label(actor)
    with transaction.atomic():
        version = JourneyVersion.objects.select_for_update().select_related("journey").get(pk=version.pk)
        _check_version_transition(version, VersionStatus.APPROVED)
        if reviewer in version.editors or reviewer == version.created_by:
            raise JourneyError("you edited this version; another reviewer must approve it")
        journey = Journey.objects.select_for_update().get(pk=version.journey_id)
        version.review_note = note
        _go_live(journey, version, reviewer=reviewer, now=now)
    return version


def journey_version_reject(
    *, version: JourneyVersion, actor: Actor, note: str, now: dt.datetime | None = None
) -> JourneyVersion:
    if not note.strip():
        raise JourneyError("say why the version is rejected")
    with transaction.atomic():
        version = JourneyVersion.objects.select_for_update().get(pk=version.pk)
        _check_version_transition(version, VersionStatus.REJECTED)
        version.status = VersionStatus.REJECTED
        version.reviewed_by = _editor_label(actor)
        version.reviewed_at = now or timezone.now()
        version.review_note = note
        version.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    return version


def _check_version_transition(version: JourneyVersion, to: str) -> None:
    if to not in VERSION_TRANSITIONS[version.status]:
        raise IllegalTransition(f"version {version.number} is {version.status} and cannot become {to}")


def _go_live(journey: Journey, version: JourneyVersion, *, reviewer: str, now: dt.datetime) -> None:
    version.status = VersionStatus.APPROVED
    version.reviewed_by = reviewer
    version.reviewed_at = now
    version.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    journey.live_version = version
    journey.draft_editors = []
    fields = ["live_version", "draft_editors", "updated_at"]
    if journey.status == JourneyStatus.DRAFT:
        journey.status = JourneyStatus.ACTIVE
        fields.append("status")
    journey._change_reason = f"version {version.number} live (approved by {reviewer})"
    journey.save(update_fields=fields)


def _transition(journey: Journey, to: str, actor: Actor) -> Journey:
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if to not in JOURNEY_TRANSITIONS[journey.status]:
        raise IllegalTransition(f"a {journey.status} journey cannot become {to}")
    if to == JourneyStatus.ACTIVE and journey.live_version_id is None:
        raise IllegalTransition("publish and approve a version first")
    journey.status = to
    journey._change_reason = f"{to} by {actor_label(actor)}"
    journey.save(update_fields=["status", "updated_at"])
    return journey


def journey_pause(*, journey: Journey, actor: Actor) -> Journey:
    """Stops every step (sends included); enrollments stay where they are."""
    with transaction.atomic():
        journey = _transition(journey, JourneyStatus.PAUSED, actor)
        Enrollment.objects.filter(journey=journey, status=EnrollmentStatus.ACTIVE).update(
            status=EnrollmentStatus.PAUSED
        )
    return journey


def journey_resume(*, journey: Journey, actor: Actor) -> Journey:
    """Enrollments carry on by the rules of their step: a wait until whose
    moment passed during the pause skips what it waited for."""
    with transaction.atomic():
        journey = _transition(journey, JourneyStatus.ACTIVE, actor)
        Enrollment.objects.filter(journey=journey, status=EnrollmentStatus.PAUSED).update(
            status=EnrollmentStatus.ACTIVE
        )
    return journey


def journey_archive(*, journey: Journey, actor: Actor, now: dt.datetime | None = None) -> Journey:
    now = now or timezone.now()
    with transaction.atomic():
        journey = _transition(journey, JourneyStatus.ARCHIVED, actor)
        ids = list(journey.enrollments.filter(status__in=OPEN_ENROLLMENT).values_list("pk", flat=True))
        enrollments_end(enrollment_ids=ids, status=EnrollmentStatus.EXITED, reason="journey archived", now=now)
    return journey


def enrollment_exit(*, enrollment: Enrollment, actor: Actor, reason: str = "", now: dt.datetime | None = None) -> bool:
    """Operator action: end one enrollment and cancel its unsent messages."""
    ended = enrollments_end(
        enrollment_ids=[enrollment.pk], status=EnrollmentStatus.EXITED,
        reason=f"exited by {actor_label(actor)}" + (f": {reason}" if reason else ""), now=now or timezone.now(),
    )
    if not ended:
        raise IllegalTransition("this enrollment has already ended")
    return True


def enrollments_exit_contacts(
    *, journey: Journey, contacts: list[Contact], actor: Actor, reason: str = "", now: dt.datetime | None = None
) -> set[int]:
    """Operator or integration: end these contacts' open enrollments in the
    journey and cancel their unsent messages. Returns the contacts exited."""
    open_enrollments = dict(
        Enrollment.objects.filter(journey=journey, contact__in=contacts, status__in=OPEN_ENROLLMENT)
        .values_list("pk", "contact_id")
    )
    if not open_enrollments:
        return set()
    ended = enrollments_end(
        enrollment_ids=list(open_enrollments), status=EnrollmentStatus.EXITED,
        reason=f"exited by {actor_label(actor)}" + (f": {reason}" if reason else ""), now=now or timezone.now(),
    )
    return {open_enrollments[pk] for pk in ended}


def enrollments_enroll(
    *, journey: Journey, contacts: list[Contact], actor: Actor, now: dt.datetime | None = None
) -> list[Enrollment]:
    """Manual enrollment (admin selection or CSV): the re-entry rules and the
    one-open-enrollment rule still apply; each refusal is recorded."""
    now = now or timezone.now()
    journey = _active_journey(journey)
    with transaction.atomic():
        return enroll(
            [Candidate(journey, contact, now, None, {"enrolled_by": actor_label(actor)}) for contact in contacts], now
        )


def _active_journey(journey: Journey) -> Journey:
    """The journey as stored now, with its live version: only an active one takes enrollments."""
    journey = Journey.objects.select_related("live_version").get(pk=journey.pk)
    if journey.status != JourneyStatus.ACTIVE or journey.live_version is None:
        raise JourneyError("only an active journey takes enrollments")
    return journey


@dataclass
class EnrollReport:
    """What a manual enrollment did: who entered, and why each other contact
    was refused (the EntryDecision's outcome and detail)."""

    entered: list[Enrollment] = field(default_factory=list)
    refused: dict[int, tuple[str, str]] = field(default_factory=dict)

    @cached_property
    def _entered_by_contact(self) -> dict[int, Enrollment]:
        return {enrollment.contact_id: enrollment for enrollment in self.entered}

    def outcome_of(self, contact: Contact) -> tuple[str, str, Enrollment | None]:
        """One dict lookup: callers ask for every contact of a batch of up to 1,000."""
        enrollment = self._entered_by_contact.get(contact.pk)
        if enrollment is not None:
            return EntryOutcome.ENTERED, "control group (holdout)" if enrollment.is_control else "", enrollment
        outcome, detail = self.refused.get(contact.pk, (EntryOutcome.ALREADY_ENROLLED, ""))
        return outcome, detail, None


def enrollments_enroll_report(
    *, journey: Journey, contacts: list[Contact], actor: Actor, now: dt.datetime | None = None
) -> EnrollReport:
    """enrollments_enroll, answering for every contact (CSV upload, API):
    the refusals are read back from the entry decisions it recorded."""
    now = now or timezone.now()
    contacts = list({c.pk: c for c in contacts}.values())
    entered = enrollments_enroll(journey=journey, contacts=contacts, actor=actor, now=now)
    entered_ids = {e.contact_id for e in entered}
    decisions = EntryDecision.objects.filter(
        journey=journey, event__isnull=True, decided_at=now, contact_id__in=[c.pk for c in contacts]
    ).exclude(outcome=EntryOutcome.ENTERED).values_list("contact_id", "outcome", "detail")
    refused = {contact_id: (outcome, detail) for contact_id, outcome, detail in decisions
               if contact_id not in entered_ids}
    return EnrollReport(entered=entered, refused=refused)


# Outcomes of the rows an import skips without enrolling (EntryOutcome covers the rest).
SKIPPED_OUTCOME = {"unknown": "unknown_contact", "bad": "bad_row"}


def enrollment_import_create(*, journey: Journey, contact_ids: list[int], lines: list[int],
                             problems: list[tuple[int, str, str]], file_name: str, actor: Actor) -> EnrollmentImport:
    """A confirmed CSV upload: the rows it skips are recorded at once, the
    contacts are enrolled by a worker (enrollment_import_run) once this commits."""
    journey = _active_journey(journey)
    with transaction.atomic():
        job = EnrollmentImport.objects.create(
            journey=journey, file_name=file_name[:255], requested_by=actor_label(actor), contact_ids=contact_ids,
            lines=lines, total=len(contact_ids), skipped=len(problems))
        EnrollmentImportRow.objects.bulk_create(
            EnrollmentImportRow(enrollment_import=job, line=line, outcome=SKIPPED_OUTCOME[kind], detail=message[:500])
            for line, kind, message in problems)
        transaction.on_commit(lambda: _enqueue_import(job.pk))
    return job


def _enqueue_import(import_id: int) -> None:
    from journeys.tasks import run_enrollment_import

    run_enrollment_import.delay(import_id)


def enrollment_import_run(*, import_id: int) -> EnrollmentImport:
    """Enroll an import's contacts a chunk at a time. Each chunk locks the
    import row, enrolls, writes its result rows and moves `processed` in one
    transaction: a second worker waits its turn, and a run that dies resumes
    at the first chunk that did not commit."""
    chunk_size = settings.JOURNEYS_IMPORT_CHUNK_SIZE
    while True:
        with transaction.atomic():
            job = EnrollmentImport.objects.select_for_update().select_related("journey").get(pk=import_id)
            if job.status in (ImportStatus.DONE, ImportStatus.FAILED):
                return job
            now = timezone.now()
            if job.processed >= job.total:
                job.status, job.finished_at = ImportStatus.DONE, now
                job.save(update_fields=["status", "finished_at"])
                return job
            if job.status == ImportStatus.PENDING:
                job.status, job.started_at = ImportStatus.RUNNING, now
            try:
                _import_chunk(job, chunk_size, now)
            except JourneyError as error:
                job.status, job.finished_at = ImportStatus.FAILED, now
                job.error = (f"{error}: stopped after {job.processed:,} of {job.total:,} contacts; "
                             "resume the journey and upload the rest again")
            job.save()


def _import_chunk(job: EnrollmentImport, chunk_size: int, now: dt.datetime) -> None:
    start = job.processed
    ids, lines = job.contact_ids[start:start + chunk_size], job.lines[start:start + chunk_size]
    contacts = Contact.objects.in_bulk(ids)
    present = [contacts[pk] for pk in ids if pk in contacts]
    report = enrollments_enroll_report(journey=job.journey, contacts=present, actor=job.requested_by, now=now)
    rows = []
    for pk, line in zip(ids, lines, strict=True):
        contact = contacts.get(pk)
        if contact is None:
            rows.append(EnrollmentImportRow(enrollment_import=job, line=line, outcome=SKIPPED_OUTCOME["unknown"],
                                            detail="the contact was deleted after the file was read"))
            continue
        outcome, detail, enrollment = report.outcome_of(contact)
        rows.append(EnrollmentImportRow(enrollment_import=job, line=line, contact=contact, outcome=outcome,
                                        detail=detail[:500], enrollment=enrollment))
    EnrollmentImportRow.objects.bulk_create(rows)
    job.processed = start + len(ids)
    job.entered += len(report.entered)
    job.control += sum(1 for e in report.entered if e.is_control)
    job.refused += len(present) - len(report.entered)
    job.skipped += len(ids) - len(present)


def enrollment_start(
    *, journey: Journey, contact: Contact, context: dict[str, Any], now: dt.datetime, scope_key: str = "",
) -> Enrollment | None:
    """Enroll one contact now (no trigger event), e.g. a support case's
    escalation with scope_key="case:<id>": one open enrollment per journey,
    contact and scope, so a contact's second case gets its own. Re-entry
    rules apply within the scope. Runs in the caller's transaction (a
    savepoint); returns None when the journey is not active or the rules
    refuse (the EntryDecision says why). The next tick runs the first step."""
    if len(scope_key) > 100:
        raise JourneyError("scope_key is at most 100 characters")
    try:
        journey = _active_journey(journey)
    except JourneyError:
        return None
    with transaction.atomic():
        created = enroll([Candidate(journey, contact, now, None, context, scope_key=scope_key)], now)
    return created[0] if created else None


def enrollments_exit_unsubscribed(*, contact_id: int, channel: str, at: dt.datetime) -> list[int]:
    """Exit this contact's open enrollments in marketing journeys whose
    version sends on `channel` (the gate would refuse those sends anyway;
    this ends the journey rather than walking it to its end)."""
    from templates.models import Template

    open_rows = list(
        Enrollment.objects.filter(contact_id=contact_id, status__in=OPEN_ENROLLMENT,
                                  version__message_class=MessageClass.MARKETING).select_related("version")
    )
    keys = {e.pk: set(definitions.template_keys(e.version.definition)) for e in open_rows}
    channels = dict(Template.objects.filter(key__in=set().union(*keys.values())).values_list("key", "channel"))
    ids = [pk for pk, used in keys.items() if channel in {channels.get(k) for k in used}]
    return enrollments_end(enrollment_ids=ids, status=EnrollmentStatus.EXITED,
                           reason=f"unsubscribed from {channel} marketing", now=at)


def task_complete(*, task: Task, actor: Actor, now: dt.datetime | None = None) -> None:
    done = Task.objects.filter(pk=task.pk, status=TaskStatus.OPEN).update(
        status=TaskStatus.DONE, done_at=now or timezone.now()
    )
    if done != 1:
        raise IllegalTransition("this task is already done")


def run_until_idle(*, now: dt.datetime, max_rounds: int = 10_000) -> dict[str, int]:
    """Process every pending event, then tick as of `now` until nothing is
    due (advance_journeys and tests). Returns counts."""
    counts = {"events": 0, "advanced": 0}
    for _ in range(max_rounds):
        processed = process_events(now=now)
        counts["events"] += processed
        if not processed:
            break
    for _ in range(max_rounds):
        advanced = advance(now=now)
        counts["advanced"] += advanced
        if not advanced:
            # Steps may have produced nothing new to process; events created
            # meanwhile (by another worker) are taken on the next run.
            break
    counts.update(run_tick_hooks(now=now))
    return counts
