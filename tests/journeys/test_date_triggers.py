"""Date-property triggers: `trigger: {event, at: {property, offset, local_time}}`.
The event is the entry; the first step runs at the date plus the offset (a
date-only value and `local_time` read in the contact's zone); a date that
is missing or already passed keeps the contact out, and the entry decision
says why."""

from __future__ import annotations

import datetime as dt
import itertools
import textwrap
import zoneinfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.models import OutboundMessage
from journeys import selectors
from journeys.as_code import export_yaml, import_yaml
from journeys.conditions import date_target
from journeys.definition import validate
from journeys.diagram import render_svg
from journeys.models import Enrollment, EnrollmentStatus, EntryDecision, EntryOutcome, Journey
from journeys.services import journey_pause, journey_resume
from journeys.simulate import SimEvent, simulate
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import T0, emit, run
from tests.journeys.factories import live_journey

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
MAIL = [{"key": "mail", "type": "send", "template": "welcome-email"}]
ZONES = ["America/New_York", "Europe/Lisbon", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata",
         "America/Sao_Paulo", "Pacific/Auckland", "America/Santiago", "UTC"]


def reminder(at: dict, *, reentry="always", steps=None, **definition) -> Journey:
    return live_journey("reminder", steps or MAIL, trigger={"event": "appointment.booked", "at": at},
                        reentry=reentry, exit_events=["appointment.cancelled"], **definition)


def mails(contact) -> list[dt.datetime]:
    return list(OutboundMessage.objects.filter(contact=contact).order_by("created_at").values_list("created_at",
                                                                                                   flat=True))


# --- the instant, as a pure function ------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    day=st.dates(min_value=dt.date(2026, 1, 1), max_value=dt.date(2027, 12, 31)),
    zone=st.sampled_from(ZONES),
    days_before=st.integers(0, 40),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 30, 59]),
)
def test_a_date_only_value_with_a_local_time_fires_on_that_local_day_at_that_wall_time(
    day, zone, days_before, hour, minute
):
    tz = zoneinfo.ZoneInfo(zone)
    local_time = dt.time(hour, minute)

    target = date_target(day.isoformat(), offset=-dt.timedelta(days=days_before), local_time=local_time, zone=tz)

    wanted_day = day - dt.timedelta(days=days_before)
    wanted = dt.datetime.combine(wanted_day, local_time)
    local = target.astimezone(tz)
    if local.time() == local_time:
        assert local.date() == wanted_day
        # The first time the wall clock reads it (in an autumn fold it reads it twice, an hour apart).
        hour_earlier = (target - HOUR).astimezone(tz).replace(tzinfo=None)
        assert hour_earlier != wanted
    else:
        # Only inside a spring-forward gap: the wall clock never read it, and the jump is used.
        assert wanted.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wanted
        assert (target - dt.timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None) < wanted < \
            local.replace(tzinfo=None)


@settings(max_examples=200, deadline=None)
@given(
    instant=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31),
                         timezones=st.just(UTC)),
    zone=st.sampled_from(ZONES),
    hours_before=st.integers(0, 24 * 30),
)
def test_a_value_with_a_utc_offset_moves_by_exact_hours_whatever_the_contacts_zone(instant, zone, hours_before):
    target = date_target(instant.isoformat(), offset=-dt.timedelta(hours=hours_before), local_time=None,
                         zone=zoneinfo.ZoneInfo(zone))

    assert target == instant - dt.timedelta(hours=hours_before)


