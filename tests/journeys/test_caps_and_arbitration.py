from __future__ import annotations

import datetime as dt

import pytest

from channels.models import OutboundMessage
from journeys.models import CapRule, StepExecution, StepOutcome
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import grant, live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def promo(key: str, template: str = "promo-email", priority: int = 50, **settings):
    return live_journey(key, [{"key": "promo", "type": "send", "template": template}], message_class="marketing",
                        priority=priority, trigger={"event": f"{key}.go"}, reentry="always", **settings)


@pytest.fixture
def customer(db, t0):
    contact = ContactFactory(timezone="UTC")
    grant(contact, "email", at=t0 - dt.timedelta(days=1))
    grant(contact, "sms", at=t0 - dt.timedelta(days=1))
    return contact


def statuses(contact) -> list[tuple[str, str]]:
    return list(OutboundMessage.objects.filter(contact=contact).order_by("id").values_list("status", "decision_reason"))


def test_a_cap_defers_the_message_over_the_limit_until_a_slot_frees(t0, customer, marketing_email):
    CapRule.objects.create(name="3 marketing in 7 days", message_class="marketing", max_messages=3, window_hours=168)
    for day in range(4):
        key = f"promo{day}"
        promo(key)
        emit(customer, f"{key}.go", t0 + dt.timedelta(days=day))
        run(t0 + dt.timedelta(days=day))

    assert [s for s, _ in statuses(customer)] == ["queued", "queued", "queued", "deferred"]
    held = OutboundMessage.objects.filter(contact=customer).order_by("id").last()
    assert held.decision_reason == "frequency_cap"
    assert held.deliver_after == t0 + dt.timedelta(days=7)
    assert "3 of 3" in held.decision_detail
    assert StepExecution.objects.filter(outcome=StepOutcome.DEFERRED, reason="frequency_cap").count() == 1


def test_a_cap_drops_the_message_when_the_journey_says_so(t0, customer, marketing_email):
    CapRule.objects.create(name="1 a day", max_messages=1, window_hours=24)
    promo("first")
    promo("second", on_cap="drop")
    emit(customer, "first.go", t0)
    emit(customer, "second.go", t0 + dt.timedelta(hours=1))

    run(t0 + dt.timedelta(hours=1))

    assert statuses(customer)[1][0] == "suppressed"
    assert statuses(customer)[1][1] == "frequency_cap"


def test_a_per_channel_cap_does_not_hold_another_channel(t0, customer, marketing_email, marketing_sms):
    CapRule.objects.create(name="1 marketing SMS a day", channel="sms", message_class="marketing", max_messages=1,
                           window_hours=24)
    promo("sms1", template="promo-sms")
    promo("sms2", template="promo-sms")
    promo("mail", template="promo-email")
    for key in ("sms1", "sms2", "mail"):
        emit(customer, f"{key}.go", t0)

    run(t0)

    by_channel = sorted(OutboundMessage.objects.filter(contact=customer).values_list("channel", "status"))
    assert by_channel == [("email", "queued"), ("sms", "deferred"), ("sms", "queued")]


def test_transactional_messages_are_exempt_from_caps(t0, customer):
    from tests.journeys.factories import template

    template("receipt", "email", "transactional")
    CapRule.objects.create(name="nothing at all", max_messages=0, window_hours=24)
    live_journey("receipts", [{"key": "r", "type": "send", "template": "receipt"}], message_class="transactional",
                 trigger={"event": "order.paid"})
    emit(customer, "order.paid", t0)

    run(t0)

    assert statuses(customer) == [("queued", "no_consent_needed")]


def test_the_higher_priority_journey_goes_first_and_the_lower_one_waits(t0, customer, marketing_email):
    promo("low", priority=10)
    promo("high", priority=90)
    emit(customer, "low.go", t0)
    emit(customer, "high.go", t0)

    run(t0)

    rows = {m.origin_label.split(" ")[0]: m for m in OutboundMessage.objects.filter(contact=customer)}
    assert rows["high"].status == "queued"
    assert rows["low"].status == "deferred"
    assert rows["low"].decision_reason == "arbitration"
    assert rows["low"].deliver_after == rows["high"].created_at + dt.timedelta(minutes=60)


