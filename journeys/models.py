"""Events, journeys and their immutable published versions, enrollments, step
executions, the decisions behind them, frequency caps, tasks and webhook calls."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from config.bulk import LoadedQuickly
from consent.models import Channel, Contact, MessageClass

# Rows written once per event or per step (enrollments, step executions, entry
# decisions) point at journeys, versions, events and enrollments without a
# database constraint (`db_constraint=False`): nothing deletes those rows, and
# each constraint cost a query per inserted row, about 3.7 µs of PostgreSQL's
# time (README "Performance"). Django's on_delete still applies; the contact
# keeps its constraint (merges and erasures lock it). Listed and held in
# tests/journeys/test_foreign_keys_without_constraint.py.


class Event(LoadedQuickly, models.Model):
    """Something a contact did, sent by an integration. Append-mostly; the
    idempotency key makes a retried or racing delivery a duplicate, never a
    second effect. `processed_at` is set once triggers, waits and exits saw it."""

    name = models.CharField(max_length=100)
    # Indexed by event_contact_name_idx, which leads with the contact.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="journey_events", db_index=False)
    properties = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    idempotency_key = models.CharField(max_length=200, unique=True)
    source = models.CharField(max_length=150, blank=True, default="", help_text="API key, admin user or system")
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # The processor claims unprocessed events; processed ones leave the index.
            models.Index(fields=["id"], condition=Q(processed_at__isnull=True), name="event_unprocessed_idx"),
            models.Index(fields=["contact", "name", "occurred_at"], name="event_contact_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.contact_id})"


class JourneyStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


JOURNEY_TRANSITIONS: dict[str, set[str]] = {
    JourneyStatus.DRAFT: {JourneyStatus.ACTIVE, JourneyStatus.ARCHIVED},
    JourneyStatus.ACTIVE: {JourneyStatus.PAUSED, JourneyStatus.ARCHIVED},
    JourneyStatus.PAUSED: {JourneyStatus.ACTIVE, JourneyStatus.ARCHIVED},
    JourneyStatus.ARCHIVED: set(),
}


class OverflowPolicy(models.TextChoices):
    """What happens to a message a cap or a higher-priority journey holds back."""

    DEFER = "defer", "Defer until allowed"
    DROP = "drop", "Drop"


class Journey(models.Model):
    """A behaviour-triggered, multi-step journey. Its editable definition is
    the draft; what runs is the live, approved JourneyVersion."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    message_class = models.CharField(max_length=16, choices=MessageClass, default=MessageClass.MARKETING)
    priority = models.PositiveSmallIntegerField(default=50, help_text="Higher goes first when journeys compete")
    status = models.CharField(max_length=16, choices=JourneyStatus, default=JourneyStatus.DRAFT)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="journeys"
    )
    team = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="journeys")
    definition = models.JSONField(default=dict, blank=True, help_text="The draft: trigger, exits and steps")
    draft_editors = models.JSONField(default=list, blank=True, help_text="Who edited the draft since it was published")
    live_version = models.ForeignKey(
        "JourneyVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["key"]
        permissions = [
            ("publish_journey", "Can publish a journey version (activate)"),
            ("pause_journey", "Can pause and resume a journey"),
            ("simulate_journey", "Can simulate a journey"),
        ]

    def __str__(self) -> str:
        return self.name


class JourneyStep(models.Model):
    """One step of a journey's draft, as the editor shows it (one row each).
    `Journey.definition` stays what the engine and publish read: these rows
    are rebuilt from it whenever it is written, and the editor writes it
    back from them through one service, so the two never disagree. The
    common settings have their own columns; the rest of the step (branches,
    conditions, timeouts...) is in `options`."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(default=0, help_text="Order in the journey; the first step starts it")
    key = models.CharField(max_length=100)
    type = models.CharField(max_length=32)
    next = models.CharField(max_length=100, blank=True, default="", help_text="Empty: the step listed after it")
    template = models.CharField(max_length=100, blank=True, default="", help_text="Send steps")
    duration = models.CharField(max_length=50, blank=True, default="", help_text="Wait steps, e.g. 1d or 24h")
    options = models.JSONField(default=dict, blank=True, help_text="The step's other settings")

    class Meta:
        ordering = ["journey", "position", "id"]
        indexes = [models.Index(fields=["journey", "position"], name="journey_step_position_idx")]

    def __str__(self) -> str:
        return f"{self.journey_id}:{self.key}"

    @classmethod
    def from_step(cls, journey: Journey, position: int, step: dict) -> JourneyStep:
        """A row holding exactly this step: a setting goes in its column only
        when it is text that fits, else it stays in `options` as given."""
        options = {k: v for k, v in step.items() if k not in ("key", "type")}
        columns = {}
        for name in STEP_COLUMNS:
            value = options.get(name)
            if isinstance(value, str) and value and len(value) <= cls._meta.get_field(name).max_length:
                columns[name] = options.pop(name)
        return cls(journey=journey, position=position, key=step["key"], type=step["type"], options=options, **columns)

    def as_step(self) -> dict:
        """The step as the definition holds it (the inverse of from_step)."""
        step: dict = {"key": self.key, "type": self.type}
        step.update({name: getattr(self, name) for name in STEP_COLUMNS if getattr(self, name)})
        step.update(self.options)
        return step


# The step settings JourneyStep keeps in their own columns (the rest stay in `options`).
STEP_COLUMNS = ("template", "duration", "next")


class VersionStatus(models.TextChoices):
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


VERSION_TRANSITIONS: dict[str, set[str]] = {
    VersionStatus.IN_REVIEW: {VersionStatus.APPROVED, VersionStatus.REJECTED},
    VersionStatus.APPROVED: set(),
    VersionStatus.REJECTED: set(),
}


class ImmutableVersionError(Exception):
    """Raised on an attempt to change a published version's definition."""


class JourneyVersion(models.Model):
    """An immutable snapshot of a journey's definition. Enrollments stay on
    the version they entered (DESIGN.md invariant 6)."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    message_class = models.CharField(max_length=16, choices=MessageClass)
    status = models.CharField(max_length=16, choices=VersionStatus, default=VersionStatus.IN_REVIEW)
    created_by = models.CharField(max_length=150)
    editors = models.JSONField(default=list, help_text="Everyone who edited the draft this version froze")
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.CharField(max_length=150, blank=True, default="")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["journey", "-number"]
        permissions = [("approve_journeyversion", "Can approve or reject a journey version")]
        constraints = [models.UniqueConstraint(fields=["journey", "number"], name="journey_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.journey.key} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            fields = kwargs.get("update_fields")
            if not fields or {"definition", "journey", "number", "message_class"} & set(fields):
                raise ImmutableVersionError("A journey version is immutable; edit the journey and publish anew.")
        super().save(*args, **kwargs)


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused with its journey"
    COMPLETED = "completed", "Completed"
    CONVERTED = "converted", "Converted (goal reached)"
    EXITED = "exited", "Exited"


OPEN_ENROLLMENT = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)


class Enrollment(LoadedQuickly, models.Model):
    """One contact's trip through one journey version. The engine claims due
    rows (`status=active`, `next_run_at <= now`) with SKIP LOCKED."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrollments", db_constraint=False)
    version = models.ForeignKey(JourneyVersion, on_delete=models.PROTECT, related_name="enrollments",
                                db_constraint=False)
    # enrollment_contact_idx (contact, status) serves lookups by contact: no index of its own.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="enrollments", db_index=False)
    status = models.CharField(max_length=16, choices=EnrollmentStatus, default=EnrollmentStatus.ACTIVE)
    is_control = models.BooleanField(default=False, help_text="Holdout: tracked to the goal, sent nothing")
    trigger_event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                      db_constraint=False)
    context = models.JSONField(default=dict, blank=True, help_text="The trigger event's properties")
    current_step = models.CharField(max_length=100, blank=True, default="")
    current_step_type = models.CharField(max_length=32, blank=True, default="")
    step_started_at = models.DateTimeField(null=True, blank=True)
    wait_target = models.DateTimeField(null=True, blank=True, help_text="When a wait until step aims to resume")
    send_pending = models.BooleanField(
        default=False, help_text="The step due at next_run_at leads straight to a send (for arbitration)"
    )
    visits = models.JSONField(default=dict, blank=True, help_text="Times each step was entered")
    failures = models.PositiveSmallIntegerField(
        default=0, help_text="Consecutive step failures: the next try backs off (see the failed step executions)"
    )
    next_run_at = models.DateTimeField(null=True, blank=True)
    entered_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    scope_key = models.CharField(
        max_length=100, blank=True, default="",
        help_text="What the enrollment is about beyond the contact (e.g. 'case:42'): one open enrollment per "
        "journey, contact and scope. Empty: the contact as a whole",
    )

    class Meta:
        ordering = ["-entered_at", "-id"]
        permissions = [("exit_enrollment", "Can exit an enrollment")]
        constraints = [
            models.UniqueConstraint(
                fields=["journey", "contact", "scope_key"],
                condition=Q(status__in=OPEN_ENROLLMENT),
                name="one_open_enrollment_per_scope",
            )
        ]
        indexes = [
            # Partial: claimed and finished rows leave the index (DESIGN.md measured limits).
            models.Index(fields=["next_run_at"], condition=Q(status="active"), name="enrollment_due_idx"),
            models.Index(fields=["contact", "status"], name="enrollment_contact_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} in {self.journey_id} ({self.status})"


class StepOutcome(models.TextChoices):
    SENT = "sent", "Message queued"
    DEFERRED = "deferred", "Message deferred"
    SUPPRESSED = "suppressed", "Message not sent"
    DUPLICATE = "duplicate", "Already sent"
    HOLDOUT = "holdout", "Holdout: nothing sent"
    WAITING = "waiting", "Waiting"
    PASSED = "passed", "Window passed"
    BRANCHED = "branched", "Branched"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    EXITED = "exited", "Exited"


class StepExecution(models.Model):
    """One execution of one step of one enrollment. (enrollment, step, visit)
    is unique, so a second tick can never run the same step twice."""

    # step_execution_once (enrollment, step_key, visit) serves lookups by enrollment.
    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="executions", db_index=False,
                                   db_constraint=False)
    step_key = models.CharField(max_length=100)
    step_type = models.CharField(max_length=32)
    visit = models.PositiveIntegerField(default=1)
    idempotency_key = models.CharField(max_length=250, unique=True)
    outcome = models.CharField(max_length=16, choices=StepOutcome)
    reason = models.CharField(max_length=64, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    next_step = models.CharField(max_length=100, blank=True, default="")
    executed_at = models.DateTimeField()

    class Meta:
        ordering = ["executed_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step_key", "visit"], name="step_execution_once")
        ]

    def __str__(self) -> str:
        return f"{self.enrollment_id}:{self.step_key}#{self.visit} {self.outcome}"