def test_a_date_only_value_is_read_in_the_contacts_zone_and_days_are_calendar_days_across_dst():
    lisbon = zoneinfo.ZoneInfo("Europe/Lisbon")  # summer time starts 2026-03-29 01:00 UTC

    # 14 days before 12 April is the DST day itself: 09:00 WEST is 08:00 UTC.
    assert date_target("2026-04-12", offset=-dt.timedelta(days=14), local_time=dt.time(9), zone=lisbon) == \
        dt.datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    # The day before: 09:00 WET is 09:00 UTC.
    assert date_target("2026-04-11", offset=-dt.timedelta(days=14), local_time=dt.time(9), zone=lisbon) == \
        dt.datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    # Midnight of a local date, not of UTC's.
    assert date_target("2026-07-01", offset=dt.timedelta(0), local_time=None, zone=lisbon) == \
        dt.datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
    # 01:30 does not exist on the DST day: it fires at the jump (01:00 UTC).
    assert date_target("2026-03-29", offset=dt.timedelta(0), local_time=dt.time(1, 30), zone=lisbon) == \
        dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert date_target("not a date", offset=dt.timedelta(0), local_time=None, zone=lisbon) is None


# --- entry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "appointment", "first_step_at"),
    [
        # An instant with a UTC offset: exactly 24 hours earlier, whatever the zone.
        ("Europe/Lisbon", "2026-03-06T15:00:00+00:00", dt.datetime(2026, 3, 5, 15, tzinfo=UTC)),
        ("Asia/Tokyo", "2026-03-06T15:00:00+09:00", dt.datetime(2026, 3, 5, 6, tzinfo=UTC)),
        # A local time without offset is the contact's wall clock (New York is UTC-5 in early March).
        ("America/New_York", "2026-03-06T15:00:00", dt.datetime(2026, 3, 5, 20, tzinfo=UTC)),
        # Noon on the US spring-forward day (EDT) without an offset: the offset moves the contact's wall
        # clock, so noon EST the day before (23 hours earlier), as a wait_until step does.
        ("America/New_York", "2026-03-08T12:00:00", dt.datetime(2026, 3, 7, 17, tzinfo=UTC)),
    ],
)
@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_the_first_step_runs_at_the_date_minus_the_offset_in_the_contacts_zone(zone, appointment, first_step_at):
    reminder({"property": "appointment_at", "offset": "-24h"})
    contact = ContactFactory(timezone=zone)
    emit(contact, "appointment.booked", T0, appointment_at=appointment)

    run(T0)

    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.entered_at == T0
    assert enrollment.next_run_at == first_step_at
    decision = EntryDecision.objects.get(contact=contact)
    assert decision.outcome == EntryOutcome.ENTERED
    assert decision.detail == f"first step at {first_step_at.isoformat()} (appointment_at -24h)"
    run(first_step_at - dt.timedelta(seconds=1))
    assert mails(contact) == []
    run(first_step_at)
    assert mails(contact) == [first_step_at]


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_a_renewal_at_local_nine_fourteen_days_before_lands_on_the_dst_day_in_summer_time():
    live_journey("renewal", MAIL, trigger={"event": "renewal.scheduled",
                                           "at": {"property": "expires_at", "offset": "-14d", "local_time": "09:00"}})
    lisbon, berlin = ContactFactory(timezone="Europe/Lisbon"), ContactFactory(timezone="Europe/Berlin")
    for contact in (lisbon, berlin):
        emit(contact, "renewal.scheduled", T0, expires_at="2026-04-12")

    run(T0)

    # 29 March 2026, the EU spring-forward day: 09:00 WEST = 08:00 UTC, 09:00 CEST = 07:00 UTC.
    assert Enrollment.objects.get(contact=lisbon).next_run_at == dt.datetime(2026, 3, 29, 8, tzinfo=UTC)
    assert Enrollment.objects.get(contact=berlin).next_run_at == dt.datetime(2026, 3, 29, 7, tzinfo=UTC)
    run(dt.datetime(2026, 3, 29, 8, tzinfo=UTC))
    assert mails(lisbon) == [dt.datetime(2026, 3, 29, 8, tzinfo=UTC)]
    assert mails(berlin) == [dt.datetime(2026, 3, 29, 8, tzinfo=UTC)]  # due at 07:00, the tick came at 08:00


