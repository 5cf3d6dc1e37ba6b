"""Where each role lands at /admin/: operators on the operations dashboard,
agents on their case queue, marketers and reviewers on a "Your work" page of
what waits for them. Each section shows only when the person holds the
permission its links need, so nothing on the page is a dead end."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from config import roles

RECENT = 8


@dataclass(frozen=True)
class Row:
    label: str
    detail: str
    url: str


@dataclass(frozen=True)
class Section:
    title: str
    empty: str  # what the section says when it has no rows
    rows: list[Row]
    actions: list[tuple[str, str]] = field(default_factory=list)  # (label, url) links under the rows


def home_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    if user.is_superuser or user.groups.filter(name=roles.OPERATOR).exists():
        return admin.site.index(request)
    if user.has_perm("support.view_supportcase") and not user.has_perm("journeys.view_journey"):
        return HttpResponseRedirect(reverse("admin:support_supportcase_changelist"))
    sections = work_sections(user)
    if not sections:
        return admin.site.index(request)
    context = {**admin.site.each_context(request), "title": "Your work", "sections": sections,
               "may_see_dashboard": user.has_perm("analytics.view_dashboard")}
    return TemplateResponse(request, "admin/home.html", context)


def work_sections(user) -> list[Section]:
    """What waits for this person, one section per kind of work."""
    sections = []
    if user.has_perm("journeys.view_journey"):
        sections += _journey_sections(user)
    if user.has_perm("templates.view_templateversion"):
        sections += _template_sections(user)
    if user.has_perm("analytics.view_auditexport"):
        sections.append(_audit_export_section(user))
    return sections


def _journey_sections(user) -> list[Section]:
    from journeys.models import JourneyStatus, JourneyVersion, VersionStatus
    from journeys.selectors import journeys_for_user

    visible = journeys_for_user(user)
    change = "admin:journeys_journey_change"
    sections = []
    if not user.has_perm("journeys.approve_journeyversion"):
        mine = visible.filter(owner=user).select_related("live_version").order_by("-updated_at")[:RECENT]
        drafts = (visible.filter(Q(status=JourneyStatus.DRAFT) | ~Q(draft_editors=[]))
                  .filter(Q(owner=user) | Q(draft_editors__contains=[user.get_username()]))
                  .order_by("-updated_at")[:RECENT])
        actions = ([("New journey", reverse("admin:journeys_journey_add"))]
                   if user.has_perm("journeys.add_journey") else [])
        sections.append(Section(
            title="Your journeys", empty="You own no journey yet. Start one with New journey.",
            actions=actions + [("All journeys", reverse("admin:journeys_journey_changelist"))],
            rows=[Row(j.name, f"{j.get_status_display()} · live v{j.live_version.number}"
                      if j.live_version else j.get_status_display(), reverse(change, args=[j.pk])) for j in mine],
        ))
        sections.append(Section(
            title="Journey drafts", empty="No unpublished journey changes.",
            rows=[Row(j.name, "draft with unpublished changes", reverse(change, args=[j.pk])) for j in drafts],
        ))
    else:
        waiting = (JourneyVersion.objects.filter(journey__in=visible, status=VersionStatus.IN_REVIEW)
                   .select_related("journey").order_by("created_at")[:RECENT])
        sections.append(Section(
            title="Journey versions waiting for review", empty="No journey version waits for review.",
            actions=[("All journey versions", reverse("admin:journeys_journeyversion_changelist"))],
            rows=[Row(str(v), f"by {v.created_by or '—'}, since {v.created_at:%d %b %H:%M}",
                      reverse("admin:journeys_journeyversion_change", args=[v.pk])) for v in waiting],
        ))
    return sections


def _template_sections(user) -> list[Section]:
    from templates.models import VersionStatus
    from templates.selectors import review_queue, versions_for_user

    change = "admin:templates_templateversion_change"
    if user.has_perm("templates.approve_templateversion"):
        rows = [row for row in review_queue(user) if row["may_review"]][:RECENT]
        return [Section(
            title="Templates waiting for your review", empty="Nothing waits for your review.",
            actions=[("Review queue", reverse("admin:templates_templateversion_review_queue"))],
            rows=[Row(f"{row['version']} — {row['template'].name}",
                      f"by {row['author'] or '—'}, since {row['submitted_at']:%d %b %H:%M}",
                      reverse(change, args=[row["version"].pk])) for row in rows],
        )]
    drafts = (versions_for_user(user).filter(author=user, status__in=[VersionStatus.DRAFT,
                                                                      VersionStatus.CHANGES_REQUESTED])
              .order_by("-pk")[:RECENT])
    actions = ([("New template", reverse("admin:templates_template_add"))]
               if user.has_perm("templates.add_template") else [])
    return [Section(
        title="Your template drafts", empty="No template draft of yours is open.",
        actions=actions + [("All templates", reverse("admin:templates_template_changelist"))],
        rows=[Row(f"{v} — {v.template.name}", v.get_status_display(), reverse(change, args=[v.pk])) for v in drafts],
    )]


def _audit_export_section(user) -> Section:
    from analytics.models import AuditExport

    recent = AuditExport.objects.order_by("-requested_at")[:RECENT]
    return Section(
        title="Recent audit exports", empty="No audit export yet; Beat makes one for each week that ends.",
        actions=[("All audit exports", reverse("admin:analytics_auditexport_changelist"))],
        rows=[Row(f"Week {e.week}", e.get_status_display(), reverse("admin:analytics_auditexport_change", args=[e.pk]))
              for e in recent],
    )
