"""Contacts, their addresses and devices, the append-only consent ledger,
suppressions and quiet hours: everything the send gate reads."""

from __future__ import annotations

import zoneinfo

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from config.bulk import LoadedQuickly
from consent.masking import mask_address


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PUSH = "push", "Push"
    WHATSAPP = "whatsapp", "WhatsApp"
    RCS = "rcs", "RCS"
    IN_APP = "in_app", "In-app"


class MessageClass(models.TextChoices):
    """Also the consent purposes: what a message is for decides what it needs."""

    TRANSACTIONAL = "transactional", "Transactional"
    OPERATIONAL = "operational", "Operational"
    MARKETING = "marketing", "Marketing"


class LifecycleStage(models.TextChoices):
    LEAD = "lead", "Lead"
    ONBOARDING = "onboarding", "Onboarding"
    ACTIVE = "active", "Active"
    AT_RISK = "at_risk", "At risk"
    CHURNED = "churned", "Churned"


def validate_timezone(value: str) -> None:
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Lisbon).", code="invalid_timezone")


def normalise_phone(value: str) -> str:
    """Return the E.164 form of a phone number, or raise ValidationError."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            f"{value!r} is not a phone number in international format (e.g. +14155550100).", code="invalid_phone"
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"{value!r} is not a valid phone number.", code="invalid_phone")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def validate_phone(value: str) -> None:
    if value:
        normalise_phone(value)


class Contact(LoadedQuickly, models.Model):
    """A person we may message, keyed by the integration's `external_id`."""

    external_id = models.CharField(max_length=128, unique=True)
    email = models.EmailField(blank=True, default="")
    phone = models.CharField(max_length=20, blank=True, default="", validators=[validate_phone], help_text="E.164")
    whatsapp_id = models.CharField(max_length=32, blank=True, default="", validators=[validate_phone])
    timezone = models.CharField(max_length=64, blank=True, default="", validators=[validate_timezone])
    locale = models.CharField(max_length=16, blank=True, default="")
    lifecycle_stage = models.CharField(max_length=16, choices=LifecycleStage, default=LifecycleStage.LEAD)
    attributes = models.JSONField(default=dict, blank=True)
    quiet_hours_start = models.TimeField(null=True, blank=True, help_text="Overrides the workspace window")
    quiet_hours_end = models.TimeField(null=True, blank=True)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged")
    erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-id"]
        permissions = [
            # Granted by role in consent/roles.py; without it, addresses are masked in the admin.
            ("view_personal_data", "Can see contacts' addresses (email, phone, WhatsApp id, push tokens)"),
        ]
        constraints = [
            # One owner per identifier: a second contact with the same address
            # would split consent and history (identity resolution, issue 2).
            models.UniqueConstraint(fields=["email"], condition=~Q(email=""), name="contact_email_unique"),
            models.UniqueConstraint(fields=["phone"], condition=~Q(phone=""), name="contact_phone_unique"),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def is_active(self) -> bool:
        return self.erased_at is None and self.merged_into_id is None


class DevicePlatform(models.TextChoices):
    IOS = "ios", "iOS"
    ANDROID = "android", "Android"
    WEB = "web", "Web push"


class PushDevice(models.Model):
    """A push target: an FCM registration token, or a Web Push subscription."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="push_devices")
    platform = models.CharField(max_length=8, choices=DevicePlatform)
    token = models.CharField(max_length=512, unique=True, help_text="FCM token, or the Web Push endpoint")
    subscription = models.JSONField(default=dict, blank=True, help_text="Web Push keys (p256dh, auth)")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_reason = models.CharField(max_length=200, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.platform}:{mask_address(self.token)}"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", "Granted"
    REVOKED = "revoked", "Revoked"
    PENDING = "pending", "Pending confirmation"


class ConsentSource(models.TextChoices):
    API = "api", "API"
    ADMIN = "admin", "Admin (agent)"
    FORM = "form", "Web form"
    KEYWORD = "keyword", "Reply keyword"
    CONFIRMATION = "confirmation", "Double opt-in confirmation"
    IMPORT = "import", "Import"
    MERGE = "merge", "Contact merge"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribe link"


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove a consent record."""


class ConsentRecordQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Consent records are append-only; record a new one instead.")

    def delete(self):
        raise AppendOnlyError("Consent records are append-only and cannot be deleted.")


class ConsentRecord(models.Model):
    """One entry in the consent ledger. Never updated or deleted: the current
    state of (contact, channel, purpose) is the latest decided record."""

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="consent_records")
    channel = models.CharField(max_length=16, choices=Channel)
    purpose = models.CharField(max_length=16, choices=MessageClass)
    status = models.CharField(max_length=8, choices=ConsentStatus)
    source = models.CharField(max_length=16, choices=ConsentSource)
    evidence = models.JSONField(default=dict, blank=True, help_text="Form URL, IP, keyword, agent…")
    wording_version = models.CharField(max_length=32, blank=True, default="")
    recorded_at = models.DateTimeField(default=timezone.now, db_index=True)
    recorded_by = models.CharField(max_length=150, blank=True, default="", help_text="User, API key or system")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Pending grants lapse at this time")
    confirms = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="confirmations")

    objects = ConsentRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-recorded_at", "-id"]
        indexes = [models.Index(fields=["contact", "channel", "purpose", "-recorded_at"], name="consent_state_idx")]

    def __str__(self) -> str:
        return f"{self.contact_id} {self.channel}/{self.purpose}: {self.status}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Consent records are append-only; record a new one instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Consent records are append-only and cannot be deleted.")


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    SPAM_COMPLAINT = "spam_complaint", "Spam complaint"
    MANUAL = "manual", "Manual"
    LEGAL_HOLD = "legal_hold", "Legal hold"


