"""The tick writes its batch of enrollments back in one UPDATE whose rows
travel as one JSON document (config.bulk.update_rows). Whatever the values,
it must store what Django's own bulk_update stores, and leave alone a row
that is no longer active."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.models import Contact
from journeys.engine import ENROLLMENT_FIELDS, save_enrollments
from journeys.models import Enrollment, EnrollmentStatus
from tests.journeys.conftest import T0
from tests.journeys.factories import live_journey

pytestmark = pytest.mark.postgres

moments = st.none() | st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(dt.UTC)
)
texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
changes = st.fixed_dictionaries({
    "current_step": texts, "current_step_type": st.text(max_size=32).filter(lambda s: "\x00" not in s),
    "step_started_at": moments, "wait_target": moments,
    "visits": st.dictionaries(texts, st.integers(0, 1000), max_size=4), "next_run_at": moments,
    "ended_at": moments, "end_reason": texts, "context": st.dictionaries(texts, json_values, max_size=4),
    "send_pending": st.booleans(), "failures": st.integers(0, 32767),
})


@pytest.fixture
def pair(db):
    journey = live_journey("save-enrollments", [{"key": "pause", "type": "wait", "duration": "1d"}])
    contact = Contact.objects.create(external_id="cus_save")
    return [Enrollment.objects.create(journey=journey, version=journey.live_version, contact=contact,
                                      scope_key=scope, entered_at=T0) for scope in ("fast", "django")]


def stored(enrollment: Enrollment) -> dict:
    return Enrollment.objects.filter(pk=enrollment.pk).values(*ENROLLMENT_FIELDS).get()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=changes, status=st.sampled_from([EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED]))
def test_the_one_statement_update_stores_what_bulk_update_stores(pair, change, status):
    fast, django = pair
    for enrollment in pair:
        Enrollment.objects.filter(pk=enrollment.pk).update(status=EnrollmentStatus.ACTIVE)
        for name, value in {**change, "status": status}.items():
            setattr(enrollment, name, value)
    save_enrollments([fast])
    Enrollment.objects.bulk_update([django], ENROLLMENT_FIELDS)
    assert stored(fast) == stored(django)


def test_a_row_no_longer_active_is_left_as_it_is(pair):
    ended, active = pair
    Enrollment.objects.filter(pk=ended.pk).update(status=EnrollmentStatus.EXITED, end_reason="exited by an agent")
    for enrollment in pair:
        enrollment.current_step, enrollment.end_reason = "pause", "written by the tick"
    save_enrollments(pair)
    assert stored(ended)["end_reason"] == "exited by an agent"
    assert stored(ended)["current_step"] == ""
    assert stored(active)["end_reason"] == "written by the tick"
