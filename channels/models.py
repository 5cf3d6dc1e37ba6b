"""The outbox and what happens to it: outbound messages, fallback-ladder
intents, every delivery report, inbound replies, and provider accounts."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KeyTransform

from config.bulk import LoadedQuickly
from consent.models import Channel, MessageClass


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"
    UNDELIVERED = "undelivered", "Undelivered"
    SUPPRESSED = "suppressed", "Suppressed"
    DEFERRED = "deferred", "Deferred"
    CANCELLED = "cancelled", "Cancelled"
    RENDER_FAILED = "render_failed", "Render failed"


S = MessageStatus
# The allowed moves. Provider reports may arrive before our own bookkeeping
# (a "delivered" callback while the row is still `sending`), hence the jumps.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.SENDING, S.CANCELLED, S.SUPPRESSED, S.DEFERRED}),
    S.DEFERRED: frozenset({S.QUEUED, S.DEFERRED, S.SUPPRESSED, S.CANCELLED, S.RENDER_FAILED}),
    S.SENDING: frozenset({S.SENT, S.DELIVERED, S.QUEUED, S.FAILED, S.BOUNCED, S.UNDELIVERED}),
    S.SENT: frozenset({S.DELIVERED, S.FAILED, S.BOUNCED, S.UNDELIVERED}),
    S.DELIVERED: frozenset({S.BOUNCED}),
    S.FAILED: frozenset(),
    S.BOUNCED: frozenset(),
    S.UNDELIVERED: frozenset(),
    S.SUPPRESSED: frozenset(),
    S.CANCELLED: frozenset(),
    S.RENDER_FAILED: frozenset(),
}
# Not yet handed to a provider: these may still be cancelled.
CANCELLABLE = (S.QUEUED, S.DEFERRED)
# The message did not and will not reach the person.
UNSUCCESSFUL = (S.FAILED, S.BOUNCED, S.UNDELIVERED)
HANDED_OVER = (S.SENT, S.DELIVERED, *UNSUCCESSFUL)


class OriginKind(models.TextChoices):
    JOURNEY = "journey", "Journey"
    CASE = "case", "Support case"
    API = "api", "API"
    TEST = "test", "Test send"
    AGENT_REPLY = "agent_reply", "Agent reply"
    SYSTEM = "system", "System (keyword replies)"


class IntentStatus(models.TextChoices):
    ACTIVE = "active", "Trying rungs"
    DELIVERED = "delivered", "Delivered on a rung"
    EXHAUSTED = "exhausted", "No rung succeeded"
    CANCELLED = "cancelled", "Cancelled"


class SendIntent(models.Model):
    """One intent to reach a contact through an ordered fallback ladder
    (push -> sms -> email). Each rung tried leaves an OutboundMessage; at most
    one of them is delivered."""

    contact = models.ForeignKey("consent.Contact", on_delete=models.PROTECT, related_name="send_intents")
    ladder = models.JSONField(help_text="[{channel, template_key, timeout_seconds}, ...]")
    data = models.JSONField(default=dict, blank=True, help_text="Render data, kept to render later rungs")
    idempotency_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=16, choices=IntentStatus, default=IntentStatus.ACTIVE)
    current_rung = models.PositiveSmallIntegerField(default=0)
    next_rung_at = models.DateTimeField(null=True, blank=True, help_text="When the current rung times out")
    origin_kind = models.CharField(max_length=16, choices=OriginKind)
    origin_label = models.CharField(max_length=200, blank=True, default="")
    origin_payload = models.JSONField(default=dict, blank=True, help_text="The Origin the caller gave")
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_rung_at"], condition=Q(status="active"), name="intent_due_idx"),
        ]

    def __str__(self) -> str:
        return f"ladder #{self.pk} ({self.status})"


class OutboundMessage(LoadedQuickly, models.Model):
    """One message to one address on one channel: the outbox row, written in
    the same transaction as the decision that caused it, including decisions
    not to send (suppressed, deferred, render failed) with their reason."""

    # Indexed by msg_contact_idx, which leads with it.
    contact = models.ForeignKey("consent.Contact", on_delete=models.PROTECT, related_name="outbound_messages",
                                db_index=False)
    channel = models.CharField(max_length=16, choices=Channel, blank=True)
    address = models.CharField(max_length=512, blank=True, default="", help_text="Snapshot of the address used")
    template_key = models.CharField(max_length=120, blank=True, default="")
    template_version = models.ForeignKey(
        "templates.TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    locale = models.CharField(max_length=16, blank=True, default="")
    content = models.JSONField(default=dict, blank=True, help_text="The rendered content, as sent")
    render_data = models.JSONField(
        default=dict, blank=True, help_text="Kept only while deferred, to render when released"
    )
    message_class = models.CharField(max_length=16, choices=MessageClass, blank=True)
    origin_kind = models.CharField(max_length=16, choices=OriginKind)
    origin_journey_version_id = models.BigIntegerField(null=True, blank=True)
    origin_step_key = models.CharField(max_length=100, blank=True, default="")
    origin_enrollment_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    origin_case_id = models.BigIntegerField(null=True, blank=True)
    origin_event_id = models.BigIntegerField(null=True, blank=True)
    origin_label = models.CharField(max_length=200, blank=True, default="")
    consent_record = models.ForeignKey(
        "consent.ConsentRecord", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    decision_reason = models.CharField(max_length=64, blank=True, default="", help_text="Why it was sent or not")
    decision_detail = models.CharField(max_length=500, blank=True, default="")
    idempotency_key = models.CharField(max_length=220, unique=True)
    intent = models.ForeignKey(SendIntent, null=True, blank=True, on_delete=models.PROTECT, related_name="messages",
                               db_index=False)
    rung = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Index on the intent's ladder")

    status = models.CharField(max_length=16, choices=MessageStatus, default=MessageStatus.QUEUED)
    status_changed_at = models.DateTimeField()
    deliver_after = models.DateTimeField(null=True, blank=True, help_text="Deferred until")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Queued: not before")
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    first_opened_at = models.DateTimeField(null=True, blank=True)
    first_clicked_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)

    provider = models.CharField(max_length=32, blank=True, default="")
    provider_account = models.ForeignKey(
        "channels.ProviderAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    provider_message_id = models.CharField(max_length=200, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    cost_estimate = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    is_test = models.BooleanField(default=False)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["contact", "-created_at"], name="msg_contact_idx"),
            models.Index(fields=["status", "-created_at"], name="msg_status_idx"),
            models.Index(fields=["channel", "-created_at"], name="msg_channel_idx"),
            models.Index(fields=["message_class", "-created_at"], name="msg_class_idx"),
            models.Index(fields=["origin_kind", "-created_at"], name="msg_origin_idx"),
            models.Index(fields=["provider_message_id"], condition=~Q(provider_message_id=""), name="msg_provider_idx"),
            # The sweepers' work lists: partial, so handled rows leave the index.
            models.Index(fields=["next_attempt_at"], condition=Q(status="queued"), name="msg_queued_idx"),
            models.Index(fields=["sending_at"], condition=Q(status="sending"), name="msg_sending_idx"),
            models.Index(fields=["deliver_after"], condition=Q(status="deferred"), name="msg_deferred_idx"),
            models.Index(fields=["channel", "address", "-created_at"], name="msg_address_idx"),
            # Empty in most rows (a journey's message has no case, and no intent
            # unless it is a ladder's): partial, so such rows cost these indexes
            # nothing when they are written, twice more as their status moves.
            models.Index(fields=["origin_case_id"], condition=Q(origin_case_id__isnull=False), name="msg_case_idx"),
            models.Index(fields=["consent_record"], condition=Q(consent_record__isnull=False), name="msg_consent_idx"),
            models.Index(fields=["intent"], condition=Q(intent__isnull=False), name="msg_intent_idx"),
            models.Index(fields=["provider_account"], condition=Q(provider_account__isnull=False),
                         name="msg_account_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.channel} {self.template_key} ({self.status})"


class DeliveryEvent(models.Model):
    """One status report or engagement event, in the order received, with the
    provider's raw payload (redacted on erasure)."""

    class Kind(models.TextChoices):
        STATUS = "status", "Status change"
        REPORT = "report", "Provider report"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        REPLIED = "replied", "Replied"
        RUNG = "rung", "Ladder step"

    # No database constraint: outbox rows are never deleted, and it cost a query per event written
    # (journeys/models.py says more).
    message = models.ForeignKey(OutboundMessage, on_delete=models.CASCADE, related_name="events", db_constraint=False)
    kind = models.CharField(max_length=16, choices=Kind)
    status = models.CharField(max_length=32, blank=True, default="", help_text="Status reported or moved to")
    old_status = models.CharField(max_length=16, blank=True, default="")
    detail = models.CharField(max_length=500, blank=True, default="")
    provider = models.CharField(max_length=32, blank=True, default="")
    dedupe_key = models.CharField(max_length=250, null=True, blank=True, unique=True)
    payload = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="As the provider says")
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["received_at", "id"]

    def __str__(self) -> str:
        return f"{self.message_id}: {self.kind} {self.status}"