class EntryOutcome(models.TextChoices):
    ENTERED = "entered", "Entered"
    CONDITION_FALSE = "condition_false", "Entry condition false"
    REENTRY_RULE = "reentry_rule", "Re-entry rule"
    ALREADY_ENROLLED = "already_enrolled", "Already enrolled"
    EXITED_BEFORE_ENTRY = "exited_before_entry", "An exit or goal event came before the entry"
    JOURNEY_NOT_ACTIVE = "journey_not_active", "Journey not active"


class EntryDecision(models.Model):
    """Why a contact did or did not enter a journey on an event: the record
    "why not" reads instead of guessing."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="entry_decisions", db_constraint=False)
    version = models.ForeignKey(JourneyVersion, null=True, on_delete=models.SET_NULL, related_name="+",
                                db_constraint=False)
    # Indexed by entry_decision_idx, which leads with the contact.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="journey_entry_decisions",
                                db_index=False)
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                              db_constraint=False)
    outcome = models.CharField(max_length=32, choices=EntryOutcome)
    detail = models.CharField(max_length=500, blank=True, default="")
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["-decided_at", "-id"]
        indexes = [models.Index(fields=["contact", "journey", "-decided_at"], name="entry_decision_idx")]

    def __str__(self) -> str:
        return f"{self.contact_id}/{self.journey_id}: {self.outcome}"


class CapRule(models.Model):
    """At most `max_messages` per contact over a rolling window, optionally
    only on one channel and/or one message class. Transactional is exempt."""

    name = models.CharField(max_length=100)
    channel = models.CharField(max_length=16, choices=Channel, blank=True, default="", help_text="Empty: all")
    message_class = models.CharField(
        max_length=16, choices=[c for c in MessageClass.choices if c[0] != MessageClass.TRANSACTIONAL],
        blank=True, default="", help_text="Empty: operational and marketing",
    )
    max_messages = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    window_hours = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="Rolling window, e.g. 168 for 7 days"
    )
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    DONE = "done", "Done"


class Task(models.Model):
    """Work for a person, opened by a journey step (the support app's cases
    will take this over)."""

    journey = models.ForeignKey(Journey, null=True, on_delete=models.SET_NULL, related_name="tasks")
    enrollment = models.ForeignKey(Enrollment, null=True, on_delete=models.SET_NULL, related_name="tasks")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="journey_tasks")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=8, choices=TaskStatus, default=TaskStatus.OPEN)
    due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["status", "-created_at"]

    def __str__(self) -> str:
        return self.title


class WebhookStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending (claimed by a worker)"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed after retries"


class WebhookCall(models.Model):
    """A signed POST a webhook step asked for; delivered by a Celery task
    with retries, claimed by conditional update so a redelivery is harmless."""

    enrollment = models.ForeignKey(Enrollment, null=True, on_delete=models.SET_NULL, related_name="webhook_calls")
    url = models.URLField(max_length=500)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=WebhookStatus, default=WebhookStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Pending: not before; the tick re-enqueues due calls"
    )
    sending_at = models.DateTimeField(null=True, blank=True, help_text="When a worker claimed it")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.status})"


class ImportStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a worker"
    RUNNING = "running", "Enrolling"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class EnrollmentImport(models.Model):
    """One confirmed CSV upload enrolling contacts into a journey, worked
    through by a Celery task in chunks. Each chunk's enrollments, its result
    rows and the `processed` counter commit together, so a run that stops
    resumes where it left off and its page can be left and come back to."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="imports")
    file_name = models.CharField(max_length=255, blank=True, default="")
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=ImportStatus, default=ImportStatus.PENDING)
    contact_ids = models.JSONField(help_text="The contacts to enroll, in file order")
    lines = models.JSONField(help_text="The file line of each contact in contact_ids")
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    entered = models.PositiveIntegerField(default=0)
    control = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Unknown contacts and bad rows, not enrolled")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-requested_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.journey.key}: {self.file_name or 'CSV'} ({self.requested_at:%Y-%m-%d %H:%M})"


class EnrollmentImportRow(models.Model):
    """The result of one row of an import: entered (with the enrollment),
    refused by a rule (why), or skipped (unknown contact, bad row)."""

    enrollment_import = models.ForeignKey(EnrollmentImport, on_delete=models.CASCADE, related_name="rows")
    line = models.PositiveIntegerField()
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=32)
    detail = models.CharField(max_length=500, blank=True, default="")
    enrollment = models.ForeignKey(Enrollment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["line", "pk"]
        indexes = [models.Index(fields=["enrollment_import", "line"], name="import_row_line_idx")]
