"""What the admin pages of background jobs (audit exports, CSV enrollment
imports) share: the page reloads itself while the job runs, so its progress
bar moves."""

from __future__ import annotations

from django.template.loader import render_to_string


class BackgroundJobAdmin:
    """Mixed into a ModelAdmin whose rows are jobs a worker runs."""

    running_statuses: tuple[str, ...] = ()
    change_form_template = "admin/background_job_change_form.html"

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["auto_refresh"] = obj is not None and obj.status in self.running_statuses
        return super().render_change_form(request, context, add, change, form_url, obj)


def progress_bar(done: int, total: int, unit: str) -> str:
    share = 100 if not total else min(100, round(100 * done / total))
    return render_to_string("unfold/components/progress.html", {
        "title": f"{done:,} of {total:,} {unit}", "description": f"{share} %", "value": share})
