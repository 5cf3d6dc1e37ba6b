"""The gate decides again at delivery: what was queued before a suppression,
an unsubscribe or a revocation never reaches the provider."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from channels import services
from channels.delivery import deliver_batch, messages_claim
from channels.models import MessageStatus, OutboundMessage
from consent import services as consent_services
from consent.models import Channel, ConsentSource, ConsentStatus, QuietHoursRule, SuppressionReason
from consent.policy import Decision, Outcome, Reason
from tests.channels import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}


@pytest.fixture
def guards(monkeypatch):
    monkeypatch.setattr(services, "_send_guards", {})
    monkeypatch.setattr(services, "_delivery_guards", set())


def queue(contact, template, key="q"):
    result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="journey", step_key="s"),
                           idempotency_key=key, template_key=template.key)
    assert result.status == services.SendStatus.QUEUED
    return result.messages[0]


def test_a_revocation_between_send_and_delivery_stops_the_message(contact, sms_template, twilio_accounts,
                                                                  fake_twilio):
    message = queue(contact, sms_template)
    consent_services.consent_record(contact=contact, channel=Channel.SMS, purpose="operational",
                                    status=ConsentStatus.REVOKED, source=ConsentSource.API, actor="test")
    report = deliver_batch(message_ids=[message.pk])
    assert report.claimed == 0
    assert fake_twilio.requests == []
    message.refresh_from_db()
    assert (message.status, message.decision_reason) == (MessageStatus.SUPPRESSED, Reason.CONSENT_REVOKED)
    assert message.events.filter(status=MessageStatus.SUPPRESSED, detail__startswith="at delivery").exists()


def test_a_suppression_between_send_and_delivery_stops_the_message(contact, sms_template, twilio_accounts,
                                                                   fake_twilio):
    message = queue(contact, sms_template)
    consent_services.suppression_create(reason=SuppressionReason.MANUAL, actor="test", contact=contact)
    deliver_batch(message_ids=[message.pk])
    assert fake_twilio.requests == []
    message.refresh_from_db()
    assert (message.status, message.decision_reason) == (MessageStatus.SUPPRESSED, Reason.SUPPRESSED)


def test_only_the_refused_contact_is_stopped_in_a_batch(sms_template, twilio_accounts, fake_twilio):
    stays, leaves = factories.contact_with_everything(), factories.contact_with_everything()
    kept, dropped = queue(stays, sms_template, "a"), queue(leaves, sms_template, "b")
    consent_services.suppression_create(reason=SuppressionReason.MANUAL, actor="test", contact=leaves)
    report = deliver_batch(message_ids=[kept.pk, dropped.pk])
    assert (report.claimed, report.sent) == (1, 1)
    assert [r.form["To"] for r in fake_twilio.requests] == [stays.phone]


def test_the_delivery_check_costs_the_same_queries_for_two_or_twenty_messages(
    sms_template, django_assert_max_num_queries, guards
):
    def claim_of(n: int, prefix: str) -> int:
        ids = [queue(factories.contact_with_everything(), sms_template, f"{prefix}{i}").pk for i in range(n)]
        with django_assert_max_num_queries(1000) as counted:
            assert len(messages_claim(message_ids=ids, now=timezone.now())) == n
        return len(counted.captured_queries)

    assert claim_of(2, "few") == claim_of(20, "many")


def test_a_message_deferred_at_delivery_keeps_its_words_and_goes_when_released(contact, sms_template,
                                                                                 console_accounts):
    message = queue(contact, sms_template)
    QuietHoursRule.objects.create(name="always", start=dt.time(0), end=dt.time(23, 59))
    now = timezone.now()
    deliver_batch(message_ids=[message.pk], now=now)
    message.refresh_from_db()
    assert (message.status, message.decision_reason) == (MessageStatus.DEFERRED, Reason.QUIET_HOURS)
    assert message.deliver_after is not None and message.deliver_after > now
    QuietHoursRule.objects.all().delete()
    assert services.messages_release_deferred(now=message.deliver_after) == 1
    message.refresh_from_db()
    assert (message.status, message.content["body"]) == (MessageStatus.QUEUED, "Hi Ana, code 42")


def test_a_stop_confirmation_still_goes_out_after_the_revocation_it_confirms(contact, twilio_accounts, fake_twilio):
    from channels.inbound import inbound_receive

    inbound_receive(provider="twilio", provider_message_id="SMstop", from_address=contact.phone, to_address="",
                    body="STOP", payload={})
    confirmation = OutboundMessage.objects.get(origin_kind="system")
    deliver_batch(message_ids=[confirmation.pk])
    assert [r.form["To"] for r in fake_twilio.requests] == [contact.phone]


def test_a_guard_registered_for_delivery_is_asked_again(contact, sms_template, console_accounts, guards, settings):
    settings.CHANNELS_GUARD_DEFER_MINUTES = 15
    holding = []
    services.register_send_guard(
        "case_hold", lambda **kw: Decision(Outcome.DEFER, "case_hold") if holding else None, at_delivery=True
    )
    message = queue(contact, sms_template)
    holding.append(True)
    now = timezone.now()
    deliver_batch(message_ids=[message.pk], now=now)
    message.refresh_from_db()
    assert (message.status, message.decision_reason) == (MessageStatus.DEFERRED, "case_hold")
    # A deferral without a time is looked at again after CHANNELS_GUARD_DEFER_MINUTES, never left NULL.
    assert message.deliver_after == now + dt.timedelta(minutes=15)


def test_a_guard_that_counts_the_outbox_is_not_asked_again_at_delivery(contact, sms_template, console_accounts,
                                                                       guards):
    def one_message_cap(*, contact, **kw):
        queued = OutboundMessage.objects.filter(contact=contact, status__in=["queued", "sending", "sent"]).count()
        return Decision(Outcome.SUPPRESS, "frequency_cap") if queued >= 1 else None

    services.register_send_guard("cap", one_message_cap)
    message = queue(contact, sms_template)
    deliver_batch(message_ids=[message.pk])
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED  # it would count itself and be capped


def test_a_deferral_without_a_time_at_release_is_looked_at_again_later(contact, sms_template, guards, settings):
    settings.CHANNELS_GUARD_DEFER_MINUTES = 20
    now = timezone.now()
    services.register_send_guard("hold", lambda **kw: Decision(Outcome.DEFER, "held", until=now))
    message = services.send(contact=contact, data=DATA, origin=services.Origin(kind="journey"),
                            idempotency_key="d", template_key=sms_template.key, now=now).messages[0]
    services.register_send_guard("hold", lambda **kw: Decision(Outcome.DEFER, "held"))
    later = now + dt.timedelta(minutes=1)
    assert services.messages_release_deferred(now=later) == 0
    message.refresh_from_db()
    assert message.status == MessageStatus.DEFERRED
    assert message.deliver_after == later + dt.timedelta(minutes=20)
