"""A batch decides as if each of its events had been processed alone, the
moment it arrived: one request of many events (stored in one statement,
processed in one set-based batch) leaves the same events, contacts,
enrollments and entry decisions as one request per event, each processed
before the next arrives. Duplicated idempotency keys, out-of-order times,
exits, goals and re-entry rules included."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from contextlib import contextmanager

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent.models import Contact
from journeys.events import EventIn, events_ingest, process_events
from journeys.models import Enrollment, EnrollmentStatus, EntryDecision, EntryOutcome, Event
from tests.journeys.conftest import T0
from tests.journeys.factories import live_journey

NOW = T0 + dt.timedelta(hours=2)
WAIT = [{"key": "pause", "type": "wait", "duration": "1d"}]
JOURNEYS = itertools.count()


class _Rollback(Exception):
    pass


@contextmanager
def rolled_back():
    try:
        with transaction.atomic():
            yield
            raise _Rollback
    except _Rollback:
        pass


def journeys(reentry, n: int) -> None:
    """Two journeys on the same trigger: one with the re-entry rule under test, exits and a goal; one with an
    entry condition and a date trigger."""
    live_journey(f"main-{n}", WAIT, trigger={"event": "go"}, reentry=reentry, exit_events=["stop"],
                 goal_events=["win"])
    live_journey(f"pro-{n}", WAIT, reentry="always", exit_events=["stop"], trigger={
        "event": "go", "conditions": [{"field": "event.plan", "op": "equals", "value": "pro"}],
        "at": {"property": "due_at", "offset": "-1h"},
    })


events_in = st.lists(
    st.builds(
        lambda name, who, minute, key, plan, due, colour: EventIn(
            name=name, external_id=f"cus_{who}", idempotency_key=key, occurred_at=T0 + dt.timedelta(minutes=minute),
            properties={"plan": plan, "due_at": (T0 + dt.timedelta(hours=due)).isoformat()},
            contact_data={"attributes": {"colour": colour}} if colour else {},
        ),
        name=st.sampled_from(["go", "go", "stop", "win", "noise"]),
        who=st.sampled_from(["a", "b"]),
        minute=st.integers(0, 60),  # out of order: arrival order is list order
        key=st.sampled_from([f"k{i}" for i in range(12)]),  # repeated keys are duplicates
        plan=st.sampled_from(["pro", "free"]),
        due=st.integers(0, 48),  # some dates have already passed at NOW
        colour=st.sampled_from(["", "red", "blue"]),
    ),
    min_size=1, max_size=14,
)


def snapshot() -> dict:
    """What was stored, named by idempotency keys and external ids (ids differ between the two runs)."""
    key_of = dict(Event.objects.values_list("pk", "idempotency_key"))

    def named(text: str) -> str:
        return re.sub(r"event (\d+)", lambda m: f"event {key_of[int(m.group(1))]}", text)

    return {
        "events": sorted(Event.objects.values_list("idempotency_key", "name", "contact__external_id", "occurred_at",
                                                   "properties")),
        "contacts": dict(Contact.objects.values_list("external_id", "attributes")),
        "enrollments": sorted(
            (e.journey.key.split("-")[0], e.contact.external_id, key_of.get(e.trigger_event_id), e.status,
             e.entered_at, e.next_run_at, e.ended_at, named(e.end_reason), e.current_step_type, e.send_pending)
            for e in Enrollment.objects.select_related("journey", "contact")
        ),
        "decisions": sorted(
            (d.journey.key.split("-")[0], d.contact.external_id, key_of.get(d.event_id), d.outcome, named(d.detail))
            for d in EntryDecision.objects.select_related("journey", "contact")
        ),
    }


def in_one_request(events: list[EventIn]) -> dict:
    events_ingest(events=events, actor="test", now=NOW)
    assert process_events(now=NOW, batch_size=1000) == len({e.idempotency_key for e in events})
    return snapshot()


def one_request_each(events: list[EventIn]) -> dict:
    for event in events:
        events_ingest(events=[event], actor="test", now=NOW)
        process_events(now=NOW, batch_size=1000)  # the task its commit enqueues
    return snapshot()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events_in, reentry=st.sampled_from(["once", "always", {"cooldown": "30m"}]))
@pytest.mark.django_db
@pytest.mark.postgres
def test_one_request_of_many_events_decides_as_one_request_per_event(events, reentry):
    with rolled_back():
        journeys(reentry, next(JOURNEYS))
        with rolled_back():
            batched = in_one_request(events)
        with rolled_back():
            alone = one_request_each(events)

    assert batched == alone


@pytest.mark.django_db
@pytest.mark.postgres
def test_an_exit_later_in_the_same_batch_ends_the_enrollment_the_batch_opened():
    journeys("always", next(JOURNEYS))
    go = EventIn(name="go", external_id="cus_a", idempotency_key="go", occurred_at=T0)
    stop = EventIn(name="stop", external_id="cus_a", idempotency_key="stop", occurred_at=T0 + dt.timedelta(minutes=5))
    again = EventIn(name="go", external_id="cus_a", idempotency_key="again", occurred_at=T0 + dt.timedelta(minutes=9))

    events_ingest(events=[go, stop, again], actor="test", now=NOW)
    process_events(now=NOW)

    rows = Enrollment.objects.filter(journey__key__startswith="main").order_by("entered_at")
    assert [(e.trigger_event.idempotency_key, e.status) for e in rows] == [
        ("go", EnrollmentStatus.EXITED), ("again", EnrollmentStatus.ACTIVE),
    ]
    assert rows[0].end_reason == f"exit stop (event {Event.objects.get(idempotency_key='stop').pk})"
    assert set(EntryDecision.objects.filter(journey__key__startswith="main").values_list("outcome", flat=True)) == {
        EntryOutcome.ENTERED
    }


@pytest.mark.django_db
@pytest.mark.postgres
def test_an_exit_that_arrived_first_but_happened_after_the_entry_still_keeps_the_contact_out_in_one_batch():
    journeys("always", next(JOURNEYS))
    stop = EventIn(name="stop", external_id="cus_a", idempotency_key="stop", occurred_at=T0 + dt.timedelta(minutes=5))
    go = EventIn(name="go", external_id="cus_a", idempotency_key="go", occurred_at=T0)

    events_ingest(events=[stop, go], actor="test", now=NOW)
    process_events(now=NOW)

    assert not Enrollment.objects.filter(journey__key__startswith="main").exists()
    decision = EntryDecision.objects.get(journey__key__startswith="main")
    assert decision.outcome == EntryOutcome.EXITED_BEFORE_ENTRY
