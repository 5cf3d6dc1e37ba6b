"""Each starter journey end to end: the shipped YAML loaded by seed_demo's
journeys/demo.py with the demo templates, events in, and
`advance_journeys --now` stepped through a simulated week (or the journey's
own span), as an operator or a test harness would run it."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command

from channels.models import OutboundMessage
from consent.models import PushDevice
from journeys import demo
from journeys.events import in_holdout
from journeys.models import Enrollment, EnrollmentStatus, EntryDecision, EntryOutcome, Journey, JourneyStatus, Task
from templates import demo as template_demo
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import T0, emit
from tests.journeys.factories import grant

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
HOUR = dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def starters(db):
    template_demo.seed()
    assert demo.seed() == len(demo.starter_files())
    assert demo.seed() == 0  # idempotent


def advance_to(at: dt.datetime) -> None:
    call_command("advance_journeys", "--now", at.isoformat(), stdout=io.StringIO())
    hand_over_queued(at)


def hand_over_queued(at: dt.datetime) -> None:
    """What the delivery workers do within seconds (their own tests cover the
    providers): every queued message is handed to its provider."""
    from channels.services import message_transition

    for message in OutboundMessage.objects.filter(status="queued"):
        message_transition(message=message, to="sending", now=at)
        message_transition(message=message, to="sent", now=at)


def step_through(start: dt.datetime, end: dt.datetime, step: dt.timedelta = HOUR) -> None:
    at = start
    while at <= end:
        advance_to(at)
        at += step


def sent(contact) -> list[tuple[str, str, dt.datetime]]:
    rows = OutboundMessage.objects.filter(contact=contact).order_by("created_at", "id")
    assert all(m.status == "sent" for m in rows), [(m.template_key, m.status, m.decision_reason) for m in rows]
    return [(m.origin_step_key, m.channel, m.created_at) for m in rows]


def customer(external_id: str | None = None, **fields):
    contact = ContactFactory(**({"external_id": external_id} if external_id else {}), timezone="Europe/Lisbon",
                             attributes={"first_name": "Ana"}, **fields)
    PushDevice.objects.create(contact=contact, platform="android", token=f"token-{contact.external_id}")
    return contact


def test_every_starter_journey_is_loaded_active_with_an_approved_version():
    journeys = Journey.objects.all()
    assert journeys.count() == 8
    assert {j.status for j in journeys} == {JourneyStatus.ACTIVE}
    assert all(j.live_version.reviewed_by == demo.REVIEWER for j in journeys)


def test_onboarding_activation_emails_then_nudges_by_sms_and_push_then_opens_a_task():
    stalled, activated = customer(), customer()
    grant(stalled, "sms", at=T0 - dt.timedelta(days=1))
    emit(stalled, "user.signed_up", T0)
    emit(activated, "user.signed_up", T0)
    emit(activated, "user.activated", T0 + 10 * HOUR)

    step_through(T0, T0 + dt.timedelta(days=7))

    assert sent(stalled) == [("welcome-email", "email", T0), ("nudge-sms", "sms", T0 + 24 * HOUR),
                             ("nudge-push", "push", T0 + 24 * HOUR)]
    task = Task.objects.get(contact=stalled)
    assert task.created_at == T0 + 72 * HOUR
    assert Enrollment.objects.get(contact=stalled).status == EnrollmentStatus.COMPLETED
    assert sent(activated) == [("welcome-email", "email", T0)]
    assert Enrollment.objects.get(contact=activated).status == EnrollmentStatus.CONVERTED


def test_onboarding_skips_the_sms_without_sms_consent():
    contact = customer()
    emit(contact, "user.signed_up", T0)

    step_through(T0, T0 + dt.timedelta(days=2))

    assert [channel for _, channel, _ in sent(contact)] == ["email", "push"]


def test_appointment_reminders_email_sms_with_reply_c_and_push_and_a_cancellation_stops_them():
    appointment = T0 + dt.timedelta(days=7, hours=6)
    keeps, cancels = customer(), customer()
    for contact in (keeps, cancels):
        emit(contact, "appointment.booked", T0, appointment_at=appointment.isoformat())
    emit(cancels, "appointment.cancelled", T0 + dt.timedelta(days=1))
    emit(keeps, "message.replied", appointment - 22 * HOUR, body="C")

    step_through(T0, appointment)

    assert sent(keeps) == [("email-7d", "email", appointment - dt.timedelta(days=7)),
                           ("sms-24h", "sms", appointment - 24 * HOUR),
                           ("push-1h", "push", appointment - HOUR)]
    keeps.refresh_from_db()
    assert keeps.attributes["appointment_confirmed"] is True
    assert sent(cancels) == [("email-7d", "email", appointment - dt.timedelta(days=7))]
    assert Enrollment.objects.get(contact=cancels, journey__key="appointment-reminders").status == "exited"


def test_appointment_reply_r_opens_a_reschedule_task_and_stops_reminders():
    appointment = T0 + dt.timedelta(days=2)
    contact = customer()
    emit(contact, "appointment.booked", T0, appointment_at=appointment.isoformat())
    emit(contact, "message.replied", appointment - 23 * HOUR, body="r")

    step_through(T0, appointment)

    assert [step for step, _, _ in sent(contact)] == ["sms-24h"]
    assert Task.objects.get(contact=contact).title.startswith("Reschedule")


def test_whatsapp_reminder_falls_back_to_sms_when_no_reply_comes():
    appointment = T0 + dt.timedelta(days=3)
    contact = customer()
    grant(contact, "whatsapp", "operational", at=T0 - dt.timedelta(days=1))
    emit(contact, "appointment.booked", T0, appointment_at=appointment.isoformat(), reminder_channel="whatsapp")

    step_through(T0, appointment)

    assert sent(contact) == [("whatsapp-24h", "whatsapp", appointment - 24 * HOUR),
                             ("sms-fallback", "sms", appointment - 20 * HOUR)]
    assert not Enrollment.objects.filter(contact=contact, journey__key="appointment-reminders").exists()


def test_whatsapp_reminder_booked_later_than_24_hours_before_does_not_enter_and_says_why():
    appointment = T0 + 20 * HOUR
    contact = customer()
    grant(contact, "whatsapp", "operational", at=T0 - dt.timedelta(days=1))
    emit(contact, "appointment.booked", T0, appointment_at=appointment.isoformat(), reminder_channel="whatsapp")

    step_through(T0, appointment)

    assert sent(contact) == []
    decision = EntryDecision.objects.get(contact=contact, journey__key="whatsapp-appointment-reminder")
    assert decision.outcome == EntryOutcome.CONDITION_FALSE
    assert decision.detail.startswith("appointment_at -24h already passed")


def test_payment_recovery_escalates_email_push_sms_and_stops_when_the_invoice_is_paid():
    unpaid, pays = customer(), customer()
    for contact in (unpaid, pays):
        emit(contact, "payment.failed", T0, amount="49.00", invoice_url="https://example.com/inv/1")
    emit(pays, "invoice.paid", T0 + dt.timedelta(days=2))

    step_through(T0, T0 + dt.timedelta(days=7))

    assert sent(unpaid) == [("email-now", "email", T0), ("push-1d", "push", T0 + dt.timedelta(days=1)),
                            ("sms-3d", "sms", T0 + dt.timedelta(days=3))]
    assert [step for step, _, _ in sent(pays)] == ["email-now", "push-1d"]
    assert Enrollment.objects.get(contact=pays).status == EnrollmentStatus.CONVERTED


def test_renewal_reminders_skip_a_passed_14_day_reminder_and_send_the_3_day_one():
    contact = customer()
    expires = T0 + dt.timedelta(days=10)
    emit(contact, "subscription.renewal_due", T0, expires_at=expires.isoformat())

    step_through(T0, T0 + dt.timedelta(days=7))

    assert sent(contact) == [("email-3d", "email", expires - dt.timedelta(days=3))]


def _not_held_out(prefix: str, percent: int, held: bool) -> str:
    return next(f"{prefix}{n}" for n in range(1000) if in_holdout("re-engagement", f"{prefix}{n}", percent) is held)


def test_re_engagement_mails_at_local_ten_then_pushes_and_holds_out_the_control_group():
    treated = customer(_not_held_out("cus_re_", 10, held=False))
    control = customer(_not_held_out("cus_ctl_", 10, held=True))
    for contact in (treated, control):
        grant(contact, "email", at=T0 - dt.timedelta(days=1))
        grant(contact, "push", at=T0 - dt.timedelta(days=1))
        emit(contact, "user.inactive", T0, days_inactive=20)

    step_through(T0, T0 + dt.timedelta(days=7))

    ten_lisbon = T0 + HOUR  # 10:00 in Lisbon (UTC+0 in March)
    assert sent(treated) == [("email", "email", ten_lisbon), ("push", "push", ten_lisbon + dt.timedelta(days=3))]
    assert sent(control) == []
    assert Enrollment.objects.get(contact=control).is_control


def test_win_back_at_30_60_and_90_days():
    contact = customer()
    grant(contact, "email", at=T0 - dt.timedelta(days=1))
    grant(contact, "sms", at=T0 - dt.timedelta(days=1))
    emit(contact, "subscription.cancelled", T0)

    step_through(T0, T0 + dt.timedelta(days=91), step=dt.timedelta(days=1))

    days = [(step, channel, (at - T0).days) for step, channel, at in sent(contact)]
    assert days == [("email-30d", "email", 30), ("sms-60d", "sms", 60), ("email-90d", "email", 90)]


def test_post_purchase_follow_up_three_days_later_at_local_ten():
    contact = customer()
    grant(contact, "email", at=T0 - dt.timedelta(days=1))
    emit(contact, "order.completed", T0)

    step_through(T0, T0 + dt.timedelta(days=7))

    assert sent(contact) == [("follow-up-email", "email", T0 + dt.timedelta(days=3, hours=1))]


def test_advance_journeys_refuses_a_naive_or_malformed_now():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="offset"):
        call_command("advance_journeys", "--now", "2026-03-02T09:00:00")
    with pytest.raises(CommandError, match="not an ISO-8601"):
        call_command("advance_journeys", "--now", "tomorrow")