class KeywordAction(models.TextChoices):
    NONE = "", "None (routed as a reply)"
    STOP = "stop", "Stop (revoke)"
    START = "start", "Start (re-grant)"
    HELP = "help", "Help"
    CONFIRM = "confirm", "Confirm opt-in (YES)"


class InboundMessage(models.Model):
    """A reply that came in by SMS or WhatsApp."""

    contact = models.ForeignKey(
        "consent.Contact", null=True, blank=True, on_delete=models.PROTECT, related_name="inbound_messages"
    )
    channel = models.CharField(max_length=16, choices=Channel)
    from_address = models.CharField(max_length=64)
    to_address = models.CharField(max_length=64, blank=True, default="")
    body = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(db_index=True)
    provider = models.CharField(max_length=32, blank=True, default="")
    provider_message_id = models.CharField(max_length=200, unique=True)
    in_reply_to = models.ForeignKey(
        OutboundMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    keyword_action = models.CharField(max_length=16, choices=KeywordAction, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["contact", "-received_at"], name="inbound_contact_idx")]

    def __str__(self) -> str:
        # No address: this string is stored in the admin log and shown in titles to everyone.
        return f"{self.channel} reply #{self.pk}"


class Adapter(models.TextChoices):
    CONSOLE = "console", "Console (records, marks delivered)"
    SMTP = "smtp", "SMTP (Django)"
    ANYMAIL = "anymail", "ESP via django-anymail"
    POSTMARK = "postmark", "Postmark (batch API)"
    TWILIO = "twilio", "Twilio (SMS, WhatsApp, RCS)"
    FCM = "fcm", "Firebase Cloud Messaging"
    WEBPUSH = "webpush", "Web Push (VAPID)"


