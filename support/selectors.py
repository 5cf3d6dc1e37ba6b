"""Reads of the support app that need thought: who may see which case
(guardian), calendars, and the contact's message history for the case page
(keyset pages over outbound and inbound messages, a fixed number of queries
whatever the history's size)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from guardian.shortcuts import get_objects_for_user

from channels.models import MessageStatus, OriginKind
from consent.models import Contact
from support.business_hours import Calendar
from support.models import ACTIVE_STATUSES, SupportCase, Team, TeamHoliday, WorkingHours

# --- Who sees what ---------------------------------------------------------------


def sees_all_cases(user: User) -> bool:
    """Superusers, holders of support.view_all_cases (operators) and team supervisors."""
    if not user.is_active:
        return False
    if user.is_superuser or user.has_perm("support.view_all_cases"):
        return True
    return Team.objects.filter(supervisor=user).exists()


def cases_visible_to(user: User, queryset: QuerySet[SupportCase] | None = None) -> QuerySet[SupportCase]:
    """Every queryset of cases at an edge (admin, API) goes through here:
    all for supervisors and operators, else the cases the user or one of
    their groups (their team) holds a guardian view grant on."""
    queryset = queryset if queryset is not None else SupportCase.objects.all()
    if not user.is_authenticated or not user.is_active:
        return queryset.none()
    if sees_all_cases(user):
        return queryset
    return get_objects_for_user(
        user, "support.view_supportcase", klass=queryset, accept_global_perms=False, with_superuser=False
    )


def can_view_case(user: User, case: SupportCase) -> bool:
    return user.is_active and (sees_all_cases(user) or user.has_perm("support.view_supportcase", case))


def can_change_case(user: User, case: SupportCase) -> bool:
    if not user.is_active:
        return False
    if sees_all_cases(user):
        return user.has_perm("support.change_supportcase")
    return user.has_perm("support.change_supportcase", case)


# --- Teams and calendars ------------------------------------------------------------


def calendar_for_team(team: Team | None) -> Calendar:
    if team is None:
        return Calendar.around_the_clock(settings.WORKSPACE_TIMEZONE)
    hours: dict[int, list[tuple[dt.time, dt.time]]] = defaultdict(list)
    for row in WorkingHours.objects.filter(team=team).order_by("weekday", "start"):
        hours[row.weekday].append((row.start, row.end))
    holidays = frozenset(TeamHoliday.objects.filter(team=team).values_list("date", flat=True))
    return Calendar(
        zone=zoneinfo.ZoneInfo(team.timezone), hours={day: tuple(rows) for day, rows in hours.items()},
        holidays=holidays,
    )


def team_of(user: User) -> Team | None:
    return Team.objects.filter(group__user=user).order_by("pk").first()


def teams_of(user: User) -> list[Team]:
    return list(Team.objects.filter(group__user=user).order_by("name"))


def reply_channels() -> list[str]:
    return list(settings.SUPPORT_AGENT_REPLY_TEMPLATES)


def active_case_for(contact_id: int) -> SupportCase | None:
    """The contact's open (or pending, or escalated) case; the newest if several."""
    return (
        SupportCase.objects.select_related("team", "assigned_agent", "contact")
        .filter(contact_id=contact_id, status__in=ACTIVE_STATUSES)
        .order_by("-opened_at", "-id")
        .first()
    )


# --- The contact's message history (case page) -------------------------------------------

OUTBOUND, INBOUND = "out", "in"
_RANK = {INBOUND: 0, OUTBOUND: 1}


@dataclass
class HistoryItem:
    kind: str  # OUTBOUND or INBOUND
    at: dt.datetime
    pk: int
    channel: str
    text: str
    status: str = ""
    template: str = ""
    sent_by: str = ""
    address: str = ""
    reason: str = ""
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cursor(self) -> str:
        return f"{self.at.isoformat()}|{_RANK[self.kind]}|{self.pk}"


@dataclass
class HistoryPage:
    items: list[HistoryItem]
    next_cursor: str  # "" when this is the last page


def cases_due_for_first_response(*, now: dt.datetime, limit: int = 500) -> list[int]:
    """Ids of active cases past their first-response due time with no
    response and no breach recorded yet, most overdue first."""
    return list(
        SupportCase.objects.filter(
            first_response_at__isnull=True, first_response_breached_at__isnull=True,
            first_response_due_at__lte=now, status__in=ACTIVE_STATUSES,
        ).order_by("first_response_due_at").values_list("pk", flat=True)[:limit]
    )


def parse_cursor(value: str) -> tuple[dt.datetime, int, int] | None:
    """A cursor is "<iso instant>|<rank>|<id>"; anything else means the first page."""
    try:
        at_text, rank, pk = value.split("|")
        at = parse_datetime(at_text)
        return (at, int(rank), int(pk)) if at is not None and at.tzinfo else None
    except (ValueError, AttributeError):
        return None


def _before(field_name: str, rank: int, cursor: tuple[dt.datetime, int, int] | None) -> Q:
    """Rows that sort strictly after the cursor in (at desc, rank desc, id desc)."""
    if cursor is None:
        return Q()
    at, cursor_rank, pk = cursor
    older = Q(**{f"{field_name}__lt": at})
    if rank < cursor_rank:
        return older | Q(**{field_name: at})
    if rank == cursor_rank:
        return older | Q(**{field_name: at, "pk__lt": pk})
    return older


