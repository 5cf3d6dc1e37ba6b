"""Business-hours arithmetic for SLA clocks: pure functions over a calendar
(working intervals per weekday in a time zone, plus holidays), no database.

The clock counts real elapsed time inside working intervals. Each local
interval is turned into UTC instants on its own date, so a day on which the
clocks change is as long as it really is (a 02:00-06:00 night shift on the
spring-forward night lasts three hours). A wall time that does not exist is
read with fold=0 (the offset before the change), one that happens twice as
its first occurrence; an interval that comes out empty is skipped."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field

UTC = dt.UTC
MIDNIGHT = dt.time(0)
# Far more than any sane calendar needs (an hour a week for years of SLA);
# past it the calendar is taken to have no working time left (all holidays).
MAX_DAYS = 10 * 366


class CalendarError(ValueError):
    """The calendar has no working time ahead (e.g. every day a holiday)."""


@dataclass(frozen=True)
class Calendar:
    """`hours` maps a weekday (Monday 0) to (start, end) local times; end
    00:00 is midnight at the end of the day. No hours at all: always open."""

    zone: zoneinfo.ZoneInfo
    hours: dict[int, tuple[tuple[dt.time, dt.time], ...]] = field(default_factory=dict)
    holidays: frozenset[dt.date] = frozenset()

    @property
    def always_open(self) -> bool:
        return not any(self.hours.values())

    @classmethod
    def around_the_clock(cls, zone: str = "UTC") -> Calendar:
        return cls(zone=zoneinfo.ZoneInfo(zone))


def _instant(day: dt.date, at: dt.time, zone: zoneinfo.ZoneInfo, *, end: bool = False) -> dt.datetime:
    if end and at == MIDNIGHT:
        day, at = day + dt.timedelta(days=1), MIDNIGHT
    return dt.datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def day_intervals(calendar: Calendar, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
    """The working intervals of one local date as UTC instants, in order,
    never overlapping."""
    if day in calendar.holidays:
        return []
    intervals = []
    for start, end in sorted(calendar.hours.get(day.weekday(), ())):
        begin, finish = _instant(day, start, calendar.zone), _instant(day, end, calendar.zone, end=True)
        if intervals and begin < intervals[-1][1]:
            begin = intervals[-1][1]
        if finish > begin:
            intervals.append((begin, finish))
    return intervals


def _intervals_from(calendar: Calendar, instant: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Working intervals that end after `instant`, in order; the first may
    start before it."""
    # Start a day early: an interval of the previous local date may still run.
    day = instant.astimezone(calendar.zone).date() - dt.timedelta(days=1)
    last_end = None
    for offset in range(MAX_DAYS):
        for begin, finish in day_intervals(calendar, day + dt.timedelta(days=offset)):
            if last_end is not None and begin < last_end:
                begin = last_end
            if finish <= begin:
                continue
            last_end = finish
            if finish > instant:
                yield begin, finish
    raise CalendarError(f"no working time within {MAX_DAYS} days of {instant.isoformat()}")


def add_business_time(start: dt.datetime, duration: dt.timedelta, calendar: Calendar) -> dt.datetime:
    """The instant at which `duration` of working time has passed since
    `start`. A zero duration answers `start` itself."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if duration < dt.timedelta(0):
        raise ValueError("duration must not be negative")
    if calendar.always_open or not duration:
        return start + duration
    remaining = duration
    for begin, finish in _intervals_from(calendar, start):
        begin = max(begin, start)
        available = finish - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise CalendarError("unreachable")  # pragma: no cover - _intervals_from raises first


def business_time_between(start: dt.datetime, end: dt.datetime, calendar: Calendar) -> dt.timedelta:
    """Working time inside [start, end]; zero when end is not after start."""
    if end <= start:
        return dt.timedelta(0)
    if calendar.always_open:
        return end - start
    total = dt.timedelta(0)
    for begin, finish in _intervals_from(calendar, start):
        if begin >= end:
            break
        total += min(finish, end) - max(begin, start)
    return total


def is_working(instant: dt.datetime, calendar: Calendar) -> bool:
    if calendar.always_open:
        return True
    begin, _finish = next(_intervals_from(calendar, instant))
    return begin <= instant