def test_arbitration_drops_the_lower_message_when_its_journey_says_so(t0, customer, marketing_email):
    promo("high", priority=90)
    promo("low", priority=10, on_conflict="drop")
    emit(customer, "high.go", t0)
    run(t0)
    emit(customer, "low.go", t0 + dt.timedelta(minutes=10))

    run(t0 + dt.timedelta(minutes=10))

    low = OutboundMessage.objects.get(contact=customer, origin_label__startswith="low")
    assert (low.status, low.decision_reason) == ("suppressed", "arbitration")


def test_a_lower_priority_journey_after_the_window_is_not_held(t0, customer, marketing_email):
    promo("high", priority=90)
    promo("low", priority=10)
    emit(customer, "high.go", t0)
    run(t0)
    emit(customer, "low.go", t0 + dt.timedelta(hours=2))

    run(t0 + dt.timedelta(hours=2))

    assert [s for s, _ in statuses(customer)] == ["queued", "queued"]


def test_a_higher_priority_send_due_soon_holds_a_lower_one_now(t0, customer, marketing_email):
    live_journey("high", [
        {"key": "soon", "type": "wait", "duration": "20m"},
        {"key": "promo", "type": "send", "template": "promo-email"},
    ], message_class="marketing", priority=90, trigger={"event": "high.go"})
    promo("low", priority=10)
    emit(customer, "high.go", t0)
    run(t0)
    run(t0 + dt.timedelta(minutes=19))  # not yet
    emit(customer, "low.go", t0 + dt.timedelta(minutes=19))
    run(t0 + dt.timedelta(minutes=19))

    low = OutboundMessage.objects.get(contact=customer, origin_label__startswith="low")
    assert (low.status, low.decision_reason) == ("deferred", "arbitration")


def test_a_message_deferred_one_day_and_released_the_next_counts_on_the_day_it_went_out(
    t0, customer, marketing_email
):
    from channels.services import messages_release_deferred

    CapRule.objects.create(name="1 marketing a day", message_class="marketing", max_messages=1, window_hours=24)
    sunday_noon = t0 - dt.timedelta(hours=21)
    for key in ("a", "b", "c"):
        promo(key)
    emit(customer, "a.go", sunday_noon)
    run(sunday_noon)
    emit(customer, "b.go", t0)  # Monday 09:00: capped until Monday 12:00
    run(t0)
    monday_noon = t0 + dt.timedelta(hours=3)
    assert statuses(customer)[1] == ("deferred", "frequency_cap")
    assert messages_release_deferred(now=monday_noon) == 1  # created Monday 09:00, went out Monday 12:00

    tuesday = t0 + dt.timedelta(days=1, hours=1)  # 25 hours after b was created, 22 after it went out
    emit(customer, "c.go", tuesday)
    run(tuesday)

    assert statuses(customer)[2] == ("deferred", "frequency_cap")
    held = OutboundMessage.objects.filter(contact=customer).order_by("id").last()
    assert held.deliver_after == monday_noon + dt.timedelta(hours=24)


def test_a_cap_rule_of_zero_messages_is_refused_with_a_form_error(admin_client):
    from django.core.exceptions import ValidationError
    from django.urls import reverse

    with pytest.raises(ValidationError) as error:
        CapRule(name="none", max_messages=0, window_hours=24).full_clean()
    page = admin_client.post(reverse("admin:journeys_caprule_add"),
                             {"name": "none", "channel": "", "message_class": "", "max_messages": "0",
                              "window_hours": "0", "active": "on"})

    assert set(error.value.message_dict) == {"max_messages"}
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert set(form.errors) == {"max_messages", "window_hours"}
    assert not CapRule.objects.exists()