def contact_history(contact: Contact, *, cursor: str = "", limit: int = 25) -> HistoryPage:
    """One page of everything the contact was sent and said, newest first.
    Two keyset queries (one per table, each `limit + 1` rows on its
    (contact, time) index), then status timelines, journey names and case
    numbers for the page only: the count does not grow with the history."""
    from channels.models import DeliveryEvent, InboundMessage, OutboundMessage

    position = parse_cursor(cursor) if cursor else None
    outbound = list(
        OutboundMessage.objects.filter(_before("created_at", _RANK[OUTBOUND], position), contact=contact)
        .select_related("template_version")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    inbound = list(
        InboundMessage.objects.filter(_before("received_at", _RANK[INBOUND], position), contact=contact)
        .select_related("in_reply_to")
        .order_by("-received_at", "-id")[: limit + 1]
    )
    merged = sorted(
        [(m.created_at, _RANK[OUTBOUND], m.pk, m) for m in outbound]
        + [(m.received_at, _RANK[INBOUND], m.pk, m) for m in inbound],
        key=lambda row: row[:3],
        reverse=True,
    )
    page_rows = [row[3] for row in merged[:limit]]
    page_out = [m for m in page_rows if isinstance(m, OutboundMessage)]
    timelines: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in DeliveryEvent.objects.filter(message__in=[m.pk for m in page_out]).order_by("received_at", "id"):
        timelines[event.message_id].append(
            {"at": event.received_at, "kind": event.kind, "status": event.status, "detail": event.detail}
        )
    senders = _senders(page_out)
    items = [
        _outbound_item(m, timelines[m.pk], senders) if isinstance(m, OutboundMessage) else _inbound_item(m)
        for m in page_rows
    ]
    next_cursor = items[-1].cursor if len(merged) > limit and items else ""
    return HistoryPage(items=items, next_cursor=next_cursor)


def _senders(messages: list) -> dict[tuple[str, int], str]:
    """Human names for the journey versions and cases behind a page of
    messages, in two queries. Escalation enrollments name their case."""
    from journeys.models import JourneyVersion
    from support.models import CaseEscalation

    names: dict[tuple[str, int], str] = {}
    version_ids = {m.origin_journey_version_id for m in messages if m.origin_journey_version_id}
    for version in JourneyVersion.objects.filter(pk__in=version_ids).select_related("journey"):
        names[("version", version.pk)] = f"journey {version.journey.key} v{version.number}"
    case_ids = {m.origin_case_id for m in messages if m.origin_case_id}
    enrollment_ids = {m.origin_enrollment_id for m in messages if m.origin_enrollment_id}
    for escalation in CaseEscalation.objects.filter(enrollment_id__in=enrollment_ids).select_related("case"):
        names[("enrollment", escalation.enrollment_id)] = f"case {escalation.case.number} escalation"
    for case_id, number in SupportCase.objects.filter(pk__in=case_ids).values_list("pk", "number"):
        names[("case", case_id)] = f"case {number}"
    return names


def _outbound_item(message, timeline: list[dict[str, Any]], senders: dict[tuple[str, int], str]) -> HistoryItem:
    parts = [
        senders.get(("enrollment", message.origin_enrollment_id or 0), ""),
        senders.get(("version", message.origin_journey_version_id or 0), ""),
        senders.get(("case", message.origin_case_id or 0), ""),
    ]
    sent_by = " · ".join(p for p in parts if p) or message.get_origin_kind_display()
    if message.origin_step_key:
        sent_by += f" · step {message.origin_step_key}"
    version = message.template_version
    template = f"{message.template_key} v{version.number}" if version else message.template_key
    return HistoryItem(
        kind=OUTBOUND, at=message.created_at, pk=message.pk, channel=message.channel, text=_outbound_text(message),
        status=message.status, template=template, sent_by=sent_by, address=message.address,
        reason=message.decision_reason, timeline=timeline,
    )


def _inbound_item(message) -> HistoryItem:
    replied_to = f"reply to #{message.in_reply_to_id}" if message.in_reply_to_id else "reply"
    return HistoryItem(
        kind=INBOUND, at=message.received_at, pk=message.pk, channel=message.channel, text=message.body,
        status=message.keyword_action or "received", sent_by=replied_to, address=message.from_address,
    )


def _outbound_text(message) -> str:
    """What the person saw, or, for a message held before it was rendered
    (deferred by quiet hours), what it will say: an agent's own words, or
    that the approved template writes it when it goes."""
    if message.content:
        return rendered_text(message)
    if message.origin_kind == OriginKind.AGENT_REPLY:
        return (message.render_data or {}).get("event", {}).get("message", "")
    if message.status == MessageStatus.DEFERRED:
        until = f" at {timezone.localtime(message.deliver_after):%Y-%m-%d %H:%M}" if message.deliver_after else ""
        return f"Written from the approved template when it is released{until}."
    return ""


def rendered_text(message) -> str:
    """What the person saw, in a line or a paragraph, per channel's content keys."""
    content = message.content or {}
    if message.channel == "email":
        return " — ".join(v for v in (content.get("subject", ""), content.get("text", "")) if v)
    for key in ("body", "description", "fallback_text", "title"):
        if content.get(key):
            title = content.get("title", "")
            return f"{title} — {content[key]}" if title and key != "title" else content[key]
    return ""


def open_enrollments(contact: Contact, *, case: SupportCase | None = None) -> list:
    """The contact's open journey enrollments as a case page shows them:
    the contact's own (marketing, reminders) and this case's escalation; not
    other cases' escalations, which another team may be working."""
    from journeys.models import OPEN_ENROLLMENT, Enrollment

    rows = Enrollment.objects.filter(contact=contact, status__in=OPEN_ENROLLMENT)
    if case is not None:
        rows = rows.filter(Q(scope_key="") | Q(scope_key=f"case:{case.pk}"))
    return list(rows.select_related("journey", "version").order_by("-entered_at"))
