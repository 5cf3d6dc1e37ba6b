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
from journeys.demo import STARTER_DIR, load_starter
from journeys.events import EventIn, events_ingest
from journeys.models import Enrollment, EnrollmentStatus
from support import demo, services
from support.escalation import marketing_hold_guard
from support.models import CaseEventKind, SuppressionRule
from templates import demo as template_demo
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


@pytest.fixture
def payment_recovery(db):
    """The real starter journey and templates the demo seeds."""
    template_demo.seed()
    return load_starter(STARTER_DIR / "payment-recovery.yaml")


def test_the_demo_rule_stops_the_starter_payment_recovery_journey_and_cancels_its_queued_message(
    payment_recovery, billing
):
    assert demo.install_suppression_rule() == 1
    rule = SuppressionRule.objects.get()
    case = factories.case(team_=billing, category="billing")
    now = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
    events_ingest(events=[EventIn(name="payment.failed", external_id=case.contact.external_id,
                                  idempotency_key="pf-1", occurred_at=now,
                                  properties={"amount": "19.90", "invoice_url": "https://example.com/i/1"})],
                  actor="test", now=now)
    journey_services.run_until_idle(now=now)
    enrollment = Enrollment.objects.get(journey=payment_recovery, contact=case.contact)
    queued = OutboundMessage.objects.get(origin_enrollment_id=enrollment.pk)
    assert queued.status == MessageStatus.QUEUED

    services.case_resolve(case=case, actor="test", now=now + dt.timedelta(minutes=5))

    queued.refresh_from_db()
    enrollment.refresh_from_db()
    assert queued.status == MessageStatus.CANCELLED
    assert enrollment.status == EnrollmentStatus.EXITED and rule.name in enrollment.end_reason
    assert case.events.filter(kind=CaseEventKind.SUPPRESSION, actor=f"rule:{rule.name}").exists()


def test_the_demo_rule_leaves_the_journey_alone_for_a_case_of_another_category(payment_recovery, billing):
    demo.install_suppression_rule()
    case = factories.case(team_=billing, category="technical")
    [enrollment] = journey_services.enrollments_enroll(journey=payment_recovery, contacts=[case.contact],
                                                       actor="test")
    services.case_resolve(case=case, actor="test")
    assert Enrollment.objects.get(pk=enrollment.pk).status == EnrollmentStatus.ACTIVE


def test_the_hold_costs_one_query_for_a_batch_of_marketing_sends_at_one_instant(
    billing, django_assert_num_queries
):
    held = [factories.contact() for _ in range(3)]
    free = [factories.contact() for _ in range(3)]
    cases = [factories.case(contact_=contact, team_=billing) for contact in held]
    now = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)

    with django_assert_num_queries(1):
        verdicts = [marketing_hold_guard(contact=contact, channel="email", message_class="marketing", origin=None,
                                         now=now) for contact in held + free]

    assert [v.reason if v else None for v in verdicts] == ["support_case_open"] * 3 + [None] * 3
    assert [cases[i].number in verdicts[i].detail for i in range(3)] == [True] * 3


def test_a_case_opened_or_resolved_within_the_same_instant_is_seen_by_the_hold(billing):
    contact = factories.contact()
    now = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)

    def hold():
        return marketing_hold_guard(contact=contact, channel="email", message_class="marketing", origin=None, now=now)

    assert hold() is None
    case = factories.case(contact_=contact, team_=billing, now=now)
    assert hold().reason == "support_case_open"
    services.case_resolve(case=case, actor="test", now=now)
    assert hold() is None