EXAMPLES = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(zone=st.sampled_from(ZONES), days_ahead=st.integers(3, 60), hour=st.integers(0, 23))
@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_an_enrollment_waits_at_its_entry_until_the_local_time_on_the_date_in_any_zone(zone, days_ahead, hour):
    # Each example its own journey and event name: the examples share one test transaction.
    n = next(EXAMPLES)
    live_journey(f"renewal-{n}", MAIL, trigger={
        "event": f"renewal.scheduled.{n}",
        "at": {"property": "expires_at", "offset": "-2d", "local_time": f"{hour:02}:00"},
    })
    contact = ContactFactory(timezone=zone)
    expires = (T0 + dt.timedelta(days=days_ahead)).date()
    emit(contact, f"renewal.scheduled.{n}", T0, expires_at=expires.isoformat())

    run(T0)

    enrollment = Enrollment.objects.get(contact=contact)
    tz = zoneinfo.ZoneInfo(zone)
    assert enrollment.next_run_at == date_target(expires.isoformat(), offset=-dt.timedelta(days=2),
                                                 local_time=dt.time(hour), zone=tz)
    assert enrollment.next_run_at.astimezone(tz).date() == expires - dt.timedelta(days=2) or \
        enrollment.next_run_at.astimezone(tz).hour != hour  # only inside a DST gap
    assert enrollment.current_step == "mail" and enrollment.step_started_at is None


@pytest.mark.parametrize(
    ("properties", "detail"),
    [
        ({"appointment_at": (T0 + 23 * HOUR).isoformat()},
         f"appointment_at -24h already passed ({(T0 - HOUR).isoformat()})"),
        ({}, "appointment_at -24h: appointment_at is missing or not a date"),
        ({"appointment_at": "next tuesday"}, "appointment_at -24h: appointment_at is missing or not a date"),
    ],
    ids=["passed", "missing", "unreadable"],
)
@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_a_passed_missing_or_unreadable_date_keeps_the_contact_out_and_says_why(properties, detail):
    journey = reminder({"property": "event.appointment_at", "offset": "-24h"})
    contact = ContactFactory(timezone="Europe/Lisbon")
    emit(contact, "appointment.booked", T0, **properties)

    run(T0)

    assert not Enrollment.objects.filter(contact=contact).exists()
    decision = EntryDecision.objects.get(contact=contact)
    assert (decision.outcome, decision.detail) == (EntryOutcome.CONDITION_FALSE, detail)
    reasons = selectors.why_not(contact=contact, journey=journey)
    assert any(detail in reason.why for reason in reasons), reasons


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_a_date_passed_while_the_event_waited_to_be_processed_keeps_the_contact_out():
    reminder({"property": "appointment_at", "offset": "-24h"})
    contact = ContactFactory()
    emit(contact, "appointment.booked", T0, appointment_at=(T0 + 30 * HOUR).isoformat())

    run(T0 + 7 * HOUR)  # an outage: processed after 24 h before the appointment

    assert not Enrollment.objects.exists()
    assert EntryDecision.objects.get().detail.startswith("appointment_at -24h already passed")


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_a_rescheduled_appointment_follows_the_reentry_rule():
    reminder({"property": "appointment_at", "offset": "-24h"})
    contact = ContactFactory()
    first, moved = T0 + dt.timedelta(days=3), T0 + dt.timedelta(days=5)
    emit(contact, "appointment.booked", T0, appointment_at=first.isoformat())
    run(T0)

    # A second booking while the first enrollment waits: one open enrollment per journey, as always.
    emit(contact, "appointment.booked", T0 + HOUR, key="second", appointment_at=moved.isoformat())
    run(T0 + HOUR)
    assert EntryDecision.objects.filter(contact=contact, outcome=EntryOutcome.ALREADY_ENROLLED).count() == 1

    # The integration cancels and books again: the old enrollment exits, a new one waits for the new date.
    emit(contact, "appointment.cancelled", T0 + 2 * HOUR)
    emit(contact, "appointment.booked", T0 + 3 * HOUR, key="third", appointment_at=moved.isoformat())
    run(T0 + 3 * HOUR)
    statuses = dict(Enrollment.objects.filter(contact=contact).values_list("status", "next_run_at"))
    assert set(statuses) == {EnrollmentStatus.EXITED, EnrollmentStatus.ACTIVE}
    assert statuses[EnrollmentStatus.ACTIVE] == moved - 24 * HOUR

    run(first - 24 * HOUR)
    assert mails(contact) == []
    run(moved - 24 * HOUR)
    assert mails(contact) == [moved - 24 * HOUR]


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_reentry_once_keeps_a_rebooked_contact_out():
    reminder({"property": "appointment_at", "offset": "-24h"}, reentry="once")
    contact = ContactFactory()
    emit(contact, "appointment.booked", T0, appointment_at=(T0 + dt.timedelta(days=3)).isoformat())
    run(T0)
    emit(contact, "appointment.cancelled", T0 + HOUR)
    emit(contact, "appointment.booked", T0 + 2 * HOUR, key="again",
         appointment_at=(T0 + dt.timedelta(days=4)).isoformat())
    run(T0 + 2 * HOUR)

    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.EXITED
    assert EntryDecision.objects.filter(contact=contact, outcome=EntryOutcome.REENTRY_RULE).exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_a_cancellation_before_the_date_means_nothing_is_sent():
    reminder({"property": "appointment_at", "offset": "-24h"})
    contact = ContactFactory()
    appointment = T0 + dt.timedelta(days=3)
    emit(contact, "appointment.booked", T0, appointment_at=appointment.isoformat())
    run(T0)
    emit(contact, "appointment.cancelled", T0 + dt.timedelta(days=1))

    run(appointment)

    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.EXITED
    assert mails(contact) == []


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
@pytest.mark.parametrize(("resumed_late_by", "sent"), [(dt.timedelta(minutes=30), True), (3 * HOUR, False)])
def test_a_journey_resumed_after_the_date_sends_within_the_grace_and_skips_past_it(resumed_late_by, sent):
    journey = reminder({"property": "appointment_at", "offset": "-24h", "grace": "1h"})
    contact = ContactFactory()
    appointment = T0 + dt.timedelta(days=3)
    emit(contact, "appointment.booked", T0, appointment_at=appointment.isoformat())
    run(T0)
    journey_pause(journey=journey, actor="operator")
    due = appointment - dt.timedelta(hours=24)
    run(due)
    journey_resume(journey=Journey.objects.get(pk=journey.pk), actor="operator")

    run(due + resumed_late_by)

    enrollment = Enrollment.objects.get(contact=contact)
    assert bool(mails(contact)) is sent
    if not sent:
        assert enrollment.status == EnrollmentStatus.EXITED
        assert enrollment.end_reason.startswith("appointment_at -24h passed while waiting")
        assert enrollment.executions.get().reason == "date_passed"


