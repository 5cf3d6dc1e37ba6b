"""A step that raises parks its own enrollment (backoff, a FAILED step
execution with the error) and the rest of the batch commits."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from channels.models import OutboundMessage
from journeys.engine import advance
from journeys.models import Enrollment, StepExecution, StepOutcome
from journeys.steps import HANDLERS
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.usefixtures("email_template")]


def test_one_failing_send_is_parked_and_retried_while_the_rest_of_the_batch_commits(monkeypatch, t0, admin_client):
    live_journey("onb", [{"key": "mail", "type": "send", "template": "welcome-email"}],
                 trigger={"event": "user.signed_up"})
    good, bad = ContactFactory(), ContactFactory()
    emit(good, "user.signed_up", t0)
    emit(bad, "user.signed_up", t0)
    real_send = HANDLERS["send"]

    def send_then_break(enrollment, step, batch):
        result = real_send(enrollment, step, batch)  # writes the message, which must be rolled back
        if enrollment.contact_id == bad.pk:
            raise IndexError("list index out of range")
        return result

    monkeypatch.setitem(HANDLERS, "send", send_then_break)
    run(t0)

    assert list(OutboundMessage.objects.values_list("contact_id", flat=True)) == [good.pk]
    parked = Enrollment.objects.get(contact=bad)
    assert (parked.status, parked.failures, parked.next_run_at) == ("active", 1, t0 + dt.timedelta(minutes=1))
    failed = StepExecution.objects.get(enrollment=parked)
    assert (failed.outcome, failed.step_key, failed.visit) == (StepOutcome.FAILED, "mail", 1)
    assert failed.detail["error"] == "IndexError: list index out of range"
    page = admin_client.get(reverse("admin:journeys_enrollment_change", args=[parked.pk]))
    assert b"IndexError: list index out of range" in page.content

    assert advance(now=t0 + dt.timedelta(seconds=30)) == 0  # backing off
    monkeypatch.setitem(HANDLERS, "send", real_send)
    run(t0 + dt.timedelta(minutes=1))

    assert OutboundMessage.objects.filter(contact=bad, status="queued").count() == 1
    parked.refresh_from_db()
    assert (parked.status, parked.failures) == ("completed", 0)
    path = list(StepExecution.objects.filter(enrollment=parked).order_by("visit").values_list("visit", "outcome"))
    assert path == [(1, StepOutcome.FAILED), (2, StepOutcome.SENT)]


def test_repeated_failures_back_off_longer_each_time(monkeypatch, t0):
    live_journey("onb", [{"key": "mail", "type": "send", "template": "welcome-email"}],
                 trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)

    def broken(enrollment, step, batch):
        raise RuntimeError("template service down")

    monkeypatch.setitem(HANDLERS, "send", broken)
    run(t0)
    run(t0 + dt.timedelta(minutes=1))
    run(t0 + dt.timedelta(minutes=3))

    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.failures == 3
    assert enrollment.next_run_at == t0 + dt.timedelta(minutes=7)
    assert StepExecution.objects.filter(enrollment=enrollment, outcome=StepOutcome.FAILED).count() == 3
