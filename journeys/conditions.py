"""Evaluating entry and branch conditions on event properties and contact
attributes. Pure functions: everything they read is passed in."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime

from consent.models import Contact
from journeys.definition import parse_duration

CONTACT_FIELDS = ("external_id", "email", "phone", "whatsapp_id", "timezone", "locale", "lifecycle_stage")
_MISSING = object()


def resolve(field: str, *, contact: Contact, event: dict) -> Any:
    """`event.a.b` reads event properties; `contact.x` reads a contact field
    or else an attribute (`contact.attributes.x` also works)."""
    root, _, path = field.partition(".")
    if root == "event":
        return _dig(event, path)
    if path in CONTACT_FIELDS:
        return getattr(contact, path) or _MISSING
    if path.startswith("attributes."):
        path = path.removeprefix("attributes.")
    return _dig(contact.attributes or {}, path)


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def as_datetime(value: Any, default_tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """An aware datetime from an ISO-8601 string or datetime; a date or a
    naive time is read in `default_tz` (the contact's zone)."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            parsed = dt.datetime.combine(day, dt.time()) if day else None
    else:
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz or dt.UTC)
    return parsed


def date_target(
    value: Any, *, offset: dt.timedelta, local_time: dt.time | None, zone: dt.tzinfo
) -> dt.datetime | None:
    """The instant a date property points at, moved by `offset`, in UTC (None
    if the value is not a date). A date-only or naive value is read in `zone`
    (the contact's), and an offset moves it on that wall clock (a date-only
    "-14d" is 14 calendar days earlier, whatever DST does meanwhile); a value
    with a UTC offset moves by exact hours. With `local_time` the result is
    that wall-clock time on the contact's local day of the moved date, by the
    rules of a `wait_until` local time (a DST gap fires at the jump, a fold at
    the first occurrence). Shared by date triggers and date waits."""
    base = as_datetime(value, zone)
    if base is None:
        return None
    moved = base + offset
    if local_time is None:
        return moved.astimezone(dt.UTC)
    # steps.py imports this module; the wall-clock rules live there, next to wait_until.
    from journeys.steps import next_local_time

    day = moved.astimezone(zone).date()
    # Just before the local day starts (fold=0 puts a midnight inside a gap at the jump):
    # the first time the clock reads HH:MM after it is on that day.
    day_start = dt.datetime.combine(day, dt.time()).replace(tzinfo=zone).astimezone(dt.UTC)
    return next_local_time(day_start - dt.timedelta(seconds=1), local_time, zone)


def _comparable_date(value: Any, now: dt.datetime) -> dt.datetime | None:
    """A condition's date value: ISO-8601, 'now', or an offset from now ('-7d')."""
    if isinstance(value, str) and value.strip().lower() == "now":
        return now
    if isinstance(value, str) and value.strip()[:1] in "+-":
        try:
            return now + parse_duration(value)
        except ValueError:
            return None
    return as_datetime(value)


def evaluate(condition: dict, *, contact: Contact, event: dict, now: dt.datetime) -> bool:
    actual = resolve(condition["field"], contact=contact, event=event)
    op, expected = condition["op"], condition.get("value")
    if op == "exists":
        return actual is not _MISSING and actual not in ("", None)
    if op == "not_exists":
        return actual is _MISSING or actual in ("", None)
    if actual is _MISSING:
        # A missing value satisfies only not_equals / not_in.
        return op in ("not_equals", "not_in")
    return _compare(op, actual, expected, now)


def _compare(op: str, actual: Any, expected: Any, now: dt.datetime) -> bool:
    if op == "equals":
        return _loose(actual) == _loose(expected)
    if op == "not_equals":
        return _loose(actual) != _loose(expected)
    if op == "in":
        return _loose(actual) in [_loose(v) for v in expected]
    if op == "not_in":
        return _loose(actual) not in [_loose(v) for v in expected]
    if op == "contains":
        if isinstance(actual, list):
            return expected in actual
        return str(expected).lower() in str(actual).lower()
    if op in ("before", "after"):
        left, right = as_datetime(actual), _comparable_date(expected, now)
        if left is None or right is None:
            return False
        return left < right if op == "before" else left > right
    try:
        left, right = float(actual), float(expected)
    except (TypeError, ValueError):
        return False
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def _loose(value: Any) -> Any:
    """Compare 'C' with 'c ' and 1 with '1': integrations send strings."""
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value


def all_hold(conditions: list[dict], *, contact: Contact, event: dict, now: dt.datetime) -> bool:
    return all(evaluate(c, contact=contact, event=event, now=now) for c in conditions)
