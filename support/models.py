"""Support cases and what surrounds them: teams with business-hours
calendars, SLA policies, the case timeline and notes, keyword rules for
inbound replies, escalation policies, suppression rules and notifications."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from consent.models import Channel, Contact


def validate_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone such as Europe/Lisbon") from None


class Team(models.Model):
    """A support team: its members are the users in `group`, its supervisor
    is told about SLA breaches, and its business-hours calendar (working
    hours per weekday in `timezone`, and holidays) runs its SLA clocks. A
    team with no working hours at all works around the clock."""

    name = models.CharField(max_length=100, unique=True)
    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="support_team")
    supervisor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="supervised_teams"
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_zone])
    email = models.EmailField(blank=True, default="", help_text="Team queue address for notifications (optional)")

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WorkingHours(models.Model):
    """One working interval of a team's week, in the team's local time. Two
    rows on one weekday make a split day (a lunch break). An end of 00:00
    means midnight at the end of the day."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="working_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday)
    start = models.TimeField()
    end = models.TimeField(help_text="00:00 means the end of the day")

    class Meta:
        ordering = ["team", "weekday", "start"]
        verbose_name_plural = "working hours"

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start:%H:%M}-{self.end:%H:%M}"

    def clean(self) -> None:
        if self.end != dt.time(0) and self.end <= self.start:
            raise ValidationError({"end": "The end must come after the start (00:00 for midnight)."})


class TeamHoliday(models.Model):
    """A day the team does not work (its SLA clocks stop), in its local calendar."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["team", "date"]
        constraints = [models.UniqueConstraint(fields=["team", "date"], name="team_holiday_once")]

    def __str__(self) -> str:
        return f"{self.date} {self.name}".strip()


class Priority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}


class Category(models.TextChoices):
    BILLING = "billing", "Billing"
    TECHNICAL = "technical", "Technical"
    ORDER_STATUS = "order_status", "Order status"
    ACCOUNT_ACCESS = "account_access", "Account access"
    COMPLIANCE = "compliance", "Compliance"
    COMPLAINT = "complaint", "Complaint"
    OTHER = "other", "Other"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    PENDING_CUSTOMER = "pending_customer", "Pending customer"
    ESCALATED = "escalated", "Escalated"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


_S = CaseStatus
# The allowed moves, in one place. A resolved case reopens when the customer
# writes back or an agent reopens it; a closed case is final.
CASE_TRANSITIONS: dict[str, frozenset[str]] = {
    _S.OPEN: frozenset({_S.PENDING_CUSTOMER, _S.ESCALATED, _S.RESOLVED, _S.CLOSED}),
    _S.PENDING_CUSTOMER: frozenset({_S.OPEN, _S.ESCALATED, _S.RESOLVED, _S.CLOSED}),
    _S.ESCALATED: frozenset({_S.OPEN, _S.PENDING_CUSTOMER, _S.RESOLVED, _S.CLOSED}),
    _S.RESOLVED: frozenset({_S.OPEN, _S.CLOSED}),
    _S.CLOSED: frozenset(),
}
# A contact "has an open case" while one is in these states (reply threading,
# the marketing hold, keyword rules).
ACTIVE_STATUSES = (_S.OPEN, _S.PENDING_CUSTOMER, _S.ESCALATED)


class CaseSource(models.TextChoices):
    API = "api", "API"
    INBOUND_REPLY = "inbound_reply", "Inbound reply"
    JOURNEY_STEP = "journey_step", "Journey step"
    ADMIN = "admin", "Admin"


class SlaPolicy(models.Model):
    """How long a case of this priority may wait, in business minutes of its
    team's calendar: for the first agent response and for resolution."""

    priority = models.CharField(max_length=16, choices=Priority, unique=True)
    first_response_minutes = models.PositiveIntegerField(help_text="Business minutes to the first agent response")
    resolution_minutes = models.PositiveIntegerField(help_text="Business minutes to resolution")

    history = HistoricalRecords()

    class Meta:
        ordering = ["priority"]
        verbose_name = "SLA policy"
        verbose_name_plural = "SLA policies"

    def __str__(self) -> str:
        return f"{self.get_priority_display()}: {self.first_response_minutes} / {self.resolution_minutes} min"


