"""What the dashboard and the journey page show, read from the rollups (plus
a few live gauges that are one indexed count each)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from analytics.models import ChannelDay, JourneyDay, SupportDay
from analytics.services import local_today, merge_histograms, percentile
from channels.models import MessageStatus, OutboundMessage, WebhookAttempt, WebhookEndpoint
from journeys.definition import steps_by_key
from journeys.models import Journey, WebhookCall, WebhookStatus
from journeys.selectors import Lift


class RangeError(ValueError):
    pass


def date_range(params, *, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """?from=YYYY-MM-DD&to=YYYY-MM-DD, default the last ANALYTICS_DASHBOARD_DAYS days."""
    today = today or local_today()
    try:
        last = dt.date.fromisoformat(params.get("to") or today.isoformat())
        first = dt.date.fromisoformat(
            params.get("from") or (last - dt.timedelta(days=settings.ANALYTICS_DASHBOARD_DAYS - 1)).isoformat())
    except ValueError:
        raise RangeError("Dates are written YYYY-MM-DD, e.g. 2026-11-23; showing the last days instead.")
    if first > last:
        raise RangeError("The range starts after it ends; showing the last days instead.")
    if (last - first).days > 366:
        raise RangeError("Pick at most a year; showing the last days instead.")
    return first, last


def _rate(part, whole) -> float | None:
    return part / whole if whole else None


def channel_kpis(first: dt.date, last: dt.date) -> dict:
    totals = ChannelDay.objects.filter(day__range=(first, last)).aggregate(
        **{name: Sum(name) for name in ("queued", "sent", "delivered", "failed", "bounced", "opt_outs", "suppressed",
                                        "deferred", "cost", "converted_contacts")})
    totals = {key: value or 0 for key, value in totals.items()}
    totals["delivery_rate"] = _rate(totals["delivered"], totals["sent"])
    totals["opt_out_rate"] = _rate(totals["opt_outs"], totals["delivered"])
    totals["cost_per_converted"] = _rate(totals["cost"], totals["converted_contacts"])
    return totals


def channel_table(first: dt.date, last: dt.date) -> list[dict]:
    rows = (ChannelDay.objects.filter(day__range=(first, last)).values("channel", "provider")
            .annotate(**{name: Sum(name) for name in ("queued", "sent", "delivered", "failed", "bounced", "opened",
                                                      "clicked", "replied", "opt_outs", "suppressed", "deferred",
                                                      "cost", "converted_contacts")})
            .order_by("channel", "provider"))
    table = []
    for row in rows:
        row["delivery_rate"] = _rate(row["delivered"], row["sent"])
        row["cost_per_converted"] = _rate(row["cost"], row["converted_contacts"])
        table.append(row)
    return table


def decision_reasons(first: dt.date, last: dt.date) -> dict[str, dict[str, int]]:
    merged: dict[str, dict[str, int]] = {"suppressed": {}, "deferred": {}}
    for decisions in ChannelDay.objects.filter(day__range=(first, last)).values_list("decisions", flat=True):
        for kind, reasons in decisions.items():
            for reason, n in reasons.items():
                merged[kind][reason] = merged[kind].get(reason, 0) + n
    return {kind: dict(sorted(reasons.items(), key=lambda item: -item[1])) for kind, reasons in merged.items()}


def daily_series(first: dt.date, last: dt.date) -> dict:
    """Chart.js data: sends per channel per day, delivered against failed, opt-out rate."""
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    rows = ChannelDay.objects.filter(day__range=(first, last)).values("day", "channel").annotate(
        sent=Sum("sent"), delivered=Sum("delivered"), failed=Sum("failed"), bounced=Sum("bounced"),
        opt_outs=Sum("opt_outs"))
    sent: dict[str, dict[dt.date, int]] = {}
    by_day = {day: {"delivered": 0, "failed": 0, "opt_outs": 0} for day in days}
    for row in rows:
        sent.setdefault(row["channel"], {})[row["day"]] = row["sent"]
        by_day[row["day"]]["delivered"] += row["delivered"]
        by_day[row["day"]]["failed"] += row["failed"] + row["bounced"]
        by_day[row["day"]]["opt_outs"] += row["opt_outs"]
    labels = [day.strftime("%d %b") for day in days]
    return {
        "sent": {"labels": labels, "datasets": [
            {"label": channel, "data": [per_day.get(day, 0) for day in days]}
            for channel, per_day in sorted(sent.items()) if any(per_day.values())]},
        "outcomes": {"labels": labels, "datasets": [
            {"label": "Delivered", "data": [by_day[day]["delivered"] for day in days]},
            {"label": "Failed or bounced", "data": [by_day[day]["failed"] for day in days]}]},
        "opt_outs": {"labels": labels, "datasets": [
            {"label": "Opt-outs per 1,000 delivered",
             "data": [round(1000 * by_day[d]["opt_outs"] / by_day[d]["delivered"], 2) if by_day[d]["delivered"]
                      else 0 for d in days]}]},
    }


def live_gauges(first: dt.date, last: dt.date, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Now, not rolled up: each is one count on a partial index."""
    now = now or timezone.now()
    stuck_before = now - dt.timedelta(seconds=settings.CHANNELS_STUCK_AFTER_SECONDS)
    from analytics.services import day_bounds

    start, end = day_bounds(first)[0], day_bounds(last)[1]
    return {
        "queue_depth": OutboundMessage.objects.filter(status=MessageStatus.QUEUED).count(),
        "stuck": OutboundMessage.objects.filter(status=MessageStatus.SENDING, sending_at__lt=stuck_before).count(),
        # Journeys' calls out plus our outbound webhook attempts that failed.
        "webhook_failures": WebhookCall.objects.filter(status=WebhookStatus.FAILED, created_at__gte=start,
                                                       created_at__lt=end).count()
        + WebhookAttempt.objects.filter(succeeded=False, attempted_at__gte=start, attempted_at__lt=end).count(),
        "webhook_endpoints_failing": WebhookEndpoint.objects.filter(
            enabled=False, disabled_at__isnull=False, consecutive_failures__gt=0).count(),
    }


