"""The admin sidebar, grouped by the task people come to do rather than by
app label (UNFOLD["SIDEBAR"]). Each link shows only to people whose model
admin would let them open it (the same test Django's app list makes), and a
group with no visible link is hidden, so nobody sees a screen they cannot use."""

from __future__ import annotations

from collections.abc import Callable

from django.apps import apps
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse


def _model_admin_allows(model_label: str) -> Callable[[HttpRequest], bool]:
    def allowed(request: HttpRequest) -> bool:
        model_admin = admin.site._registry.get(apps.get_model(model_label))
        if model_admin is None or not model_admin.has_module_permission(request):
            return False
        return any(model_admin.get_model_perms(request).values())
    return allowed


def _model(title: str, model_label: str, icon: str, query: str = "") -> dict:
    app_label, model_name = model_label.lower().split(".")
    return {
        "title": title, "icon": icon, "permission": _model_admin_allows(model_label),
        "link": lambda request: reverse(f"admin:{app_label}_{model_name}_changelist") + query,
    }


def _page(title: str, url_name: str, icon: str, permission: Callable[[HttpRequest], bool]) -> dict:
    return {"title": title, "icon": icon, "permission": permission, "link": lambda request: reverse(url_name)}


def _has(perm: str) -> Callable[[HttpRequest], bool]:
    return lambda request: request.user.has_perm(perm)


NAVIGATION = [
    {"title": "Start", "items": [
        _page("Your work", "home", "home", lambda request: request.user.is_staff),
        _page("Operations dashboard", "dashboard", "monitoring", _has("analytics.view_dashboard")),
    ]},
    {"title": "Build journeys", "items": [
        _model("Journeys", "journeys.Journey", "route"),
        _model("Journey versions", "journeys.JourneyVersion", "history"),
        _model("Enrollments", "journeys.Enrollment", "group_add"),
        _model("Enrollment imports (CSV)", "journeys.EnrollmentImport", "upload_file"),
        _model("Events", "journeys.Event", "bolt"),
        _model("Entry decisions", "journeys.EntryDecision", "rule"),
        _model("Frequency caps", "journeys.CapRule", "speed"),
    ]},
    {"title": "Write and review templates", "items": [
        _model("Templates", "templates.Template", "article"),
        _page("Review queue", "admin:templates_templateversion_review_queue", "fact_check",
              _has("templates.approve_templateversion")),
        _model("Template versions", "templates.TemplateVersion", "difference"),
    ]},
    {"title": "Support cases", "items": [
        _model("Case queue", "support.SupportCase", "support_agent"),
        _model("Notifications", "support.Notification", "notifications"),
        _model("Teams", "support.Team", "groups"),
        _model("SLA policies", "support.SlaPolicy", "timer"),
        _model("Escalation policies", "support.EscalationPolicy", "trending_up"),
        _model("Keyword rules", "support.KeywordRule", "label"),
        _model("Suppression rules", "support.SuppressionRule", "block"),
        _model("Tasks", "journeys.Task", "task_alt"),
    ]},
    {"title": "Contacts and consent", "items": [
        _model("Contacts", "consent.Contact", "person"),
        _model("Consent records", "consent.ConsentRecord", "verified_user"),
        _model("Suppressions", "consent.Suppression", "do_not_disturb_on"),
        _model("Contact merges", "consent.ContactMerge", "merge"),
        _model("Quiet hours", "consent.QuietHoursRule", "bedtime"),
        _model("Holidays", "consent.Holiday", "event_busy"),
    ]},
    {"title": "Messages and delivery", "items": [
        _model("Outbound messages", "channels.OutboundMessage", "outbox"),
        _model("Send intents", "channels.SendIntent", "send"),
        _model("Inbound messages", "channels.InboundMessage", "move_to_inbox"),
        _model("Provider accounts", "channels.ProviderAccount", "hub"),
    ]},
    {"title": "Compliance", "items": [
        _model("Audit exports", "analytics.AuditExport", "inventory_2"),
        _model("Export downloads", "analytics.AuditExportDownload", "download"),
        _model("Permission changes", "analytics.PermissionChange", "admin_panel_settings"),
    ]},
    {"title": "Integrations", "items": [
        _model("API keys", "project.ApiKey", "key"),
        _model("Webhook endpoints", "channels.WebhookEndpoint", "webhook"),
        _model("Webhook deliveries", "channels.WebhookDelivery", "outgoing_mail"),
        _model("Journey webhook calls", "journeys.WebhookCall", "call_made"),
    ]},
    {"title": "Administration", "items": [
        _model("Users", "auth.User", "manage_accounts"),
        _model("Roles (groups)", "auth.Group", "badge"),
        _model("Periodic tasks", "django_celery_beat.PeriodicTask", "schedule"),
        _model("Login failures", "axes.AccessFailureLog", "lock"),
        _model("Lockouts", "axes.AccessAttempt", "lock_clock"),
    ]},
]


def sidebar_navigation(request: HttpRequest) -> list[dict]:
    return NAVIGATION