# The channels each adapter can send; the console adapter records any.
ADAPTER_CHANNELS = {
    Adapter.SMTP: {Channel.EMAIL},
    Adapter.ANYMAIL: {Channel.EMAIL},
    Adapter.POSTMARK: {Channel.EMAIL},
    Adapter.TWILIO: {Channel.SMS, Channel.WHATSAPP, Channel.RCS},
    Adapter.FCM: {Channel.PUSH},
    Adapter.WEBPUSH: {Channel.PUSH},
}


class ProviderAccount(models.Model):
    """Which adapter serves a channel, with which sender. Secrets are never
    stored here: they come from environment variables named by `env_prefix`
    (e.g. TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN for prefix TWILIO)."""

    name = models.CharField(max_length=100, unique=True)
    channel = models.CharField(max_length=16, choices=Channel)
    adapter = models.CharField(max_length=16, choices=Adapter)
    sender = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="From address, sender number, messaging service SID (MG...) or WhatsApp sender",
    )
    env_prefix = models.CharField(
        max_length=50, blank=True, default="", help_text="Environment variable prefix for this account's secrets"
    )
    options = models.JSONField(default=dict, blank=True, help_text="Non-secret options, e.g. ESP name, content SIDs")
    rate_limit_per_second = models.PositiveIntegerField(default=0, help_text="0: no limit; shared by all workers")
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lowest active wins for the channel")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "priority", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_adapter_display()} for {self.channel})"

    def clean(self) -> None:
        channels = ADAPTER_CHANNELS.get(self.adapter)
        if channels is not None and self.channel and self.channel not in channels:
            served = ", ".join(sorted(Channel(c).label for c in channels))
            raise ValidationError({"adapter": f"{self.get_adapter_display()} cannot send {Channel(self.channel).label} "
                                              f"(it sends {served})."})


