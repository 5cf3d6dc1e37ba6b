"""The admin home as an operations dashboard (Unfold's DASHBOARD_CALLBACK):
rollups for the chosen days, live gauges for now."""

from __future__ import annotations

import json

from django.contrib import messages

from analytics import selectors


def dashboard_callback(request, context: dict) -> dict:
    if not request.user.has_perm("analytics.view_dashboard"):
        return context
    try:
        first, last = selectors.date_range(request.GET)
    except selectors.RangeError as error:
        messages.warning(request, str(error))
        first, last = selectors.date_range({})
    series = selectors.daily_series(first, last)
    context.update(
        dashboard=True,
        range_from=first, range_to=last,
        kpis=selectors.channel_kpis(first, last),
        gauges=selectors.live_gauges(first, last),
        support=selectors.support_summary(first, last),
        channels=selectors.channel_table(first, last),
        reasons=selectors.decision_reasons(first, last),
        falling=selectors.falling_journeys(today=last),
        chart_sent=json.dumps(series["sent"]),
        chart_outcomes=json.dumps(series["outcomes"]),
        chart_opt_outs=json.dumps(series["opt_outs"]),
    )
    return context
