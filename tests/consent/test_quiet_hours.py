"""Quiet hours and holidays, evaluated in the contact's own time zone, with
hypothesis on the edges: DST days, windows that cross midnight, gaps."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consent import policy
from consent.models import Contact, Holiday, QuietHoursRule
from consent.policy import Outcome, Reason

pytestmark = pytest.mark.django_db

DST_ZONES = ["America/New_York", "Europe/London", "Europe/Lisbon", "Australia/Sydney", "America/Sao_Paulo",
             "Asia/Tokyo", "Pacific/Chatham", "Asia/Kolkata", "America/Santiago"]

# Instants clustered around the 2026 DST changes of the zones above.
DST_DAYS = [dt.datetime(2026, 3, 8, tzinfo=dt.UTC), dt.datetime(2026, 3, 29, tzinfo=dt.UTC),
            dt.datetime(2026, 4, 5, tzinfo=dt.UTC), dt.datetime(2026, 9, 6, tzinfo=dt.UTC),
            dt.datetime(2026, 10, 4, tzinfo=dt.UTC), dt.datetime(2026, 10, 25, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 1, tzinfo=dt.UTC)]

instants = st.builds(
    lambda day, minutes: day + dt.timedelta(minutes=minutes),
    st.sampled_from(DST_DAYS),
    st.integers(min_value=-36 * 60, max_value=36 * 60),
)
wall_times = st.builds(dt.time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


def make_window(start: dt.time, end: dt.time, classes=("operational", "marketing")) -> policy.GateFacts:
    rule = QuietHoursRule(name="w", start=start, end=end, message_classes=list(classes))
    return policy.GateFacts(quiet_rules=[rule])


def in_window(local: dt.time, start: dt.time, end: dt.time) -> bool:
    if start < end:
        return start <= local < end
    return local >= start or local < end


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(zone=st.sampled_from(DST_ZONES), at=instants, start=wall_times, end=wall_times)
@example(zone="America/Santiago", at=dt.datetime(2026, 9, 6, tzinfo=dt.UTC), start=dt.time(0, 15), end=dt.time(0))
@example(zone="America/New_York", at=dt.datetime(2026, 11, 1, 5, 40, tzinfo=dt.UTC), start=dt.time(22),
         end=dt.time(1, 30))
def test_the_gate_defers_exactly_while_the_local_clock_is_inside_the_window(zone, at, start, end):
    if start == end:
        return
    contact = Contact(pk=1, external_id="x", email="x@example.com", timezone=zone)
    facts = make_window(start, end)
    decision = policy.decide(contact=contact, channel="email", message_class="operational", at=at, facts=facts)
    tz = zoneinfo.ZoneInfo(zone)
    local_now = at.astimezone(tz).time()
    if decision.outcome == Outcome.ALLOW:
        assert not in_window(local_now, start, end)
        return
    assert decision.outcome == Outcome.DEFER and decision.reason == Reason.QUIET_HOURS
    assert in_window(local_now, start, end)
    until = decision.until
    assert until > at
    # Within a day, unless DST swallows the whole open gap of a short day
    # (e.g. open 00:00-00:15 in Santiago on the night the clock skips 00:00-01:00).
    assert until - at <= dt.timedelta(hours=49)
    # At `until` the window is over, and one minute earlier it still held.
    assert not in_window(until.astimezone(tz).time(), start, end)
    just_before = until - dt.timedelta(minutes=1)
    if just_before > at:
        assert in_window(just_before.astimezone(tz).time(), start, end)


def test_a_window_crossing_midnight_defers_a_late_send_to_the_next_morning():
    contact = Contact(pk=1, external_id="x", email="x@example.com", timezone="Europe/Lisbon")
    facts = make_window(dt.time(21), dt.time(8))
    at = dt.datetime(2026, 1, 14, 22, 30, tzinfo=dt.UTC)  # 22:30 in Lisbon (UTC+0 in winter)
    decision = policy.decide(contact=contact, channel="email", message_class="operational", at=at, facts=facts)
    assert decision.reason == Reason.QUIET_HOURS
    assert decision.until == dt.datetime(2026, 1, 15, 8, 0, tzinfo=dt.UTC)


def test_a_window_ending_inside_a_spring_forward_gap_ends_when_the_clock_jumps():
    # New York skips 02:00-03:00 on 2026-03-08; a window ending at 02:30 ends at 03:00 EDT.
    contact = Contact(pk=1, external_id="x", email="x@example.com", timezone="America/New_York")
    facts = make_window(dt.time(22), dt.time(2, 30))
    at = dt.datetime(2026, 3, 8, 5, 0, tzinfo=dt.UTC)  # 00:00 EST
    decision = policy.decide(contact=contact, channel="email", message_class="operational", at=at, facts=facts)
    assert decision.until == dt.datetime(2026, 3, 8, 7, 0, tzinfo=dt.UTC)  # 03:00 EDT


def test_transactional_messages_ignore_quiet_hours_by_default():
    contact = Contact(pk=1, external_id="x", email="x@example.com", timezone="Europe/Lisbon")
    facts = make_window(dt.time(0), dt.time(23, 59))
    at = dt.datetime(2026, 1, 14, 12, tzinfo=dt.UTC)
    decision = policy.decide(contact=contact, channel="email", message_class="transactional", at=at, facts=facts)
    assert decision.allowed


def test_without_a_contact_zone_the_phone_country_decides_then_the_workspace_default(settings):
    settings.WORKSPACE_TIMEZONE = "Asia/Tokyo"
    portuguese_mobile = Contact(external_id="a", phone="+351912345678")
    assert str(policy.contact_timezone(portuguese_mobile)) == "Europe/Lisbon"
    californian_landline = Contact(external_id="b", phone="+14155550100")
    assert str(policy.contact_timezone(californian_landline)) == "America/Los_Angeles"
    no_phone = Contact(external_id="c")
    assert str(policy.contact_timezone(no_phone)) == "Asia/Tokyo"
    own_zone = Contact(external_id="d", phone="+351912345678", timezone="America/Chicago")
    assert str(policy.contact_timezone(own_zone)) == "America/Chicago"


def test_the_most_specific_rule_wins_country_and_channel_over_the_default():
    QuietHoursRule.objects.create(name="default", start=dt.time(21), end=dt.time(8))
    QuietHoursRule.objects.create(name="US SMS", channel="sms", country="US", start=dt.time(20), end=dt.time(9))
    us = Contact.objects.create(external_id="us", phone="+12015550123", email="us@example.com",
                                timezone="America/New_York")
    at = dt.datetime(2026, 1, 14, 13, 30, tzinfo=dt.UTC)  # 08:30 in New York
    sms = policy.decide(contact=us, channel="sms", message_class="operational", at=at)
    email = policy.decide(contact=us, channel="email", message_class="operational", at=at)
    assert sms.reason == Reason.QUIET_HOURS and sms.until == dt.datetime(2026, 1, 14, 14, tzinfo=dt.UTC)
    assert email.allowed


def test_a_contact_override_replaces_the_window():
    QuietHoursRule.objects.create(name="default", start=dt.time(21), end=dt.time(8))
    night_owl = Contact.objects.create(external_id="owl", email="o@example.com", timezone="UTC",
                                       quiet_hours_start=dt.time(3), quiet_hours_end=dt.time(11))
    at = dt.datetime(2026, 1, 14, 22, tzinfo=dt.UTC)
    assert policy.decide(contact=night_owl, channel="email", message_class="operational", at=at).allowed
    morning = dt.datetime(2026, 1, 14, 9, tzinfo=dt.UTC)
    decision = policy.decide(contact=night_owl, channel="email", message_class="operational", at=morning)
    assert decision.until == dt.datetime(2026, 1, 14, 11, tzinfo=dt.UTC)


def test_marketing_is_held_on_a_holiday_in_the_contacts_calendar_then_waits_for_the_window():
    QuietHoursRule.objects.create(name="default", start=dt.time(21), end=dt.time(8))
    Holiday.objects.create(date=dt.date(2026, 12, 25), name="Christmas")
    contact = Contact.objects.create(external_id="h", email="h@example.com", timezone="Australia/Sydney")
    from consent.services import consent_record

    consent_record(contact=contact, channel="email", purpose="marketing", status="granted",
                   source="confirmation", actor="test", at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    at = dt.datetime(2026, 12, 25, 1, tzinfo=dt.UTC)  # 12:00 on Christmas Day in Sydney
    decision = policy.decide(contact=contact, channel="email", message_class="marketing", at=at)
    assert decision.reason == Reason.HOLIDAY
    # Midnight after Christmas is inside quiet hours, so the send waits until 08:00 on the 26th.
    assert decision.until == dt.datetime(2026, 12, 25, 21, tzinfo=dt.UTC)
    operational = policy.decide(contact=contact, channel="email", message_class="operational", at=at)
    assert operational.allowed
