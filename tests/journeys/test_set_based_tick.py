"""The tick writes a batch's sends together: a fixed number of queries per
batch whatever its size, and a batch whose write fails is run again send
by send, with nothing written twice or lost."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels.models import DeliveryEvent, OutboundMessage
from channels.services import _DeliveryFlush
from consent.models import QuietHoursRule
from journeys.engine import advance
from journeys.models import CapRule, Enrollment, StepExecution, StepOutcome
from journeys.steps import HANDLERS, send_key
from tests.consent.factories import ContactFactory
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def due_at_send(journey, count: int, at: dt.datetime, *, quiet_every: int = 0) -> list[Enrollment]:
    """`count` enrollments resting at the journey's send step, due at `at`
    (09:00 UTC); every `quiet_every`th contact lives where it is 06:00,
    inside quiet hours (its message is deferred)."""
    enrollments = []
    for index in range(count):
        quiet = quiet_every and index % quiet_every == 0
        contact = ContactFactory(timezone="Etc/GMT+3" if quiet else "Europe/Lisbon")
        enrollments.append(Enrollment.objects.create(
            journey=journey, version_id=journey.live_version_id, contact=contact, current_step="s",
            current_step_type="send", send_pending=True, visits={"s": 1}, next_run_at=at - dt.timedelta(minutes=1),
            entered_at=at - dt.timedelta(hours=1),
        ))
    return enrollments


def another_writer_takes_the_key_of(taken: Enrollment, at: dt.datetime, monkeypatch) -> None:
    """When the tick reaches `taken`'s send step (after the batch looked its
    keys up), another writer stores a message with its key: the batch's INSERT
    of that key fails and the batch runs again send by send."""
    real_send = HANDLERS["send"]

    def send_after_another_writer(enrollment, step, batch):
        key = send_key(enrollment, "s")
        if enrollment.pk == taken.pk and not OutboundMessage.objects.filter(idempotency_key=key).exists():
            OutboundMessage.objects.create(contact=enrollment.contact, channel="sms", idempotency_key=key,
                                           origin_kind="journey", status="sent", created_at=at,
                                           status_changed_at=at)
        return real_send(enrollment, step, batch)

    monkeypatch.setitem(HANDLERS, "send", send_after_another_writer)


@pytest.fixture
def sms_journey(sms_template):
    QuietHoursRule.objects.create(name="nights", channel="sms", start=dt.time(21), end=dt.time(8))
    CapRule.objects.create(name="three a day", channel="sms", max_messages=3, window_hours=24)
    return live_journey("reminders", [{"key": "s", "type": "send", "template": "nudge-sms"}],
                        trigger={"event": "never.happens"})


def test_a_ticks_query_count_does_not_grow_with_its_batch(sms_journey, t0):
    def tick(size: int) -> int:
        ids = [e.pk for e in due_at_send(sms_journey, size, t0, quiet_every=4)]
        with CaptureQueriesContext(connection) as queries:
            assert advance(now=t0, batch_size=size, only_enrollment_ids=ids) == size
        statuses = sorted(OutboundMessage.objects.filter(origin_enrollment_id__in=ids).values_list("status", flat=True))
        assert statuses == ["deferred"] * (size // 4) + ["queued"] * (size - size // 4)
        return len(queries.captured_queries)

    small, large = tick(20), tick(80)

    assert large - small <= 2, (small, large)
    assert large < 80 // 2  # far under one query per enrollment


def test_a_batch_whose_write_fails_runs_again_send_by_send_and_sends_nothing_twice(sms_journey, t0, monkeypatch):
    first, second, third = due_at_send(sms_journey, 3, t0)
    another_writer_takes_the_key_of(second, t0, monkeypatch)

    assert advance(now=t0) == 3

    outcomes = dict(StepExecution.objects.values_list("enrollment_id", "outcome"))
    assert outcomes == {first.pk: StepOutcome.SENT, second.pk: StepOutcome.DUPLICATE, third.pk: StepOutcome.SENT}
    by_contact = dict(OutboundMessage.objects.values_list("idempotency_key", "status"))
    assert by_contact == {send_key(e, "s"): s for e, s in [(first, "queued"), (second, "sent"), (third, "queued")]}
    assert DeliveryEvent.objects.count() == 2  # one status event per message the tick wrote
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"completed"}


def test_a_batch_run_again_starts_from_what_the_claim_read(sms_template, t0, monkeypatch):
    """The pass that is rolled back renamed the contacts after texting them:
    run again, each text still greets them by their name at the claim."""
    journey = live_journey("text-then-rename", [
        {"key": "s", "type": "send", "template": "nudge-sms"},
        {"key": "u", "type": "update_attribute", "attribute": "first_name", "value": "Renamed"},
    ], trigger={"event": "never.happens"})
    first, second, third = due_at_send(journey, 3, t0)
    for enrollment, name in zip((first, second, third), ("Ana", "Bo", "Cy"), strict=True):
        enrollment.contact.attributes = {"first_name": name}
        enrollment.contact.save()
    another_writer_takes_the_key_of(second, t0, monkeypatch)

    assert advance(now=t0) == 3

    bodies = dict(OutboundMessage.objects.filter(origin_enrollment_id__isnull=False)
                  .values_list("origin_enrollment_id", "content__body"))
    assert bodies == {first.pk: "Hi Ana", third.pk: "Hi Cy"}
    assert {e.contact.attributes["first_name"] for e in Enrollment.objects.select_related("contact")} == {"Renamed"}
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"completed"}


def test_a_batch_run_again_publishes_each_webhook_call_once(sms_template, t0, monkeypatch,
                                                            django_capture_on_commit_callbacks):
    journey = live_journey("hook-then-send", [
        {"key": "w", "type": "webhook", "url": "http://127.0.0.1:9/hook"},
        {"key": "s", "type": "send", "template": "nudge-sms"},
    ], trigger={"event": "never.happens"})

    def resting_at_the_webhook(count: int) -> list[Enrollment]:
        enrollments = due_at_send(journey, count, t0)
        Enrollment.objects.filter(pk__in=[e.pk for e in enrollments]).update(
            current_step="w", current_step_type="webhook", send_pending=False, visits={"w": 1})
        return enrollments

    def tick(ids: list[int]) -> int:
        with django_capture_on_commit_callbacks() as callbacks:
            assert advance(now=t0, only_enrollment_ids=ids) == len(ids)
        # Delivery publishing is counted elsewhere: one by one, each send publishes its own.
        return sum(1 for callback in callbacks if not isinstance(callback, _DeliveryFlush))

    published_in_one_pass = tick([e.pk for e in resting_at_the_webhook(3)])

    another_writer_takes_the_key_of(resting_at_the_webhook(3)[1], t0, monkeypatch)
    ids = list(Enrollment.objects.filter(current_step="w").values_list("pk", flat=True))

    # The rolled-back pass's webhook publishes go with its rows: one per call, as in a clean pass.
    assert tick(ids) == published_in_one_pass
    assert StepExecution.objects.filter(enrollment_id__in=ids, step_key="s", outcome=StepOutcome.DUPLICATE).count() == 1
