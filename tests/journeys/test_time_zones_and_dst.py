from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.models import OutboundMessage
from consent.models import QuietHoursRule
from journeys.models import Enrollment
from journeys.steps import next_local_time
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import grant, live_journey

UTC = dt.UTC


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


ZONES = ["America/New_York", "Europe/Lisbon", "Europe/Berlin", "Australia/Sydney", "Asia/Tokyo", "Asia/Kolkata",
         "America/Sao_Paulo", "Pacific/Auckland", "UTC"]


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31),
                         timezones=st.just(dt.UTC)),
    zone=st.sampled_from(ZONES),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 59]),
)
def test_next_local_time_is_the_first_instant_the_wall_clock_reads_it(instant, zone, hour, minute):
    tz = zoneinfo.ZoneInfo(zone)
    target = dt.time(hour, minute)

    result = next_local_time(instant, target, tz)

    assert result > instant
    assert result - instant <= dt.timedelta(hours=25)
    local = result.astimezone(tz)
    wall = local.replace(tzinfo=None)
    wanted = dt.datetime.combine(local.date(), target)
    if wall.time() != target:
        # Only in a spring-forward gap: the clock jumped over the wanted time, and we fire at the jump.
        assert wanted.replace(tzinfo=tz).astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != wanted
        assert (result - dt.timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None) < wanted < wall
    # No earlier instant after `instant` reads the same wall time.
    earlier = result - dt.timedelta(hours=23)
    if earlier > instant:
        assert earlier.astimezone(tz).time() != target or earlier.astimezone(tz).date() != local.date()


def test_local_ten_oclock_across_the_us_spring_forward():
    new_york = zoneinfo.ZoneInfo("America/New_York")
    saturday_noon = dt.datetime(2026, 3, 7, 17, 0, tzinfo=UTC)  # 12:00 EST

    sunday_ten = next_local_time(saturday_noon, dt.time(10, 0), new_york)

    assert sunday_ten == dt.datetime(2026, 3, 8, 14, 0, tzinfo=UTC)  # 10:00 EDT


def test_a_wall_time_in_the_gap_fires_when_the_clock_jumps():
    lisbon = zoneinfo.ZoneInfo("Europe/Lisbon")  # 2026-03-29 01:00 -> 02:00
    before = dt.datetime(2026, 3, 28, 12, 0, tzinfo=UTC)

    fired = next_local_time(before, dt.time(1, 30), lisbon)

    assert fired == dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_in_the_autumn_fold_the_first_occurrence_is_used():
    lisbon = zoneinfo.ZoneInfo("Europe/Lisbon")  # 2026-10-25 02:00 -> 01:00
    before = dt.datetime(2026, 10, 24, 12, 0, tzinfo=UTC)

    fired = next_local_time(before, dt.time(1, 30), lisbon)

    assert fired == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 WEST (+01:00)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "sent_at", "until"),
    [
        # 22:00 EST on the eve of the spring-forward: the window ends at 08:00 EDT.
        ("America/New_York", utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 12, 0)),
        # 23:00 in Sydney as daylight saving ends there (2026-04-05 03:00 -> 02:00).
        ("Australia/Sydney", utc(2026, 4, 4, 12, 0), utc(2026, 4, 4, 22, 0)),
        # 22:30 in Lisbon the night the clocks go forward.
        ("Europe/Lisbon", utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 7, 0)),
    ],
)
def test_quiet_hours_defer_a_journey_send_to_the_local_end_of_the_window(zone, sent_at, until):
    from tests.journeys.factories import template

    template("promo-email", "email", "marketing")
    QuietHoursRule.objects.create(name="nights", start=dt.time(21), end=dt.time(8))
    contact = ContactFactory(timezone=zone, phone="")
    grant(contact, "email", at=sent_at - dt.timedelta(days=1))
    live_journey("promo", [{"key": "promo", "type": "send", "template": "promo-email"}], message_class="marketing",
                 trigger={"event": "promo.go"})
    emit(contact, "promo.go", sent_at)

    run(sent_at)

    message = OutboundMessage.objects.get(contact=contact)
    assert (message.status, message.decision_reason, message.deliver_after) == ("deferred", "quiet_hours", until)
    assert Enrollment.objects.get(contact=contact).executions.get().outcome == "deferred"


@pytest.mark.postgres
@pytest.mark.django_db
def test_local_ten_oclock_waits_differ_per_contact_time_zone(t0):
    live_journey("ten", [
        {"key": "at-10", "type": "wait_until", "local_time": "10:00"},
        {"key": "done", "type": "wait", "duration": "1m"},
    ], trigger={"event": "go"})
    contacts = {zone: ContactFactory(timezone=zone) for zone in ("Europe/Lisbon", "America/New_York", "Asia/Tokyo")}
    for contact in contacts.values():
        emit(contact, "go", t0)

    run(t0)  # 09:00 UTC on Monday 2 March

    due = {zone: Enrollment.objects.get(contact=c).next_run_at for zone, c in contacts.items()}
    assert due == {
        "Europe/Lisbon": dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        "America/New_York": dt.datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
        "Asia/Tokyo": dt.datetime(2026, 3, 3, 1, 0, tzinfo=UTC),
    }