# --- Outbound webhooks (integrations subscribe endpoints to our events) -----------------


class WebhookEventType(models.TextChoices):
    MESSAGE_SENT = "message.sent", "message.sent"
    MESSAGE_DELIVERED = "message.delivered", "message.delivered"
    MESSAGE_FAILED = "message.failed", "message.failed"
    MESSAGE_BOUNCED = "message.bounced", "message.bounced"
    MESSAGE_REPLIED = "message.replied", "message.replied"
    CONTACT_UNSUBSCRIBED = "contact.unsubscribed", "contact.unsubscribed"
    CONSENT_CHANGED = "consent.changed", "consent.changed"
    ENROLLMENT_CONVERTED = "enrollment.converted", "enrollment.converted"
    ENROLLMENT_EXITED = "enrollment.exited", "enrollment.exited"
    CASE_OPENED = "case.opened", "case.opened"
    CASE_ESCALATED = "case.escalated", "case.escalated"
    CASE_RESOLVED = "case.resolved", "case.resolved"


class WebhookEndpoint(models.Model):
    """An integration's URL that receives the event types it subscribed to,
    signed with its secret (Standard Webhooks). After a rotation the previous
    secret keeps signing too until `previous_secret_expires_at`."""

    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True, default="")
    event_types = models.JSONField(default=list, help_text="Subscribed event types, e.g. [\"message.delivered\"]")
    enabled = models.BooleanField(default=True)
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["url", "pk"]

    def __str__(self) -> str:
        return self.description or self.url

    @property
    def auto_disabled(self) -> bool:
        """Disabled by its failures (an alert), not by an operator."""
        return not self.enabled and self.consecutive_failures > 0 and self.disabled_at is not None


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Succeeded"
    GIVEN_UP = "given_up", "Given up (retries exhausted)"


class WebhookDelivery(models.Model):
    """One event for one endpoint (the outbox row, written with the change
    that caused it). `webhook_id` is the `webhook-id` header: stable across
    retries and replays, so receivers can deduplicate."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    webhook_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=32, choices=WebhookEventType)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=WebhookDeliveryStatus, default=WebhookDeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="Last handed to the broker")
    claimed_at = models.DateTimeField(null=True, blank=True)
    replay_requested_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # Only the due state is indexed: claimed rows leave the index (DESIGN.md's measured claim limit).
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due",
                         condition=Q(status=WebhookDeliveryStatus.PENDING)),
            models.Index(fields=["claimed_at"], name="webhook_delivery_sending",
                         condition=Q(status=WebhookDeliveryStatus.SENDING)),
            models.Index(fields=["endpoint", "-id"], name="webhook_delivery_endpoint"),
            # The hourly prune finds the finished rows past retention.
            models.Index(fields=["finished_at"], name="webhook_delivery_finished",
                         condition=Q(finished_at__isnull=False)),
            # An erasure renames the contact in the payloads that name it.
            models.Index(KeyTransform("contact_external_id", KeyTransform("data", "payload")),
                         name="webhook_delivery_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.webhook_id}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery: when, what came back, how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    succeeded = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")
    duration_ms = models.PositiveIntegerField()
    trigger = models.CharField(max_length=160, default="scheduled", help_text="scheduled, or who replayed it")

    class Meta:
        ordering = ["-attempted_at", "-pk"]
        indexes = [models.Index(fields=["endpoint", "-attempted_at"], name="webhook_attempt_endpoint")]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"
