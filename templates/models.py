"""Message templates: a stable key per template, numbered versions with locale
variants and declared variables, the four-eyes approval workflow and its audit
trail. Only an approved version is ever rendered for sending (DESIGN.md
invariant 3); approved content is immutable, enforced here in save()."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from consent.models import Channel, MessageClass


class ImmutableVersionError(Exception):
    """Raised on any attempt to change the content of a version that is no
    longer a draft (in review, approved or archived)."""


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    ARCHIVED = "archived", "Archived"


# The whole workflow in one place: status -> statuses it may move to.
TRANSITIONS: dict[str, frozenset[str]] = {
    VersionStatus.DRAFT: frozenset({VersionStatus.IN_REVIEW}),
    VersionStatus.IN_REVIEW: frozenset({VersionStatus.APPROVED, VersionStatus.CHANGES_REQUESTED}),
    VersionStatus.CHANGES_REQUESTED: frozenset({VersionStatus.IN_REVIEW}),
    VersionStatus.APPROVED: frozenset({VersionStatus.ARCHIVED}),
    VersionStatus.ARCHIVED: frozenset(),
}
# Content may change only while the author still holds the version.
EDITABLE_STATUSES = frozenset({VersionStatus.DRAFT, VersionStatus.CHANGES_REQUESTED})


class WhatsAppStatus(models.TextChoices):
    """The provider's (Meta's, via Twilio) approval of a WhatsApp template."""

    NOT_SUBMITTED = "", "Not submitted / free-form"
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    PAUSED = "paused", "Paused"


class WhatsAppCategory(models.TextChoices):
    UTILITY = "utility", "Utility"
    MARKETING = "marketing", "Marketing"
    AUTHENTICATION = "authentication", "Authentication"


class VariableType(models.TextChoices):
    STRING = "string", "Text"
    NUMBER = "number", "Number"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    URL = "url", "URL"
    MONEY = "money", "Money amount"


class Template(models.Model):
    """A message template, addressed by its stable `key` from journeys and the
    API. Its words live in versions; `live_version` is the one approved version
    that sends go out with."""

    key = models.SlugField(max_length=100, unique=True, help_text="Stable key used by journeys and the API")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    message_class = models.CharField(max_length=16, choices=MessageClass)
    channel = models.CharField(max_length=16, choices=Channel)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_templates"
    )
    team = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="templates",
        help_text="The team (group) that may edit this template",
    )
    live_version = models.OneToOneField(
        "TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="live_for"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class TemplateVersion(models.Model):
    """One numbered revision of a template's content (all its locale variants
    and declared variables move together). Editable while draft or changes
    requested; frozen from submission on, so what was approved is what sends."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=VersionStatus, default=VersionStatus.DRAFT, db_index=True)
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Email sender profile (per version, not per locale).
    sender_from_email = models.EmailField(blank=True, default="")
    sender_from_name = models.CharField(max_length=200, blank=True, default="")
    sender_reply_to = models.EmailField(blank=True, default="")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="authored_template_versions"
    )
    # Everyone who changed the content: none of them may approve it (four eyes).
    editors = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="edited_template_versions")
    content_hash = models.CharField(max_length=64, blank=True, default="", help_text="SHA-256 of what was approved")
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    # Fields that make up the content; frozen once the version leaves the author.
    CONTENT_FIELDS = ("sender_from_email", "sender_from_name", "sender_reply_to")

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="template_version_number_unique")]
        indexes = [
            models.Index(fields=["submitted_at"], condition=Q(status="in_review"), name="template_review_queue_idx")
        ]
        permissions = [("approve_templateversion", "Can approve template versions (compliance review)")]

    def __str__(self) -> str:
        return f"{self.template.key} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            stored = TemplateVersion.objects.filter(pk=self.pk).values(*self.CONTENT_FIELDS, "status").first()
            if stored and stored["status"] not in EDITABLE_STATUSES:
                changed = [f for f in self.CONTENT_FIELDS if stored[f] != getattr(self, f)]
                if changed:
                    raise ImmutableVersionError(
                        f"{self} is {stored['status']}: its content cannot change (changed: {', '.join(changed)}). "
                        "Edit it as a new draft version."
                    )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.status not in EDITABLE_STATUSES:
            raise ImmutableVersionError(f"{self} is {self.status} and cannot be deleted; archive it instead.")
        return super().delete(*args, **kwargs)

    @property
    def is_editable(self) -> bool:
        return self.status in EDITABLE_STATUSES


