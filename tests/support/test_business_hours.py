"""SLA clocks on business-hours calendars: a case opened on Friday evening is
not breached on Saturday morning; properties hold across DST changes."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from support.business_hours import Calendar, CalendarError, add_business_time, business_time_between, is_working

LISBON = zoneinfo.ZoneInfo("Europe/Lisbon")
WEEKDAYS_9_TO_5 = {day: ((dt.time(9), dt.time(17)),) for day in range(5)}
ZONES = ["Europe/Lisbon", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata", "UTC"]


def at(text: str, zone: zoneinfo.ZoneInfo = LISBON) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


def test_four_business_hours_from_friday_evening_end_on_monday_afternoon():
    calendar = Calendar(zone=LISBON, hours=WEEKDAYS_9_TO_5)
    friday_evening = at("2026-11-20T18:30")
    due = add_business_time(friday_evening, dt.timedelta(hours=4), calendar)
    assert due == at("2026-11-23T13:00")
    saturday_morning = at("2026-11-21T09:00")
    assert saturday_morning < due


def test_a_holiday_stops_the_clock_for_the_whole_day():
    calendar = Calendar(zone=LISBON, hours=WEEKDAYS_9_TO_5, holidays=frozenset({dt.date(2026, 12, 25)}))
    due = add_business_time(at("2026-12-24T16:00"), dt.timedelta(hours=2), calendar)
    assert due == at("2026-12-28T10:00")  # Thu 1h, Christmas Friday off, weekend off, Monday 1h


def test_a_night_shift_on_the_spring_forward_night_is_an_hour_shorter():
    calendar = Calendar(zone=LISBON, hours={day: ((dt.time(0), dt.time(6)),) for day in range(7)})
    night = dt.date(2026, 3, 29)  # Lisbon moves from 01:00 to 02:00
    start = dt.datetime.combine(night, dt.time(0), tzinfo=LISBON)
    end = dt.datetime.combine(night, dt.time(6), tzinfo=LISBON)
    assert business_time_between(start, end, calendar) == dt.timedelta(hours=5)


def test_a_calendar_without_hours_runs_around_the_clock():
    calendar = Calendar.around_the_clock("Europe/Lisbon")
    start = at("2026-11-21T03:00")
    assert add_business_time(start, dt.timedelta(hours=5), calendar) == start + dt.timedelta(hours=5)


def test_a_calendar_whose_only_days_are_holidays_says_so():
    calendar = Calendar(zone=LISBON, hours={4: ((dt.time(9), dt.time(17)),)},
                        holidays=frozenset(dt.date(2026, 1, 2) + dt.timedelta(weeks=w) for w in range(530)))
    with pytest.raises(CalendarError):
        add_business_time(at("2026-01-01T10:00"), dt.timedelta(hours=1), calendar)


def test_naive_start_times_are_refused():
    with pytest.raises(ValueError, match="aware"):
        add_business_time(dt.datetime(2026, 1, 1, 9), dt.timedelta(hours=1), Calendar.around_the_clock())


@st.composite
def calendars(draw) -> Calendar:
    """Working days with one interval each, at least an hour long, in zones
    with and without DST (Lord Howe moves by half an hour)."""
    zone = zoneinfo.ZoneInfo(draw(st.sampled_from(ZONES)))
    hours = {}
    for day in draw(st.sets(st.integers(0, 6), min_size=1)):
        start = draw(st.integers(0, 23 * 60))
        end = start + draw(st.integers(60, 24 * 60 - start))
        end_time = dt.time(0) if end == 24 * 60 else dt.time(end // 60, end % 60)
        hours[day] = ((dt.time(start // 60, start % 60), end_time),)
    holidays = frozenset(draw(st.lists(st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31)), max_size=10)))
    return Calendar(zone=zone, hours=hours, holidays=holidays)


instants = st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2027, 6, 30), timezones=st.just(dt.UTC))
durations = st.integers(1, 60 * 24 * 5).map(lambda minutes: dt.timedelta(minutes=minutes))


@settings(max_examples=300, deadline=None)
@given(calendar=calendars(), start=instants, duration=durations)
def test_the_working_time_between_the_start_and_the_due_time_is_exactly_the_duration(calendar, start, duration):
    due = add_business_time(start, duration, calendar)
    assert due > start
    assert business_time_between(start, due, calendar) == duration


@settings(max_examples=200, deadline=None)
@given(calendar=calendars(), start=instants, duration=durations)
@example(
    calendar=Calendar(zone=zoneinfo.ZoneInfo("Australia/Lord_Howe"), hours={0: ((dt.time(0), dt.time(1, 1)),)}),
    start=dt.datetime(2025, 1, 12, 14, 0, 0, 1, tzinfo=dt.UTC), duration=dt.timedelta(minutes=1),
)
def test_a_due_time_falls_inside_working_hours_never_on_a_holiday(calendar, start, duration):
    due = add_business_time(start, duration, calendar)
    # The last working microsecond: a due time less than a second after an
    # interval opens is right, so "one second before" may fall outside it.
    just_before = due - dt.timedelta(microseconds=1)
    assert is_working(just_before, calendar) or just_before < start
    assert just_before.astimezone(calendar.zone).date() not in calendar.holidays


@settings(max_examples=200, deadline=None)
@given(calendar=calendars(), start=instants, first=durations, second=durations)
def test_adding_in_two_parts_equals_adding_at_once(calendar, start, first, second):
    at_once = add_business_time(start, first + second, calendar)
    in_parts = add_business_time(add_business_time(start, first, calendar), second, calendar)
    assert at_once == in_parts
