"""Two real database connections at once: ticks never double-process, and
an exit racing with a send cancels what the tick queued."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction

from channels.models import OutboundMessage
from journeys import engine
from journeys.events import process_events
from journeys.models import Enrollment, EnrollmentStatus, StepExecution
from tests.consent.factories import ContactFactory
from tests.journeys import factories
from tests.journeys.conftest import T0, emit, run

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _in_thread(target, results: list, *args):
    def body():
        try:
            results.append(target(*args))
        except Exception as error:  # surfaced by the assertion in the test
            results.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def test_two_ticks_running_at_once_never_send_twice():
    factories.template("welcome-email", "email")
    factories.live_journey("busy", [{"key": "mail", "type": "send", "template": "welcome-email"}],
                           trigger={"event": "user.signed_up"})
    contacts = ContactFactory.create_batch(40)
    for contact in contacts:
        emit(contact, "user.signed_up", T0)
    process_events(now=T0)
    barrier = threading.Barrier(2)

    def tick_until_idle():
        barrier.wait()
        total = 0
        while advanced := engine.advance(now=T0, batch_size=5):
            total += advanced
        return total

    results: list = []
    threads = [_in_thread(tick_until_idle, results) for _ in range(2)]
    for thread in threads:
        thread.join()

    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 40
    assert OutboundMessage.objects.count() == 40
    assert StepExecution.objects.count() == 40
    assert set(Enrollment.objects.values_list("status", flat=True)) == {EnrollmentStatus.COMPLETED}


def test_an_exit_processed_while_a_tick_sends_cancels_the_queued_message():
    factories.template("welcome-email", "email")
    factories.live_journey("race", [
        {"key": "pause", "type": "wait", "duration": "1h"},
        {"key": "mail", "type": "send", "template": "welcome-email"},
    ], trigger={"event": "user.signed_up"}, goal_events=["user.activated"])
    contact = ContactFactory()
    emit(contact, "user.signed_up", T0)
    run(T0)
    later = T0 + dt.timedelta(hours=1)
    results: list = []

    with transaction.atomic():
        # The tick has claimed the enrollment and read its events...
        claimed = engine._claim(later, 10, None)
        batch = engine.load_batch(claimed, later)
        # ...when the goal event comes in and its processing waits on the row lock.
        _in_thread(emit, [], contact, "user.activated", later).join()
        processor = _in_thread(lambda: process_events(now=later), results)
        time.sleep(0.5)
        assert processor.is_alive()
        engine.run_batch(claimed, batch)
        assert OutboundMessage.objects.get(contact=contact).status == "queued"
    processor.join()

    assert results == [1]
    assert OutboundMessage.objects.get(contact=contact).status == "cancelled"
    # The send was the last step: the enrollment had completed, its message had not gone yet.
    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.COMPLETED


def test_an_exit_racing_with_a_send_in_the_middle_ends_the_enrollment_and_cancels_the_message():
    factories.template("welcome-email", "email")
    factories.live_journey("race", [
        {"key": "mail", "type": "send", "template": "welcome-email"},
        {"key": "pause", "type": "wait", "duration": "1d"},
    ], trigger={"event": "user.signed_up"}, goal_events=["user.activated"])
    contact = ContactFactory()
    emit(contact, "user.signed_up", T0)
    process_events(now=T0)
    results: list = []

    with transaction.atomic():
        claimed = engine._claim(T0, 10, None)
        batch = engine.load_batch(claimed, T0)
        _in_thread(emit, [], contact, "user.activated", T0).join()
        processor = _in_thread(lambda: process_events(now=T0), results)
        time.sleep(0.5)
        assert processor.is_alive()
        engine.run_batch(claimed, batch)
    processor.join()

    assert results == [1]
    assert OutboundMessage.objects.get(contact=contact).status == "cancelled"
    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.CONVERTED