class SupportCase(models.Model):
    """A customer's problem an agent works on. `number` (C-000123) is what
    people quote; who may see it is decided by guardian object permissions
    granted to the assigned agent and the team's group."""

    number = models.CharField(max_length=16, unique=True, null=True, blank=True, editable=False)
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="support_cases")
    subject = models.CharField(max_length=200)
    category = models.CharField(max_length=20, choices=Category, default=Category.OTHER)
    priority = models.CharField(max_length=16, choices=Priority, default=Priority.NORMAL)
    status = models.CharField(max_length=20, choices=CaseStatus, default=CaseStatus.OPEN, editable=False)
    source = models.CharField(max_length=20, choices=CaseSource, default=CaseSource.ADMIN)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="cases")
    assigned_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="support_cases"
    )
    opened_at = models.DateTimeField()
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    first_response_breached_at = models.DateTimeField(null=True, blank=True)
    last_customer_reply_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField()
    journey_task_id = models.BigIntegerField(null=True, blank=True, help_text="The journey Task this case came from")

    history = HistoricalRecords(excluded_fields=["status_changed_at"])

    class Meta:
        ordering = ["-opened_at", "-id"]
        permissions = [
            ("view_all_cases", "Can see every support case (supervisors, operators)"),
            ("reply_supportcase", "Can reply to the customer from a case"),
        ]
        indexes = [
            models.Index(fields=["contact", "status"], name="case_contact_status_idx"),
            models.Index(fields=["status", "-opened_at"], name="case_status_idx"),
            # The first-response SLA check reads only cases still waiting.
            models.Index(
                fields=["first_response_due_at"],
                condition=Q(first_response_at__isnull=True, first_response_breached_at__isnull=True),
                name="case_frt_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number or 'new case'}: {self.subject}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class SupportCaseUserObjectPermission(UserObjectPermissionBase):
    """Guardian's per-user grants on cases, with a real foreign key."""

    content_object = models.ForeignKey(SupportCase, on_delete=models.CASCADE)


class SupportCaseGroupObjectPermission(GroupObjectPermissionBase):
    """Guardian's per-group (team) grants on cases, with a real foreign key."""

    content_object = models.ForeignKey(SupportCase, on_delete=models.CASCADE)


class CaseEventKind(models.TextChoices):
    OPENED = "opened", "Opened"
    STATUS = "status", "Status changed"
    PRIORITY = "priority", "Priority changed"
    ASSIGNMENT = "assignment", "Assignment changed"
    NOTE = "note", "Internal note"
    AGENT_REPLY = "agent_reply", "Agent replied"
    CUSTOMER_REPLY = "customer_reply", "Customer replied"
    KEYWORD = "keyword", "Keyword rule matched"
    ESCALATION = "escalation", "Escalation step"
    SLA_BREACH = "sla_breach", "SLA breached"
    SUPPRESSION = "suppression", "Messages cancelled"


class CaseEvent(models.Model):
    """One line of a case's timeline: who did what, old and new value, and
    the message it concerns when there is one. Append-only."""

    case = models.ForeignKey(SupportCase, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=CaseEventKind)
    old_value = models.CharField(max_length=100, blank=True, default="")
    new_value = models.CharField(max_length=100, blank=True, default="")
    actor = models.CharField(max_length=150, blank=True, default="")
    detail = models.TextField(blank=True, default="")
    outbound_message = models.ForeignKey(
        "channels.OutboundMessage", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    inbound_message = models.ForeignKey(
        "channels.InboundMessage", null=True, blank=True, on_delete=models.SET_NULL, related_name="support_events"
    )
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["case", "at"], name="case_event_idx")]
        constraints = [
            # An inbound reply is threaded on at most one case.
            models.UniqueConstraint(
                fields=["inbound_message"], condition=Q(kind="customer_reply"), name="inbound_threaded_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.case_id}: {self.kind} {self.old_value}->{self.new_value}"


class CaseNote(models.Model):
    """An internal note on a case; never shown to the customer."""

    case = models.ForeignKey(SupportCase, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.body[:60]


class KeywordRule(models.Model):
    """A word or phrase in an inbound reply that needs a person: it opens a
    case (with this category and priority) or, when the contact already has
    an open case, raises that case to at least this priority and tells its agent."""

    phrase = models.CharField(max_length=100, unique=True, help_text="Matched as whole words, any case")
    priority = models.CharField(max_length=16, choices=Priority, default=Priority.HIGH)
    category = models.CharField(max_length=20, choices=Category, default=Category.OTHER)
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["phrase"]

    def __str__(self) -> str:
        return self.phrase


class Phase(models.TextChoices):
    OPENED = "opened", "After the case opens"
    RESOLVED = "resolved", "After the case is resolved"


class EscalationAction(models.TextChoices):
    SEND = "send", "Send a message to the customer"
    ASSIGN = "assign", "Assign to an agent or the team queue, and notify"
    NOTIFY = "notify", "Notify the agent (or the supervisor)"
    ESCALATE = "escalate", "Mark the case escalated"


class EscalationPolicy(models.Model):
    """What happens, and when, to a case of this priority and category. An
    empty priority or category matches any; the most specific active policy
    wins. The steps run on the journeys engine as a case-scoped enrollment."""

    name = models.CharField(max_length=100, unique=True)
    priority = models.CharField(max_length=16, choices=Priority, blank=True, default="")
    category = models.CharField(max_length=20, choices=Category, blank=True, default="")
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "escalation policies"

    def __str__(self) -> str:
        return self.name


class EscalationStep(models.Model):
    """One timed step of a policy, counted from the case opening (or from
    its resolution). With `unless_customer_replied` the step is skipped when
    the customer has written since the case opened."""

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps")
    phase = models.CharField(max_length=16, choices=Phase, default=Phase.OPENED)
    delay_minutes = models.PositiveIntegerField(default=0)
    action = models.CharField(max_length=16, choices=EscalationAction)
    channel = models.CharField(max_length=16, choices=Channel, blank=True, default="")
    template_key = models.CharField(max_length=120, blank=True, default="", help_text="For send steps")
    unless_customer_replied = models.BooleanField(default=False)

    class Meta:
        ordering = ["policy", "phase", "delay_minutes", "id"]

    def __str__(self) -> str:
        return f"{self.get_phase_display()} +{self.delay_minutes}m: {self.get_action_display()}"

    def clean(self) -> None:
        if self.action == EscalationAction.SEND and not self.template_key:
            raise ValidationError({"template_key": "A send step needs a template."})


class CaseTrigger(models.TextChoices):
    OPENED = "opened", "Case opened"
    RESOLVED = "resolved", "Case resolved"
    CLOSED = "closed", "Case closed"


class SuppressionRule(models.Model):
    """On a case event (optionally only for one category), cancel the
    contact's pending messages from journeys whose key matches, e.g. a
    billing case resolved cancels the payment-failed reminders."""

    name = models.CharField(max_length=100, unique=True)
    on = models.CharField(max_length=16, choices=CaseTrigger)
    category = models.CharField(max_length=20, choices=Category, blank=True, default="", help_text="Empty: any")
    journey_key_prefix = models.CharField(
        max_length=100, help_text="Cancel messages of journeys whose key starts with this (e.g. payment-failed)"
    )
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Notification(models.Model):
    """Something a person must look at (a keyword on their case, an
    assignment, an SLA breach). Shown in the admin; emailed when the person
    has an address."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="support_notifications"
    )
    case = models.ForeignKey(SupportCase, null=True, on_delete=models.CASCADE, related_name="notifications")
    text = models.CharField(max_length=300)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"], name="notification_inbox_idx")]

    def __str__(self) -> str:
        return self.text


class CaseEscalation(models.Model):
    """A case's run through one phase of its escalation policy: an
    enrollment in the policy's journey (the journeys engine schedules and
    executes the steps). Stopped when the case is resolved or closed."""

    case = models.ForeignKey(SupportCase, on_delete=models.CASCADE, related_name="escalations")
    policy = models.ForeignKey(EscalationPolicy, null=True, on_delete=models.SET_NULL, related_name="runs")
    phase = models.CharField(max_length=16, choices=Phase)
    journey_key = models.CharField(max_length=100)
    enrollment_id = models.BigIntegerField(null=True, blank=True, unique=True)
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["case", "started_at"]
        constraints = [models.UniqueConstraint(fields=["case", "phase"], name="one_escalation_per_phase")]

    def __str__(self) -> str:
        return f"{self.case_id} {self.phase} via {self.journey_key}"