def support_summary(first: dt.date, last: dt.date) -> dict:
    rows = list(SupportDay.objects.filter(day__range=(first, last)))
    first_response = merge_histograms(row.first_response_minutes for row in rows)
    resolution = merge_histograms(row.resolution_minutes for row in rows)
    summary = {name: sum(getattr(row, name) for row in rows) for name in (
        "opened", "first_responses", "resolved", "resolved_without_agent", "escalations", "sla_breaches")}
    summary.update(first_response_p50=percentile(first_response, 0.5),
                   first_response_p90=percentile(first_response, 0.9),
                   resolution_p50=percentile(resolution, 0.5), resolution_p90=percentile(resolution, 0.9))
    opened = {}
    for row in rows:
        opened[(row.source, row.category)] = opened.get((row.source, row.category), 0) + row.opened
    summary["opened_by"] = [{"source": s, "category": c, "opened": n} for (s, c), n in sorted(opened.items()) if n]
    return summary


@dataclass(frozen=True)
class JourneyTrend:
    journey: Journey
    recent: float
    earlier: float
    recent_entered: int


def falling_journeys(*, today: dt.date | None = None, min_entered: int = 20) -> list[JourneyTrend]:
    """Journeys whose cohort conversion of the last 7 days is below the 7 before."""
    today = today or local_today()
    recent_from, earlier_from = today - dt.timedelta(days=6), today - dt.timedelta(days=13)
    rows = JourneyDay.objects.filter(step_key="", day__gte=earlier_from, day__lte=today).values_list(
        "journey_id", "day", "entered", "converted")
    sums: dict[int, list[int]] = {}
    for journey_id, day, entered, converted in rows:
        part = sums.setdefault(journey_id, [0, 0, 0, 0])
        offset = 0 if day >= recent_from else 2
        part[offset] += entered
        part[offset + 1] += converted
    names = Journey.objects.in_bulk(list(sums))
    trends = []
    for journey_id, (r_in, r_conv, e_in, e_conv) in sums.items():
        if r_in >= min_entered and e_in >= min_entered and r_conv / r_in < e_conv / e_in:
            trends.append(JourneyTrend(names[journey_id], r_conv / r_in, e_conv / e_in, r_in))
    return sorted(trends, key=lambda t: t.recent - t.earlier)


@dataclass(frozen=True)
class FunnelStep:
    key: str
    entered: int
    converted: int
    exited: int
    in_progress: int
    messages: dict[str, int]


@dataclass(frozen=True)
class JourneyOutcomes:
    lift: Lift
    funnel: list[FunnelStep]
    convert_p50: int | None
    completed: int
    exited: int


def journey_outcomes(journey: Journey) -> JourneyOutcomes:
    """All days, all versions, from the rollups; steps in the live version's order."""
    rows = list(JourneyDay.objects.filter(journey=journey))
    versions = [row for row in rows if not row.step_key]
    lift = Lift(sum(r.entered for r in versions), sum(r.converted for r in versions),
                sum(r.control_entered for r in versions), sum(r.control_converted for r in versions))
    steps: dict[str, list] = {}
    for row in rows:
        if row.step_key:
            part = steps.setdefault(row.step_key, [0, 0, 0, 0, {}])
            part[0] += row.entered
            part[1] += row.converted
            part[2] += row.exited
            part[3] += row.in_progress
            for status, n in row.messages.items():
                part[4][status] = part[4].get(status, 0) + n
    order = list(steps_by_key(journey.live_version.definition)) if journey.live_version_id else []
    keys = [key for key in order if key in steps] + sorted(set(steps) - set(order))
    funnel = [FunnelStep(key, *steps[key]) for key in keys]
    return JourneyOutcomes(lift, funnel, percentile(merge_histograms(r.convert_minutes for r in versions), 0.5),
                           sum(r.completed for r in versions), sum(r.exited for r in versions))
