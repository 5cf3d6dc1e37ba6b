from __future__ import annotations

import datetime as dt

import pytest

from channels.models import OutboundMessage
from journeys.models import Enrollment, EnrollmentStatus, StepExecution, StepOutcome
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_an_event_enrolls_the_contact_and_the_first_send_goes_out_at_once(t0, email_template):
    live_journey("welcome", [{"key": "hello", "type": "send", "template": "welcome-email"}],
                 trigger={"event": "user.signed_up"})
    contact = ContactFactory(attributes={"first_name": "Ana"})
    emit(contact, "user.signed_up", t0)

    counts = run(t0)

    assert counts["events"] == 1
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.status == EnrollmentStatus.COMPLETED
    message = OutboundMessage.objects.get(contact=contact)
    assert message.status == "queued"
    assert message.origin_enrollment_id == enrollment.pk
    assert message.origin_step_key == "hello"
    assert message.content["subject"] == "Hello Ana"
    execution = StepExecution.objects.get(enrollment=enrollment)
    assert execution.outcome == StepOutcome.SENT
    assert execution.idempotency_key == f"{enrollment.pk}:hello:1"


def test_a_wait_holds_the_next_send_until_its_time(t0, email_template, sms_template):
    live_journey("nudge", [
        {"key": "hello", "type": "send", "template": "welcome-email"},
        {"key": "pause", "type": "wait", "duration": "24h"},
        {"key": "nudge", "type": "send", "template": "nudge-sms"},
    ], trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)

    run(t0)
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.current_step == "pause"
    assert enrollment.next_run_at == t0 + dt.timedelta(hours=24)
    run(t0 + dt.timedelta(hours=23, minutes=59))
    assert OutboundMessage.objects.filter(contact=contact).count() == 1

    run(t0 + dt.timedelta(hours=24))

    assert list(OutboundMessage.objects.filter(contact=contact).values_list("channel", flat=True).order_by("id")) == [
        "email", "sms"]
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.COMPLETED