@pytest.mark.django_db
def test_a_wait_for_event_first_step_starts_waiting_at_the_date_not_at_the_entry():
    steps = [{"key": "reply", "type": "wait_for_event", "event": "message.replied", "timeout": "4h",
              "on_event": "end", "on_timeout": "end"}]
    reminder({"property": "appointment_at", "offset": "-24h"}, steps=steps)
    contact = ContactFactory()
    appointment = T0 + dt.timedelta(days=3)
    emit(contact, "appointment.booked", T0, appointment_at=appointment.isoformat())
    run(T0)
    emit(contact, "message.replied", T0 + HOUR)

    run(T0 + HOUR)

    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.next_run_at == appointment - 24 * HOUR  # the reply did not wake it early
    run(appointment - 24 * HOUR)
    enrollment.refresh_from_db()
    assert enrollment.step_started_at == appointment - 24 * HOUR  # the earlier reply does not count
    assert enrollment.status == EnrollmentStatus.ACTIVE


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_simulate_shows_the_entry_waiting_for_the_date_then_the_message():
    journey = reminder({"property": "appointment_at", "offset": "-24h"})
    contact = ContactFactory()
    appointment = T0 + dt.timedelta(days=3)

    timeline = simulate(journey=journey, contact=contact, draft=False,
                        events=[SimEvent("appointment.booked", T0, {"appointment_at": appointment.isoformat()})])

    entry = next(e for e in timeline if e.kind == "entry")
    assert (entry.at, entry.outcome, entry.until) == (T0, EntryOutcome.ENTERED, appointment - 24 * HOUR)
    assert "(appointment_at -24h)" in entry.reason
    messages = [e for e in timeline if e.kind == "message"]
    assert [m.at for m in messages] == [appointment - 24 * HOUR]
    assert not Enrollment.objects.exists()  # a dry run


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_simulate_shows_why_a_late_booking_does_not_enter():
    journey = reminder({"property": "appointment_at", "offset": "-24h"})
    contact = ContactFactory()

    timeline = simulate(journey=journey, contact=contact, draft=False,
                        events=[SimEvent("appointment.booked", T0, {"appointment_at": (T0 + HOUR).isoformat()})])

    entry = next(e for e in timeline if e.kind == "entry")
    assert entry.outcome == EntryOutcome.CONDITION_FALSE
    assert entry.reason.startswith("appointment_at -24h already passed")
    assert [e for e in timeline if e.kind == "message"] == []


