"""The rollups agree with the raw rows of a generated week, day by day in the
workspace timezone, and re-running a day (again, or twice at once) replaces
it instead of adding to it."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from analytics import services
from analytics.models import ChannelDay, JourneyDay, SupportDay
from channels.models import DeliveryEvent, OutboundMessage
from tests.analytics.conftest import WEEK_START, ZONE

DAYS = [dt.date(2026, 11, 16) + dt.timedelta(days=n) for n in range(7)]


def local_day(at: dt.datetime) -> dt.date:
    return at.astimezone(ZoneInfo(ZONE)).date()


def channel_expected(week) -> dict:
    expected: dict = {}
    for _, channel, provider, moves, message in week.messages:
        for at, old, new, detail in moves:
            row = expected.setdefault((local_day(at), channel, provider), Counter())
            if new == "queued" and old in ("", "deferred"):
                row["queued"] += 1
            if old == "sending":
                row["sent"] += 1
            if new in ("delivered", "failed", "bounced", "suppressed", "deferred"):
                row[new] += 1
            if new in ("suppressed", "deferred"):
                row[f"{new}:{detail.split(':')[0]}"] += 1
        if message.cost_estimate:
            expected.setdefault((local_day(message.sent_at), channel, provider), Counter())["cost"] += 1
        if message.first_opened_at:
            expected.setdefault((local_day(message.first_opened_at), channel, provider), Counter())["opened"] += 1
    return expected


@pytest.mark.postgres
def test_channel_rollups_match_the_raw_rows_of_a_generated_week(week):
    services.rollup_range(DAYS[0] - dt.timedelta(days=1), DAYS[-1] + dt.timedelta(days=1))

    expected = channel_expected(week)
    rows = {(r.day, r.channel, r.provider): r for r in ChannelDay.objects.exclude(provider="")}
    assert set(rows) == set(expected)
    for key, counts in expected.items():
        row = rows[key]
        for name in ("queued", "sent", "delivered", "failed", "bounced", "suppressed", "deferred", "opened"):
            assert getattr(row, name) == counts[name], (key, name)
        assert row.cost == Decimal("0.01") * counts["cost"]
        for kind in ("suppressed", "deferred"):
            reasons = {k.split(":")[1]: n for k, n in counts.items() if k.startswith(f"{kind}:")}
            assert row.decisions.get(kind, {}) == reasons
    assert sum(r.sent for r in rows.values()) == sum(1 for *_, moves, _ in week.messages
                                                     for _, old, _, _ in moves if old == "sending")

    opt_outs = Counter((local_day(at), channel) for at, channel in week.revocations)
    assert {(r.day, r.channel): r.opt_outs for r in ChannelDay.objects.filter(provider="")} == opt_outs


@pytest.mark.postgres
def test_journey_and_support_rollups_match_the_raw_rows(week):
    services.rollup_range(DAYS[0] - dt.timedelta(days=1), DAYS[-1] + dt.timedelta(days=1))

    version_rows = {r.day: r for r in JourneyDay.objects.filter(step_key="")}
    for day in DAYS:
        cohort = [e for e in week.enrollments if local_day(e.entered_at) == day]
        treated = [e for e in cohort if not e.is_control]
        row = version_rows.get(day)
        assert (row.entered if row else 0) == len(treated)
        assert (row.converted if row else 0) == sum(e.status == "converted" for e in treated)
        assert (row.in_progress if row else 0) == sum(e.status == "active" for e in treated)
        assert (row.control_entered if row else 0) == len(cohort) - len(treated)
        assert (row.control_converted if row else 0) == sum(e.status == "converted" for e in cohort if e.is_control)
        if row:
            assert sum(row.convert_minutes.values()) == row.converted
            assert row.messages == dict(Counter(m.status for created, *_, m in week.messages
                                                if local_day(created) == day))
    step_rows = {r.day: r.entered for r in JourneyDay.objects.filter(step_key="mail")}
    assert step_rows == dict(Counter(local_day(at) for at, _ in week.executions))

    opened = Counter((local_day(c.opened_at), c.source, c.category) for c in week.cases)
    assert {(r.day, r.source, r.category): r.opened for r in SupportDay.objects.filter(opened__gt=0)} == opened
    assert sum(SupportDay.objects.values_list("resolved_without_agent", flat=True)) == sum(
        1 for c in week.cases if c.resolved_at and not c.first_response_at)
    assert sum(SupportDay.objects.values_list("sla_breaches", flat=True)) == sum(
        1 for n, _ in enumerate(week.cases) if n % 5 == 0)


@pytest.mark.postgres
def test_re_running_a_day_replaces_it_and_picks_up_late_rows(week):
    day = DAYS[2]
    services.rollup_day(day)
    before = {(r.channel, r.provider): r.sent for r in ChannelDay.objects.filter(day=day)}
    services.rollup_day(day)
    assert {(r.channel, r.provider): r.sent for r in ChannelDay.objects.filter(day=day)} == before

    start, _ = services.day_bounds(day)
    late = OutboundMessage.objects.create(contact=week.enrollments[0].contact, channel="email", provider="postmark",
                                          origin_kind="api", idempotency_key="late", status="sent",
                                          status_changed_at=start, created_at=start)
    DeliveryEvent.objects.create(message=late, kind="status", old_status="sending", status="sent",
                                 received_at=start + dt.timedelta(hours=1))
    services.rollup_day(day)
    assert ChannelDay.objects.get(day=day, channel="email", provider="postmark").sent == (
        before.get(("email", "postmark"), 0) + 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_of_one_day_at_once_take_turns(week):
    day = DAYS[3]
    services.rollup_day(day)
    expected = sorted(ChannelDay.objects.filter(day=day).values_list("channel", "provider", "sent", "delivered"))
    errors, barrier = [], threading.Barrier(2)

    def run():
        try:
            barrier.wait()
            services.rollup_day(day)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(ChannelDay.objects.filter(day=day).values_list("channel", "provider", "sent", "delivered")) == (
        expected)


def test_percentiles_of_merged_histograms_stay_within_five_percent():
    minutes = [3, 7, 7, 45, 130, 260, 990, 1500, 2400, 8000]
    histogram: dict[str, int] = {}
    for value in minutes:
        services.add_to_histogram(histogram, dt.timedelta(minutes=value))
    merged = services.merge_histograms([histogram, {}])
    assert services.percentile(merged, 0.5) == 130
    assert abs(services.percentile(merged, 0.9) - 2400) <= 0.05 * 2400
    assert services.percentile({}, 0.5) is None


def test_days_follow_the_workspace_timezone(settings):
    settings.WORKSPACE_TIMEZONE = ZONE
    start, end = services.day_bounds(dt.date(2026, 11, 16))
    assert start == WEEK_START and end - start == dt.timedelta(hours=24)
    start, end = services.day_bounds(dt.date(2026, 11, 1))  # DST ends in New York
    assert end - start == dt.timedelta(hours=25)


@pytest.mark.django_db
def test_the_beat_tick_rolls_up_today_and_yesterday_and_settles_older_days_a_few_at_a_time(settings, tmp_path):
    from analytics.models import RollupDay

    settings.ANALYTICS_SETTLE_DAYS, settings.ANALYTICS_SETTLE_DAYS_PER_TICK = 6, 2
    settings.AUDIT_EXPORT_ROOT = tmp_path
    now = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)  # a Wednesday
    today = services.local_today(now)

    first = services.tick(now=now)
    assert first["scheduled_export"] is not None  # Wednesday: last week's export was due since Monday
    assert set(RollupDay.objects.values_list("day", flat=True)) == {today - dt.timedelta(days=n) for n in range(4)}
    services.tick(now=now + dt.timedelta(minutes=5))
    assert RollupDay.objects.count() == 6
    later = now + dt.timedelta(minutes=10)
    result = services.tick(now=later)
    assert result["settled"] == 1 and RollupDay.objects.count() == 7  # day 6 ago, the last one
    assert services.tick(now=later + dt.timedelta(minutes=5))["settled"] == 0  # all settled since midnight
    assert result["scheduled_export"] is None  # made once
