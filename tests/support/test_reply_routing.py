"""Inbound replies: threaded on the contact's open case, else left on the
contact; keyword rules open a case or raise the open one and tell its agent;
a reply a journey waits for ("C", "R") is left to that journey."""

from __future__ import annotations

import pytest
from django.core import mail

from channels.inbound import inbound_receive
from channels.models import InboundMessage, MessageStatus
from channels.services import Origin, OriginKind, message_transition, send
from journeys import services as journey_services
from support import services
from support.models import CaseEventKind, CaseSource, CaseStatus, KeywordRule, Notification, SupportCase
from support.routing import Route, inbound_route, journey_reply_keywords
from tests.support import factories
from tests.templates.factories import approved_template

_ids = iter(range(1, 10_000))


def reply(customer, body: str, capture) -> InboundMessage:
    """An SMS reply through channels' real inbound path; the signal fires on commit."""
    with capture(execute=True):
        return inbound_receive(provider="test", provider_message_id=f"SM-{next(_ids)}", from_address=customer.phone,
                               to_address="+15550000000", body=body, payload={})


@pytest.fixture
def customer(db):
    return factories.contact()


def test_the_default_keyword_rules_are_seeded(db):
    phrases = set(KeywordRule.objects.values_list("phrase", flat=True))
    assert {"urgent", "cancel", "charged twice", "refund", "speak to a person"} <= phrases


def test_a_reply_is_threaded_on_the_contact_open_case_and_a_pending_case_reopens(
    billing, customer, django_capture_on_commit_callbacks
):
    case = factories.case(contact_=customer, team_=billing)
    services.case_mark_pending(case=case, actor="test")
    inbound = reply(customer, "Order number is 4411", django_capture_on_commit_callbacks)
    case.refresh_from_db()
    event = case.events.get(kind=CaseEventKind.CUSTOMER_REPLY)
    assert event.inbound_message == inbound and event.detail == "Order number is 4411"
    assert case.status == CaseStatus.OPEN and case.last_customer_reply_at is not None
    # Routing the same reply again threads nothing twice.
    assert inbound_route(inbound=inbound) == Route.ALREADY


def test_a_reply_without_a_case_or_keyword_stays_on_the_contact(customer, django_capture_on_commit_callbacks):
    inbound = reply(customer, "thanks!", django_capture_on_commit_callbacks)
    assert inbound.contact == customer
    assert not SupportCase.objects.filter(contact=customer).exists()


def test_a_keyword_opens_a_case_from_the_reply(customer, billing, sam, settings, django_capture_on_commit_callbacks):
    settings.SUPPORT_DEFAULT_TEAM = "Billing"
    inbound = reply(customer, "I was CHARGED   twice this month", django_capture_on_commit_callbacks)
    case = SupportCase.objects.get(contact=customer)
    assert (case.category, case.priority, case.source, case.team) == ("billing", "high", CaseSource.INBOUND_REPLY,
                                                                      billing)
    assert case.events.filter(kind=CaseEventKind.CUSTOMER_REPLY, inbound_message=inbound).exists()
    assert case.events.filter(kind=CaseEventKind.KEYWORD, detail__contains='"charged twice"').exists()
    assert Notification.objects.filter(recipient=sam, case=case).exists()


def test_a_keyword_raises_the_open_case_and_emails_its_agent(customer, billing, ada,
                                                            django_capture_on_commit_callbacks):
    case = factories.case(contact_=customer, team_=billing, agent=ada)
    mail.outbox.clear()
    reply(customer, "This is urgent, please", django_capture_on_commit_callbacks)
    case.refresh_from_db()
    assert case.priority == "urgent"
    assert SupportCase.objects.filter(contact=customer).count() == 1
    note = Notification.objects.filter(recipient=ada, case=case).latest("id")
    assert '"urgent"' in note.text
    assert [m.to for m in mail.outbox] == [["ada@example.com"]]


def test_phrases_match_whole_words_only(customer, django_capture_on_commit_callbacks):
    reply(customer, "the urgently needed part arrived", django_capture_on_commit_callbacks)
    assert not SupportCase.objects.filter(contact=customer).exists()


def test_an_inactive_rule_does_nothing(customer, django_capture_on_commit_callbacks):
    KeywordRule.objects.filter(phrase="refund").update(active=False)
    reply(customer, "refund please", django_capture_on_commit_callbacks)
    assert not SupportCase.objects.filter(contact=customer).exists()


APPOINTMENT = {
    "trigger": {"event": "appointment.booked"},
    "steps": [
        {"key": "remind", "type": "send", "template": "appointment-reminder-sms"},
        {"key": "answer", "type": "wait_for_event", "event": "message.replied", "timeout": "1d",
         "conditions": [{"field": "event.body", "op": "in", "value": ["C", "R"]}]},
    ],
}


@pytest.fixture
def reminder_sent(customer):
    """A sent reminder from a live appointment journey that waits for C or R."""
    approved_template("appointment-reminder-sms", "sms", content={"body": "Reply C to confirm, R to reschedule"})
    journey = journey_services.journey_create(key="appointments", name="Appointments", message_class="operational",
                                              actor="marketer", definition=APPOINTMENT)
    version = journey_services.journey_publish(journey=journey, actor="marketer")
    if version.status == "in_review":
        journey_services.journey_version_approve(version=version, actor="reviewer")
    result = send(contact=customer, data={}, template_key="appointment-reminder-sms", idempotency_key="remind-1",
                  origin=Origin(kind=OriginKind.JOURNEY, journey_version_id=version.pk, step_key="remind"))
    message = result.messages[0]
    message_transition(message=message, to=MessageStatus.SENDING)
    message_transition(message=message, to=MessageStatus.SENT)
    return message


def test_journeys_reply_keywords_come_from_the_definition():
    assert journey_reply_keywords(APPOINTMENT) == {"C", "R"}
    assert journey_reply_keywords({"reply_keywords": ["yes "], "steps": []}) == {"YES"}


def test_a_c_reply_to_an_appointment_reminder_is_left_to_the_journey(customer, billing, reminder_sent,
                                                                    django_capture_on_commit_callbacks):
    case = factories.case(contact_=customer, team_=billing)
    inbound = reply(customer, " c ", django_capture_on_commit_callbacks)
    assert inbound.in_reply_to == reminder_sent
    assert inbound_route(inbound=inbound) == Route.JOURNEY
    assert not case.events.filter(kind=CaseEventKind.CUSTOMER_REPLY).exists()


def test_free_text_to_an_appointment_reminder_still_reaches_support(customer, billing, reminder_sent,
                                                                   django_capture_on_commit_callbacks):
    case = factories.case(contact_=customer, team_=billing)
    reply(customer, "C but I also want a refund", django_capture_on_commit_callbacks)
    assert case.events.filter(kind=CaseEventKind.CUSTOMER_REPLY).exists()
    case.refresh_from_db()
    assert case.priority == "high"