# --- definition, diagram, journeys as code ---------------------------------------------


@pytest.mark.parametrize(
    ("at", "problem"),
    [
        ("tomorrow", ("trigger.at", "a mapping")),
        ({"offset": "-24h"}, ("trigger.at.property", "name the event property")),
        ({"property": "event."}, ("trigger.at.property", "name the event property")),
        ({"property": "appointment_at", "offset": "-1 fortnight"}, ("trigger.at.offset", "is not a duration")),
        ({"property": "appointment_at", "local_time": "25:00"}, ("trigger.at.local_time", "not a local time")),
        ({"property": "appointment_at", "local_time": 540}, ("trigger.at.local_time", 'quote it in YAML')),
        ({"property": "appointment_at", "when": "soon"}, ("trigger.at.when", "unknown field")),
    ],
)
def test_bad_at_values_are_reported_with_their_location(at, problem):
    definition = {"trigger": {"event": "appointment.booked", "at": at}, "steps": MAIL}

    problems = validate(definition)

    assert any(p.location == problem[0] and problem[1] in p.message for p in problems), problems


def test_a_good_at_is_valid():
    definition = {"trigger": {"event": "renewal.scheduled",
                              "at": {"property": "expires_at", "offset": "-14d", "local_time": "09:00"}},
                  "steps": MAIL}

    assert validate(definition) == []


def test_the_diagram_names_the_trigger_and_its_date():
    definition = {"trigger": {"event": "renewal.scheduled",
                              "at": {"property": "expires_at", "offset": "-14d", "local_time": "09:00"}},
                  "steps": MAIL}

    svg = render_svg(definition)

    assert "on renewal.scheduled, first step at expires_at -14d at 09:00 local" in svg


@pytest.mark.django_db
@pytest.mark.usefixtures("email_template")
def test_journeys_as_code_carries_the_date_trigger_both_ways():
    text = textwrap.dedent("""
        key: renewal
        name: Renewal
        message_class: operational
        trigger:
          event: renewal.scheduled
          at: {property: expires_at, offset: -14d, local_time: "09:00"}
        steps:
          - {key: mail, type: send, template: welcome-email}
    """)
    result = import_yaml(text=text, actor="ci", publish=True)
    assert result.problems == []

    exported = yaml.safe_load(export_yaml(result.journey, version=result.version))

    assert exported["trigger"]["at"] == {"property": "expires_at", "offset": "-14d", "local_time": "09:00"}


@pytest.mark.django_db
def test_an_unquoted_local_time_in_yaml_is_refused_with_a_hint():
    text = textwrap.dedent("""
        key: renewal
        name: Renewal
        message_class: operational
        trigger: {event: renewal.scheduled, at: {property: expires_at, local_time: 10:00}}
        steps:
          - {key: wait, type: wait, duration: 1d}
    """)

    result = import_yaml(text=text, actor="ci")

    assert [(p.location, "quote it" in p.message) for p in result.problems] == [("trigger.at.local_time", True)]
