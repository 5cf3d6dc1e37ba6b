"""Send guards registered by higher apps, and deferred messages released
when their time comes (quiet hours), the gate deciding again."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine

from channels import services
from channels.models import MessageStatus, OutboundMessage
from consent import services as consent_services
from consent.models import ConsentSource, ConsentStatus, QuietHoursRule
from consent.policy import Decision, Outcome

pytestmark = pytest.mark.django_db
LISBON = zoneinfo.ZoneInfo("Europe/Lisbon")
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "5"}}


@pytest.fixture
def guards(monkeypatch):
    registry: dict = {}
    monkeypatch.setattr(services, "_send_guards", registry)
    return registry


def send(contact, template, key="g", now=None):
    return services.send(contact=contact, data=DATA, origin=services.Origin(kind="journey", step_key="s"),
                         idempotency_key=key, template_key=template.key, now=now)


def test_a_guard_that_suppresses_stops_the_send_and_its_reason_is_recorded(contact, sms_template, guards):
    seen = []

    def cap(*, contact, channel, message_class, origin, now):
        seen.append((channel, message_class, origin.step_key))
        return Decision(Outcome.SUPPRESS, "frequency_cap", detail="3 in 24h")

    services.register_send_guard("caps", cap)
    result = send(contact, sms_template)
    assert result.status == services.SendStatus.SUPPRESSED
    message = result.messages[0]
    assert (message.decision_reason, message.decision_detail) == ("frequency_cap", "guard caps: 3 in 24h")
    assert seen == [("sms", "operational", "s")]


def test_a_guard_returning_none_lets_the_send_through(contact, sms_template, guards):
    services.register_send_guard("noop", lambda **kw: None)
    assert send(contact, sms_template).status == services.SendStatus.QUEUED


def test_guards_are_not_asked_when_the_gate_already_refused(contact, sms_template, guards):
    called = []
    services.register_send_guard("spy", lambda **kw: called.append(1))
    consent_services.consent_record(contact=contact, channel="sms", purpose="operational",
                                    status=ConsentStatus.REVOKED, source=ConsentSource.API, actor="t")
    assert send(contact, sms_template).status == services.SendStatus.SUPPRESSED
    assert called == []


@pytest.fixture
def quiet_nights(db):
    return QuietHoursRule.objects.create(name="nights", start=dt.time(21), end=dt.time(8))


def test_a_message_in_quiet_hours_is_deferred_then_released_and_rendered(contact, sms_template, quiet_nights):
    night = dt.datetime(2026, 11, 23, 23, 0, tzinfo=LISBON)
    with time_machine.travel(night, tick=False):
        result = send(contact, sms_template, now=night)
    assert result.status == services.SendStatus.DEFERRED
    message = result.messages[0]
    assert message.deliver_after == dt.datetime(2026, 11, 24, 8, 0, tzinfo=LISBON)
    assert message.content == {}
    assert services.messages_release_deferred(now=night + dt.timedelta(hours=1)) == 0
    assert services.messages_release_deferred(now=message.deliver_after) == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert message.content["body"] == "Hi Ana, code 5"
    assert message.render_data == {}


def test_a_release_twice_queues_once(contact, sms_template, quiet_nights):
    night = dt.datetime(2026, 11, 23, 23, 0, tzinfo=LISBON)
    message = send(contact, sms_template, now=night).messages[0]
    morning = night + dt.timedelta(hours=10)
    assert services.messages_release_deferred(now=morning) == 1
    assert services.messages_release_deferred(now=morning) == 0
    assert OutboundMessage.objects.get(pk=message.pk).events.filter(status="queued").count() == 1
