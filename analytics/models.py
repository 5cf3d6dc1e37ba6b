"""Analytics owns rollups (one row per local day and key, rebuilt whole for a
day so a re-run never double counts), the weekly audit exports and their
download log, and the log of permission and role changes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class RollupDay(models.Model):
    """One per rolled-up day; locked while the day is rebuilt so two runs of
    the same day take turns instead of both inserting."""

    day = models.DateField(unique=True)
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.day} (computed {self.computed_at:%Y-%m-%d %H:%M})"


class ChannelDay(models.Model):
    """Per workspace-local day, channel and provider: status moves that day
    (from the status events), engagement, opt-outs and cost."""

    day = models.DateField()
    channel = models.CharField(max_length=16)
    provider = models.CharField(max_length=32, blank=True, default="")
    queued = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    bounced = models.PositiveIntegerField(default=0)
    opened = models.PositiveIntegerField(default=0)
    clicked = models.PositiveIntegerField(default=0)
    replied = models.PositiveIntegerField(default=0)
    opt_outs = models.PositiveIntegerField(default=0, help_text="Consent revocations (provider '' rows)")
    suppressed = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(default=0)
    decisions = models.JSONField(default=dict, help_text='{"suppressed": {reason: n}, "deferred": {reason: n}}')
    cost = models.DecimalField(max_digits=14, decimal_places=5, default=0)
    converted_contacts = models.PositiveIntegerField(
        default=0, help_text="Contacts converting that day whose journey sent them a message here"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "channel", "provider"], name="channelday_key")]
        permissions = [("view_dashboard", "Can view the operations dashboard")]

    def __str__(self) -> str:
        return f"{self.day} {self.channel}/{self.provider or '-'}"


class JourneyDay(models.Model):
    """Per day, journey version and step: the cohort that entered the version
    (step_key '') or reached the step that day, and what has become of it so
    far; messages that version or step created that day, by current status."""

    day = models.DateField()
    journey = models.ForeignKey("journeys.Journey", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("journeys.JourneyVersion", on_delete=models.CASCADE, related_name="+")
    step_key = models.CharField(max_length=100, blank=True, default="", help_text="'': the version as a whole")
    entered = models.PositiveIntegerField(default=0)
    in_progress = models.PositiveIntegerField(default=0)
    converted = models.PositiveIntegerField(default=0)
    exited = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    control_entered = models.PositiveIntegerField(default=0)
    control_converted = models.PositiveIntegerField(default=0)
    convert_minutes = models.JSONField(default=dict, help_text="Histogram {rounded minutes: n} of times to convert")
    messages = models.JSONField(default=dict, help_text="{status: n}")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "version", "step_key"], name="journeyday_key")]
        indexes = [models.Index(fields=["journey", "day"], name="journeyday_journey_idx")]


class SupportDay(models.Model):
    day = models.DateField()
    source = models.CharField(max_length=20)
    category = models.CharField(max_length=20)
    opened = models.PositiveIntegerField(default=0)
    first_responses = models.PositiveIntegerField(default=0)
    resolved = models.PositiveIntegerField(default=0)
    resolved_without_agent = models.PositiveIntegerField(default=0)
    escalations = models.PositiveIntegerField(default=0)
    sla_breaches = models.PositiveIntegerField(default=0)
    first_response_minutes = models.JSONField(default=dict)
    resolution_minutes = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "source", "category"], name="supportday_key")]


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class AuditExport(models.Model):
    """One weekly audit export. Files are written under an attempt folder and
    the row becomes complete only after the manifest is written."""

    week = models.CharField(max_length=8, help_text="ISO week, e.g. 2026-W47")
    scheduled = models.BooleanField(default=False, help_text="Made by Beat (one per week)")
    status = models.CharField(max_length=10, choices=ExportStatus, default=ExportStatus.PENDING)
    requested_by = models.CharField(max_length=150, blank=True, default="")
    requested_at = models.DateTimeField()
    attempt = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_written = models.PositiveBigIntegerField(default=0)
    total_rows = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    directory = models.CharField(max_length=500, blank=True, default="")
    manifest = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["week"], condition=Q(scheduled=True), name="auditexport_one_scheduled"),
        ]
        permissions = [("download_auditexport", "Can download audit exports")]

    def __str__(self) -> str:
        return f"Audit export {self.week} #{self.pk}"


class AuditExportDownload(models.Model):
    export = models.ForeignKey(AuditExport, on_delete=models.PROTECT, related_name="downloads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    file = models.CharField(max_length=100)
    at = models.DateTimeField()
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]


class PermissionChange(models.Model):
    """Who gave or took which group, permission or object grant, to whom."""

    at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=16)  # added, removed, cleared, changed
    subject = models.CharField(max_length=200, help_text="user:<name> or group:<name>")
    what = models.CharField(max_length=300, help_text="group, permission, object grant or flag")

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor}: {self.action} {self.what} for {self.subject}"
