"""While a contact has an open case, marketing waits (a channels send guard,
the reason on the message); suppression rules stop other journeys on case
events, cancelling their pending messages."""

from __future__ import annotations

import datetime as dt

import pytest

from channels.models import MessageStatus, OriginKind, OutboundMessage
from channels.services import Origin, send
from consent.models import ConsentSource, ConsentStatus
from consent.services import consent_record
from journeys import services as journey_services
from journeys.models import Enrollment, EnrollmentStatus
from support import services
from support.models import CaseEventKind, SuppressionRule
from tests.support import factories
from tests.templates.factories import approved_template

PROMO = {"subject": "Spring offer", "html": "<p>10% off</p>",
         "sender_profile": {"from_email": "hi@example.com", "from_name": "Shop"}}


@pytest.fixture
def subscriber(db):
    contact = factories.contact()
    consent_record(contact=contact, channel="email", purpose="marketing", status=ConsentStatus.GRANTED,
                   source=ConsentSource.CONFIRMATION, actor="test")
    approved_template("promo-email", "email", "marketing", content=PROMO)
    return contact


def promo(contact, key: str):
    return send(contact=contact, data={}, template_key="promo-email", idempotency_key=key,
                origin=Origin(kind=OriginKind.API, label="promo"))


def test_marketing_waits_while_the_contact_has_an_open_case_and_says_why(subscriber, billing):
    case = factories.case(contact_=subscriber, team_=billing)
    result = promo(subscriber, "promo-1")
    assert result.status == "deferred"
    message = result.messages[0]
    assert message.decision_reason == "support_case_open"
    assert case.number in message.decision_detail
    services.case_resolve(case=case, actor="test")
    assert promo(subscriber, "promo-2").status == "queued"


def test_operational_messages_are_not_held(subscriber, billing, case_templates):
    factories.case(contact_=subscriber, team_=billing)
    assert send(contact=subscriber, data={"event": {"case_number": "C-1"}}, template_key="case-callback-sms",
                idempotency_key="op-1", origin=Origin(kind=OriginKind.API)).status == "queued"


def test_the_hold_can_be_turned_off(subscriber, billing, settings):
    settings.SUPPORT_MARKETING_HOLD_STATUSES = []
    factories.case(contact_=subscriber, team_=billing)
    assert promo(subscriber, "promo-3").status == "queued"


REMINDERS = {
    "trigger": {"event": "payment.failed"},
    "reentry": "always",
    "steps": [
        {"key": "first", "type": "send", "template": "payment-failed-sms"},
        {"key": "pause", "type": "wait", "duration": "3d"},
        {"key": "second", "type": "send", "template": "payment-failed-sms"},
    ],
}


@pytest.fixture
def reminders(db):
    approved_template("payment-failed-sms", "sms", content={"body": "Your payment failed"})
    journey = journey_services.journey_create(key="payment-failed-reminders", name="Payment reminders",
                                              message_class="operational", actor="marketer", definition=REMINDERS)
    version = journey_services.journey_publish(journey=journey, actor="marketer")
    if version.status == "in_review":
        journey_services.journey_version_approve(version=version, actor="reviewer")
    journey.refresh_from_db()
    return journey


def test_a_resolved_billing_case_stops_the_payment_reminders_and_cancels_their_queued_message(reminders, billing):
    SuppressionRule.objects.create(name="refund stops reminders", on="resolved", category="billing",
                                   journey_key_prefix="payment-failed")
    case = factories.case(team_=billing, category="billing")
    now = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
    [enrollment] = journey_services.enrollments_enroll(journey=reminders, contacts=[case.contact], actor="test",
                                                       now=now)
    journey_services.advance(now=now)
    queued = OutboundMessage.objects.get(origin_enrollment_id=enrollment.pk)
    assert queued.status == MessageStatus.QUEUED

    services.case_resolve(case=case, actor="test", now=now + dt.timedelta(minutes=5))

    queued.refresh_from_db()
    enrollment.refresh_from_db()
    assert queued.status == MessageStatus.CANCELLED
    assert enrollment.status == EnrollmentStatus.EXITED and "refund stops reminders" in enrollment.end_reason
    assert case.events.filter(kind=CaseEventKind.SUPPRESSION, actor="rule:refund stops reminders").exists()


def test_a_rule_for_another_category_leaves_the_journey_alone(reminders, billing):
    SuppressionRule.objects.create(name="billing only", on="resolved", category="billing",
                                   journey_key_prefix="payment-failed")
    case = factories.case(team_=billing, category="technical")
    [enrollment] = journey_services.enrollments_enroll(journey=reminders, contacts=[case.contact], actor="test")
    services.case_resolve(case=case, actor="test")
    assert Enrollment.objects.get(pk=enrollment.pk).status == EnrollmentStatus.ACTIVE
