"""Audit exports (request, watch, download, retry), their download log, the
permission-change log, and the journey page's outcomes panel."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from analytics import selectors, services
from analytics.models import AuditExport, AuditExportDownload, ExportStatus, PermissionChange
from config.admin_jobs import BackgroundJobAdmin, progress_bar
from consent.services import actor_label
from journeys import admin as journeys_admin

DOWNLOAD_PERM = "analytics.download_auditexport"


class ReadOnlyAdmin(ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AuditExportForm(forms.ModelForm):
    week = forms.CharField(help_text="ISO week, e.g. 2026-W47 (Monday to Sunday in the workspace timezone)")

    class Meta:
        model = AuditExport
        fields = ["week"]

    def clean_week(self) -> str:
        week = self.cleaned_data["week"].strip().upper()
        try:
            start, _ = services.week_bounds(week)
        except services.ExportError as error:
            raise forms.ValidationError(str(error))
        if start > timezone.now():
            raise forms.ValidationError(f"{week} has not started yet; pick a past or the current week.")
        return week


@admin.register(AuditExport)
class AuditExportAdmin(BackgroundJobAdmin, ModelAdmin):
    form = AuditExportForm
    list_display = ["week", "status", "progress", "scheduled", "requested_by", "requested_at", "finished_at"]
    list_filter = ["status", "scheduled"]
    search_fields = ["week"]
    actions_detail = ["retry"]
    running_statuses = (ExportStatus.PENDING, ExportStatus.RUNNING)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["week", "status", "progress", "scheduled", "requested_by", "requested_at", "attempt", "started_at",
                "finished_at", "error", "files"]

    def get_fields(self, request, obj=None):
        return ["week"] if obj is None else self.get_readonly_fields(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return
        export = services.request_export(form.cleaned_data["week"], requested_by=actor_label(request.user))
        obj.pk, obj.id = export.pk, export.pk
        messages.info(request, "The export runs in the background; this page shows its progress.")

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(reverse("admin:analytics_auditexport_change", args=[obj.pk]))

    @display(description="Progress")
    def progress(self, export: AuditExport) -> str:
        if export.status == ExportStatus.COMPLETE:
            return f"{export.rows_written:,} rows"
        if not export.total_rows:
            return {ExportStatus.PENDING: "waiting for a worker", ExportStatus.RUNNING: "counting the week's rows"}.get(
                export.status, "-")
        return progress_bar(export.rows_written, export.total_rows, "rows")

    @display(description="Files")
    def files(self, export: AuditExport) -> str:
        if export.status != ExportStatus.COMPLETE:
            return "Files appear here once the export is complete."
        entries = [*export.manifest.get("files", []), {"file": "manifest.json", "rows": "", "sha256": ""}]
        rows = [[format_html('<a class="text-primary-600 underline" href="{}">{}</a>',
                             reverse("admin:analytics_auditexport_download", args=[export.pk, entry["file"]]),
                             entry["file"]),
                 f"{entry['rows']:,}" if entry["rows"] != "" else "",
                 # The table is narrow; the whole hash is the title, and manifest.json holds it too.
                 format_html('<code class="text-xs" title="{}">{}</code>', entry["sha256"],
                             f"{entry['sha256'][:16]}…" if entry["sha256"] else "")] for entry in entries]
        return render_to_string("unfold/components/table.html", {"table": {"headers": ["File", "Rows", "SHA-256"],
                                                                          "rows": rows}})

    def get_urls(self):
        return [
            path("<int:object_id>/download/<str:file>", self.admin_site.admin_view(self.download_view),
                 name="analytics_auditexport_download"),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: int, file: str):
        if not request.user.has_perm(DOWNLOAD_PERM):
            raise PermissionDenied("Only compliance reviewers and operators may download audit exports.")
        export = get_object_or_404(AuditExport, pk=object_id)
        try:
            location = services.record_download(export, file, user=request.user,
                                                remote_addr=request.META.get("REMOTE_ADDR"))
        except services.ExportError as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(reverse("admin:analytics_auditexport_change", args=[object_id]))
        return FileResponse(location.open("rb"), as_attachment=True, filename=file)

    def has_retry_permission(self, request, object_id=None) -> bool:
        """Offered on a failed export only: the others are running or done."""
        if not request.user.has_perm("analytics.add_auditexport"):
            return False
        return object_id is None or AuditExport.objects.filter(pk=object_id, status=ExportStatus.FAILED).exists()

    @action(description="Retry", url_path="retry", permissions=["retry"])
    def retry(self, request: HttpRequest, object_id):
        try:
            services.retry_export(get_object_or_404(AuditExport, pk=object_id))
        except services.ExportError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, "Retrying: a new attempt starts in the background.")
        return HttpResponseRedirect(reverse("admin:analytics_auditexport_change", args=[object_id]))


@admin.register(AuditExportDownload)
class AuditExportDownloadAdmin(ReadOnlyAdmin):
    list_display = ["at", "export", "file", "user", "remote_addr"]
    list_select_related = ["export", "user"]
    list_filter = ["file"]


@admin.register(PermissionChange)
class PermissionChangeAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "subject", "what"]
    list_filter = ["action"]
    search_fields = ["actor", "subject", "what"]


def journey_outcomes_panel(journey) -> str:
    outcomes = selectors.journey_outcomes(journey)
    chart = {"labels": [step.key for step in outcomes.funnel], "datasets": [
        {"label": "Reached", "data": [step.entered for step in outcomes.funnel]},
        {"label": "Converted", "data": [step.converted for step in outcomes.funnel]}]}
    return render_to_string("analytics/journey_outcomes.html", {
        "lift": outcomes.lift, "funnel": outcomes.funnel, "convert_p50": outcomes.convert_p50,
        "completed": outcomes.completed, "exited": outcomes.exited, "chart": json.dumps(chart)})


journeys_admin.JOURNEY_PANELS.append(journey_outcomes_panel)