class _FrozenWithVersion(models.Model):
    """Rows that belong to a version's content: writable only while the version is editable."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self._check_version_editable()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._check_version_editable()
        return super().delete(*args, **kwargs)

    def _check_version_editable(self) -> None:
        version_ids = {self.version_id}
        if not self._state.adding and self.pk is not None:
            # The row may be moving: re-pointing it from an approved version to a draft would take
            # words out of the approved version, so the version it belongs to now must be editable too.
            stored = type(self).objects.filter(pk=self.pk).values_list("version_id", flat=True).first()
            if stored is not None:
                version_ids.add(stored)
        frozen = (
            TemplateVersion.objects.filter(pk__in=version_ids).exclude(status__in=EDITABLE_STATUSES)
            .values_list("pk", "status").order_by("pk").first()
        )
        if frozen is not None:
            raise ImmutableVersionError(
                f"Version {frozen[0]} is {frozen[1]}: its content cannot change. Edit it as a new draft version."
            )


class TemplateVariant(_FrozenWithVersion):
    """The words of a version in one locale. Which fields matter depends on the
    template's channel; the rest stay empty."""

    version = models.ForeignKey(TemplateVersion, on_delete=models.CASCADE, related_name="variants")
    locale = models.CharField(max_length=16, help_text="BCP 47, e.g. en, pt, pt-BR")
    # email
    subject = models.CharField(max_length=300, blank=True, default="")
    preheader = models.CharField(max_length=300, blank=True, default="")
    html_body = models.TextField(blank=True, default="")
    text_body = models.TextField(blank=True, default="", help_text="Derived from the HTML when left empty")
    # sms, push, whatsapp (as the customer sees it / free-form reply), in_app
    title = models.CharField(max_length=200, blank=True, default="")
    body = models.TextField(blank=True, default="")
    # push
    deep_link = models.CharField(max_length=500, blank=True, default="")
    data = models.JSONField(default=dict, blank=True, help_text="Push data payload; values may use variables")
    # whatsapp
    wa_template_name = models.CharField(
        max_length=200, blank=True, default="", help_text="Provider-approved template name; empty for free-form text"
    )
    wa_content_sid = models.CharField(max_length=64, blank=True, default="", help_text="Twilio Content SID (HX…)")
    wa_language = models.CharField(max_length=16, blank=True, default="")
    wa_category = models.CharField(max_length=16, choices=WhatsAppCategory, blank=True, default="")
    wa_parameters = models.JSONField(
        default=list, blank=True,
        help_text="Provider parameters in order, each an expression such as contact.first_name",
    )
    # The provider's verdict is not our content: the refresh command updates it on frozen
    # versions.
    wa_provider_status = models.CharField(max_length=16, choices=WhatsAppStatus, blank=True, default="")
    wa_status_checked_at = models.DateTimeField(null=True, blank=True)
    wa_rejection_reason = models.CharField(max_length=500, blank=True, default="")
    # rcs
    description = models.TextField(blank=True, default="")
    media_url = models.CharField(max_length=500, blank=True, default="")
    suggestions = models.JSONField(
        default=list, blank=True, help_text='[{"type": "reply|url|dial", "text": "...", "value": "..."}]'
    )
    fallback_text = models.TextField(blank=True, default="", help_text="Plain SMS sent where RCS is unavailable")
    # in_app
    cta_label = models.CharField(max_length=100, blank=True, default="")
    cta_url = models.CharField(max_length=500, blank=True, default="")
    # sms, computed on save from the body as written (variables widen it at send time)
    sms_encoding = models.CharField(max_length=8, blank=True, default="")
    sms_segments = models.PositiveSmallIntegerField(default=0)

    history = HistoricalRecords()

    CONTENT_FIELDS = (
        "locale", "subject", "preheader", "html_body", "text_body", "title", "body", "deep_link", "data",
        "wa_template_name", "wa_content_sid", "wa_language", "wa_category", "wa_parameters", "description",
        "media_url", "suggestions", "fallback_text", "cta_label", "cta_url",
    )
    PROVIDER_FIELDS = ("wa_provider_status", "wa_status_checked_at", "wa_rejection_reason")

    class Meta:
        ordering = ["version", "locale"]
        constraints = [models.UniqueConstraint(fields=["version", "locale"], name="template_variant_locale_unique")]

    def __str__(self) -> str:
        return f"{self.version} [{self.locale}]"

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and set(update_fields) <= set(self.PROVIDER_FIELDS):
            # Provider status is the provider's fact, not approved content.
            return models.Model.save(self, *args, **kwargs)
        if self.version.template.channel == Channel.SMS:
            from templates.sms import sms_info

            info = sms_info(self.body)
            self.sms_encoding, self.sms_segments = info.encoding, info.segments
        return super().save(*args, **kwargs)


class TemplateVariable(_FrozenWithVersion):
    """A variable a version declares: its dotted path (contact.first_name), its
    type, whether it must be present, and the value used when it is not."""

    version = models.ForeignKey(TemplateVersion, on_delete=models.CASCADE, related_name="variables")
    path = models.CharField(
        max_length=100, help_text="Dotted path, e.g. contact.first_name or event.appointment_at"
    )
    type = models.CharField(max_length=10, choices=VariableType, default=VariableType.STRING)
    required = models.BooleanField(default=False)
    fallback = models.CharField(max_length=200, blank=True, default="", help_text='Used when missing, e.g. "there"')
    locale_fallbacks = models.JSONField(
        default=dict, blank=True, help_text='Fallback per locale, e.g. {"pt": "cliente"}; the locale chain applies'
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["version", "path"]
        constraints = [models.UniqueConstraint(fields=["version", "path"], name="template_variable_path_unique")]

    def __str__(self) -> str:
        return self.path


class VersionTransition(models.Model):
    """One step of the approval workflow: who moved which version from what to
    what, when, why, and the hash of the content at that moment. Append-only."""

    version = models.ForeignKey(TemplateVersion, on_delete=models.PROTECT, related_name="transitions")
    from_status = models.CharField(max_length=20, choices=VersionStatus)
    to_status = models.CharField(max_length=20, choices=VersionStatus)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    actor_label = models.CharField(max_length=150, blank=True, default="")
    comment = models.TextField(blank=True, default="")
    content_hash = models.CharField(max_length=64)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.version}: {self.from_status} -> {self.to_status}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableVersionError("Workflow transitions are append-only.")
        super().save(*args, **kwargs)


class LiveVersionChange(models.Model):
    """An audited change of which approved version is live (approval or rollback)."""

    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="live_changes")
    from_version = models.ForeignKey(
        TemplateVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_version = models.ForeignKey(TemplateVersion, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    actor_label = models.CharField(max_length=150, blank=True, default="")
    comment = models.TextField(blank=True, default="")
    is_rollback = models.BooleanField(default=False)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.template}: live {self.from_version_id} -> {self.to_version_id}"