class SuppressionQuerySet(models.QuerySet):
    def in_force(self, at):
        return self.filter(lifted_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=at))


class Suppression(models.Model):
    """Stops sends to a contact or to one address, on one channel or all."""

    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.CASCADE, related_name="suppressions")
    address = models.CharField(max_length=254, blank=True, default="", db_index=True, help_text="Email or E.164")
    channel = models.CharField(max_length=16, choices=Channel, blank=True, default="", help_text="Empty: all")
    reason = models.CharField(max_length=16, choices=SuppressionReason)
    note = models.TextField(blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True, default="")
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=150, blank=True, default="")

    objects = SuppressionQuerySet.as_manager()
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(contact__isnull=False) | ~Q(address=""), name="suppression_has_target"
            ),
        ]

    def __str__(self) -> str:
        # Masked: this string is stored in the admin log and shown in titles and history to everyone.
        return f"{self.get_reason_display()}: {mask_address(self.address) if self.address else self.contact}"


def default_quiet_classes() -> list[str]:
    return [MessageClass.OPERATIONAL, MessageClass.MARKETING]


class QuietHoursRule(models.Model):
    """A window in which sends of the listed classes wait. The most specific
    rule wins: country and channel, then country, then channel, then the
    workspace default (no country, no channel)."""

    name = models.CharField(max_length=100)
    channel = models.CharField(max_length=16, choices=Channel, blank=True, default="", help_text="Empty: all")
    country = models.CharField(max_length=2, blank=True, default="", help_text="ISO 3166 code; empty: all")
    start = models.TimeField(help_text="Local time the window opens, e.g. 21:00")
    end = models.TimeField(help_text="Local time it closes, e.g. 08:00 (may cross midnight)")
    message_classes = models.JSONField(default=default_quiet_classes)
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "country"], condition=Q(active=True), name="one_rule_per_scope")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        unknown = set(self.message_classes or []) - set(MessageClass.values)
        if unknown:
            raise ValidationError({"message_classes": f"Unknown message classes: {sorted(unknown)}"})
        if self.start == self.end:
            raise ValidationError("A quiet window must not start and end at the same time.")


class Holiday(models.Model):
    """A date on which marketing is held (in the contact's local calendar)."""

    date = models.DateField()
    name = models.CharField(max_length=100)
    country = models.CharField(max_length=2, blank=True, default="", help_text="Empty: everywhere")

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["date", "country"], name="one_holiday_per_day_country")]

    def __str__(self) -> str:
        return f"{self.date} {self.name}"


class ContactMerge(models.Model):
    """The record of two contacts becoming one."""

    survivor = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="merges_in")
    merged = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="merges_out")
    merged_at = models.DateTimeField(default=timezone.now)
    merged_by = models.CharField(max_length=150)
    moved = models.JSONField(default=dict, help_text="What moved, by kind, with counts")

    def __str__(self) -> str:
        return f"{self.merged_id} -> {self.survivor_id}"


def workspace_timezone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.WORKSPACE_TIMEZONE)
