"""Admin: the message log (fast on millions of rows: no full count, indexed
filters), provider accounts, inbound replies, ladders, and the test-send page."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from guardian.shortcuts import get_objects_for_user
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.enums import ActionVariant

from channels import outbound_webhooks, services
from channels.models import (
    CANCELLABLE,
    DeliveryEvent,
    InboundMessage,
    OutboundMessage,
    ProviderAccount,
    SendIntent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)
from config.search import ExactSearch
from consent.admin_masking import PersonalDataAdminMixin
from consent.masking import mask_text
from templates.models import TemplateVersion

COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows (a bounded subquery) instead of the whole
    table; past that the admin pages through the first COUNT_CAP."""

    @cached_property
    def count(self) -> int:
        return self.object_list.values("pk")[:COUNT_CAP].count()


class ReadOnlyAdmin(ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class TimelineInline(PersonalDataAdminMixin, TabularInline):
    text_fields = ("detail",)  # a provider's bounce text often quotes the address
    model = DeliveryEvent
    extra = 0
    can_delete = False
    fields = ["received_at", "kind", "old_status", "status", "detail", "provider", "occurred_at"]
    readonly_fields = fields
    ordering = ["received_at", "id"]
    verbose_name_plural = "Timeline"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OutboundMessage)
class OutboundMessageAdmin(PersonalDataAdminMixin, ExactSearch, ReadOnlyAdmin):
    address_fields = ("address",)
    text_fields = ("error", "decision_detail")
    list_display = ["id", "created_at", "contact", "channel", "template_key", "message_class", "origin_kind",
                    "status", "decision_reason", "is_test"]
    list_filter = ["channel", "status", "message_class", "origin_kind", "is_test", "created_at"]
    search_fields = ["=contact__external_id", "=provider_message_id", "=idempotency_key"]
    list_select_related = ["contact"]
    # Rendering the rows is the page's cost (Unfold renders each cell through
    # template tags): 50 rows instead of Django's 100 about halves it.
    list_per_page = 50
    show_full_result_count = False
    paginator = CappedCountPaginator
    ordering = ["-id"]
    inlines = [TimelineInline]
    actions_list = ["open_test_send"]
    actions_detail = ["cancel_message"]
    fieldsets = [
        (None, {"fields": ["contact", "channel", "address", "status", "is_test", "created_at", "status_changed_at"]}),
        ("Why", {"fields": ["message_class", "decision_reason", "decision_detail", "consent_record", "origin",
                            "ladder"]}),
        ("Content", {"fields": ["template_key", "template_version", "locale", "rendered_content"]}),
        ("Delivery", {"fields": ["provider", "provider_account", "provider_message_id", "attempts", "error",
                                 "deliver_after", "next_attempt_at", "sent_at", "delivered_at", "failed_at",
                                 "first_opened_at", "first_clicked_at", "replied_at", "cost_estimate"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [f for section in self.fieldsets for f in section[1]["fields"]]

    @display(description="Origin")
    def origin(self, message: OutboundMessage) -> str:
        parts = [message.get_origin_kind_display(), message.origin_label]
        ids = [("journey version", message.origin_journey_version_id), ("step", message.origin_step_key),
               ("enrollment", message.origin_enrollment_id), ("case", message.origin_case_id),
               ("event", message.origin_event_id)]
        parts += [f"{name} {value}" for name, value in ids if value]
        return " · ".join(p for p in parts if p)

    @display(description="Rendered content")
    def rendered_content(self, message: OutboundMessage) -> str:
        rows = ((key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
                for key, value in (message.content or {}).items() if key != "html")
        table = format_html_join("", "<tr><th style='padding:2px 8px;text-align:left;vertical-align:top'>{}</th>"
                                 "<td style='white-space:pre-wrap'>{}</td></tr>", rows)
        html = (message.content or {}).get("html")
        # Email HTML is shown in a sandboxed frame, never inline in the admin.
        frame = format_html("<iframe sandbox srcdoc='{}' style='width:100%;height:320px;border:1px solid #ddd'>"
                            "</iframe>", html) if html else ""
        return format_html("<table>{}</table>{}", table, frame)

    @display(description="Fallback ladder")
    def ladder(self, message: OutboundMessage) -> str:
        if not message.intent_id:
            return "-"
        intent = message.intent
        tried = {m.rung: m for m in intent.messages.all()}
        rows = []
        for index, rung in enumerate(intent.ladder):
            tried_message = tried.get(index)
            outcome = (f"#{tried_message.pk} {tried_message.status}: {tried_message.decision_reason}"
                       if tried_message else "not tried")
            timeout = f"{rung.get('timeout_seconds')}s" if rung.get("timeout_seconds") else "until failure"
            rows.append((index + 1, rung["channel"], rung["template_key"], timeout, outcome))
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html("<p>Ladder #{} ({})</p><table>{}</table>", intent.pk, intent.get_status_display(), body)

    def has_cancel_permission(self, request: HttpRequest, object_id=None) -> bool:
        return request.user.has_perm("channels.change_outboundmessage")

    def has_test_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.add_outboundmessage")

    @action(description="Cancel (if not yet handed to a provider)", url_path="cancel", permissions=["cancel"],
            variant=ActionVariant.DANGER)
    def cancel_message(self, request: HttpRequest, object_id):
        message = get_object_or_404(OutboundMessage, pk=object_id)
        if message.status not in CANCELLABLE:
            messages.error(request, f"Message {message.pk} is {message.status}: it can no longer be cancelled.")
        else:
            services.messages_cancel(queryset_filter={"pk": message.pk},
                                     reason=f"cancelled in admin by {request.user.get_username()}")
            messages.success(request, f"Message {message.pk} cancelled.")
        return HttpResponseRedirect(reverse("admin:channels_outboundmessage_change", args=[object_id]))

    @action(description="Test send", url_path="open-test-send", permissions=["test_send"])
    def open_test_send(self, request: HttpRequest):
        return HttpResponseRedirect(reverse("admin:channels_test_send"))

    def get_urls(self):
        custom = [path("test-send/", self.admin_site.admin_view(self.test_send_view), name="channels_test_send")]
        return custom + super().get_urls()

    def test_send_view(self, request: HttpRequest):
        if not self.has_test_send_permission(request):
            raise PermissionDenied
        form = TestSendForm(request.POST or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            try:
                message = services.message_test_send(
                    version=form.cleaned_data["version"], address=form.cleaned_data["address"],
                    data=form.cleaned_data["data"] or None, actor=request.user,
                )
            except services.ChannelsError as error:
                form.add_error(None, str(error))
            else:
                level = messages.SUCCESS if message.status == "queued" else messages.WARNING
                messages.add_message(request, level, f"Test message #{message.pk}: {message.status} "
                                                     f"({message.decision_reason}).")
                return HttpResponseRedirect(reverse("admin:channels_outboundmessage_change", args=[message.pk]))
        context = {**self.admin_site.each_context(request), "title": "Test send", "form": form,
                   "opts": self.model._meta, "addresses": settings.TEMPLATES_INTERNAL_SEED_ADDRESSES}
        return TemplateResponse(request, "channels/admin/test_send.html", context)


class TestSendForm(forms.Form):
    version = forms.ModelChoiceField(queryset=TemplateVersion.objects.none(),
                                     help_text="A draft or approved version of a template you may see")
    address = forms.ChoiceField(choices=[], help_text="Only the internal seed addresses in settings")
    data = forms.JSONField(required=False, help_text='Event properties, e.g. {"event": {"amount": "12.00"}}')

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        versions = TemplateVersion.objects.filter(status__in=services.TEST_SENDABLE).select_related("template")
        if not user.has_perm("templates.view_template"):
            allowed = get_objects_for_user(user, "templates.view_template", accept_global_perms=False)
            versions = versions.filter(template__in=allowed)
        self.fields["version"].queryset = versions.order_by("template__key", "-id")
        self.fields["address"].choices = [(a, a) for a in settings.TEMPLATES_INTERNAL_SEED_ADDRESSES]

    def clean_data(self):
        value = self.cleaned_data["data"]
        if value not in (None, "") and not isinstance(value, dict):
            raise forms.ValidationError('Give an object, e.g. {"event": {"amount": "12.00"}}.')
        return value


@admin.register(ProviderAccount)
class ProviderAccountAdmin(ModelAdmin):
    list_display = ["name", "channel", "adapter", "sender", "priority", "rate_limit_per_second", "active"]
    list_filter = ["channel", "adapter", "active"]
    fields = ["name", "channel", "adapter", "sender", "env_prefix", "options", "rate_limit_per_second", "priority",
              "active"]


@admin.register(InboundMessage)
class InboundMessageAdmin(PersonalDataAdminMixin, ExactSearch, ReadOnlyAdmin):
    address_fields = ("from_address",)
    text_fields = ("payload", "body")
    list_display = ["received_at", "channel", "from_address", "contact", "keyword_action", "short_body"]
    list_filter = ["channel", "keyword_action", "received_at"]
    search_fields = ["=contact__external_id", "=from_address", "=provider_message_id"]
    list_select_related = ["contact"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    @display(description="Body")
    def short_body(self, inbound: InboundMessage) -> str:
        # A preview, masked for everyone (it has no request to ask); the change page shows holders the whole body.
        return mask_text(inbound.body)[:80]  # masked before cutting: a cut address would slip past


@admin.register(SendIntent)
class SendIntentAdmin(ExactSearch, ReadOnlyAdmin):
    list_display = ["id", "created_at", "contact", "origin_kind", "status", "current_rung", "next_rung_at"]
    list_filter = ["status", "origin_kind", "created_at"]
    search_fields = ["=contact__external_id", "=idempotency_key"]
    list_select_related = ["contact"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    readonly_fields = ["contact", "ladder", "status", "current_rung", "next_rung_at", "origin_kind", "origin_label",
                       "created_at", "finished_at", "rungs_tried"]
    exclude = ["data", "origin_payload", "idempotency_key"]

    @display(description="Rungs tried")
    def rungs_tried(self, intent: SendIntent) -> str:
        rows = ((m.rung, m.channel, m.status, m.decision_reason,
                 reverse("admin:channels_outboundmessage_change", args=[m.pk]), m.pk)
                for m in intent.messages.order_by("rung"))
        return format_html("<table>{}</table>", format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href='{}'>#{}</a></td></tr>", rows))


# --- Outbound webhooks ------------------------------------------------------------------


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(choices=WebhookEventType.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "event_types"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("url") and cleaned.get("event_types"):
            outbound_webhooks.endpoint_check(url=cleaned["url"], event_types=cleaned["event_types"])
        return cleaned


def _endpoint_alert(request: HttpRequest) -> None:
    disabled = [e for e in WebhookEndpoint.objects.filter(enabled=False, disabled_at__isnull=False) if e.auto_disabled]
    if disabled:
        messages.warning(request, format_html(
            "Disabled after repeated failures: {}. Fix the receiver, then use Enable.",
            ", ".join(str(e) for e in disabled)))


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "description", "subscribed", "state", "last_success_at", "last_failure_at",
                    "consecutive_failures"]
    list_filter = ["enabled"]
    readonly_fields = ["masked_secret", "state", "consecutive_failures", "last_success_at", "last_failure_at",
                       "disabled_at", "disabled_reason", "previous_secret_expires_at", "created_at"]
    actions = ["enable_selected", "disable_selected"]
    actions_detail = ["rotate_secret", "enable", "disable"]

    @display(description="Events")
    def subscribed(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.event_types)

    @display(description="Status", label={"enabled": "success", "disabled": "info", "FAILING: disabled": "danger"})
    def state(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.enabled:
            return "enabled"
        return "FAILING: disabled" if endpoint.auto_disabled else "disabled"

    @display(description="Signing secret")
    def masked_secret(self, endpoint: WebhookEndpoint) -> str:
        if not endpoint.secret:
            return "(generated on save)"
        return format_html("<details><summary>{}…{}</summary><code>{}</code></details>",
                           endpoint.secret[:8], endpoint.secret[-4:], endpoint.secret)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        _endpoint_alert(request)
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form, change: bool) -> None:
        obj.event_types = sorted(set(form.cleaned_data["event_types"]))
        if not change:
            obj.secret = outbound_webhooks.secret_generate()
        super().save_model(request, obj, form, change)

    def _endpoint_action(self, request: HttpRequest, object_id, service, done: str):
        endpoint = get_object_or_404(WebhookEndpoint, pk=object_id)
        service(endpoint)
        messages.success(request, done)
        return HttpResponseRedirect(reverse("admin:channels_webhookendpoint_change", args=[object_id]))

    @action(description="Rotate secret", url_path="rotate-secret", permissions=["change"],
            variant=ActionVariant.WARNING)
    def rotate_secret(self, request: HttpRequest, object_id):
        return self._endpoint_action(
            request, object_id, lambda e: outbound_webhooks.endpoint_rotate_secret(endpoint=e),
            f"New secret issued; the previous one also signs for {settings.WEBHOOKS_ROTATION_GRACE_HOURS} hours.")

    @action(description="Enable", url_path="enable", permissions=["change"])
    def enable(self, request: HttpRequest, object_id):
        return self._endpoint_action(request, object_id, lambda e: outbound_webhooks.endpoint_enable(endpoint=e),
                                     "Enabled; waiting deliveries go out now.")

    @action(description="Disable", url_path="disable", permissions=["change"], variant=ActionVariant.DANGER)
    def disable(self, request: HttpRequest, object_id):
        who = request.user.get_username()
        return self._endpoint_action(
            request, object_id, lambda e: outbound_webhooks.endpoint_disable(endpoint=e, reason=f"disabled by {who}"),
            "Disabled; new deliveries wait until it is enabled again.")

    @action(description="Enable selected endpoints", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset):
        count = sum(outbound_webhooks.endpoint_enable(endpoint=e) for e in queryset)
        messages.success(request, f"{count} endpoint(s) enabled.")

    @action(description="Disable selected endpoints", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset):
        who = request.user.get_username()
        count = sum(outbound_webhooks.endpoint_disable(endpoint=e, reason=f"disabled by {who}") for e in queryset)
        messages.success(request, f"{count} endpoint(s) disabled.")


class WebhookAttemptInline(TabularInline):
    model = WebhookAttempt
    fk_name = "delivery"
    fields = ["attempted_at", "succeeded", "status_code", "error", "response_excerpt", "duration_ms", "trigger"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["webhook_id", "endpoint", "event_type", "status", "attempts", "next_attempt_at", "created_at"]
    list_filter = ["endpoint", "status", "event_type"]
    search_fields = ["=webhook_id"]
    list_select_related = ["endpoint"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    readonly_fields = ["webhook_id", "endpoint", "event_type", "status", "attempts", "next_attempt_at", "created_at",
                       "finished_at", "payload_json"]
    exclude = ["payload", "enqueued_at", "claimed_at", "replay_requested_by"]
    inlines = [WebhookAttemptInline]
    actions = ["replay_selected"]
    actions_detail = ["replay"]

    @display(description="Payload")
    def payload_json(self, delivery: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(delivery.payload, indent=2, sort_keys=True))

    def changelist_view(self, request: HttpRequest, extra_context=None):
        _endpoint_alert(request)
        return super().changelist_view(request, extra_context)

    def has_replay_permission(self, request: HttpRequest, object_id=None) -> bool:
        return request.user.has_perm("channels.change_webhookdelivery")

    def _replay(self, request: HttpRequest, deliveries) -> int:
        try:
            count = outbound_webhooks.deliveries_replay(deliveries=deliveries, actor=request.user.get_username())
        except outbound_webhooks.WebhookError as error:
            messages.error(request, str(error))
            return 0
        messages.success(request, f"{count} delivery(ies) replayed: a new attempt now, same webhook-id.")
        return count

    @action(description="Replay now", url_path="replay", permissions=["replay"])
    def replay(self, request: HttpRequest, object_id):
        self._replay(request, [get_object_or_404(WebhookDelivery, pk=object_id)])
        return HttpResponseRedirect(reverse("admin:channels_webhookdelivery_change", args=[object_id]))

    @action(description="Replay selected deliveries now", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset):
        self._replay(request, list(queryset))
