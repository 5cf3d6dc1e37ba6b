"""The default high-priority escalation policy on the journeys engine, driven
by `advance_journeys --now`: acknowledgement at once, SMS at 30 minutes
without a customer reply, assignment at 2 hours; resolving stops it at once,
queued messages included; the follow-up comes after resolution."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from channels.inbound import inbound_receive
from channels.models import MessageStatus, OutboundMessage
from journeys.models import Enrollment, EnrollmentStatus
from support import services
from support.demo import install_default_policy
from support.models import CaseEscalation, CaseEventKind, CaseStatus, Notification, Phase, Priority
from tests.support import factories

T0 = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)  # a Monday, inside Billing's hours


def advance(minutes: float) -> None:
    call_command("advance_journeys", now=(T0 + dt.timedelta(minutes=minutes)).isoformat())


def sent(case, template_key: str) -> list[OutboundMessage]:
    escalation_ids = CaseEscalation.objects.filter(case=case).values_list("enrollment_id", flat=True)
    return list(OutboundMessage.objects.filter(origin_enrollment_id__in=escalation_ids, template_key=template_key))


@pytest.fixture
def policy(case_templates):
    return install_default_policy()


@pytest.fixture
def customer(db):
    return factories.contact(timezone="Europe/Lisbon")


@pytest.fixture
def high_case(policy, billing, ada, customer):
    return factories.case(contact_=customer, team_=billing, priority=Priority.HIGH, now=T0, subject="Refund")


def test_ack_at_once_sms_at_thirty_minutes_and_assignment_at_two_hours(high_case, ada):
    advance(0)
    ack = sent(high_case, "case-ack-email")
    assert len(ack) == 1 and ack[0].status == MessageStatus.QUEUED
    assert high_case.number in ack[0].content["subject"]
    assert ack[0].origin_label.startswith("support-escalation-")

    advance(29)
    assert sent(high_case, "case-callback-sms") == []
    advance(30)
    sms = sent(high_case, "case-callback-sms")
    assert len(sms) == 1 and high_case.number in sms[0].content["body"]

    advance(119)
    high_case.refresh_from_db()
    assert high_case.status == CaseStatus.OPEN and high_case.assigned_agent is None
    advance(120)
    high_case.refresh_from_db()
    assert high_case.status == CaseStatus.ESCALATED
    assert high_case.assigned_agent == ada
    assert Notification.objects.filter(recipient=ada, case=high_case, text__contains="escalated").exists()
    assert high_case.events.filter(kind=CaseEventKind.ESCALATION, detail__contains="assigned to ada_billing").exists()
    # Nothing is sent twice however often the tick runs.
    advance(121)
    assert len(sent(high_case, "case-ack-email")) == 1 and len(sent(high_case, "case-callback-sms")) == 1


def test_resolving_mid_escalation_cancels_pending_messages_including_a_queued_one(high_case):
    advance(0)
    advance(30)
    sms = sent(high_case, "case-callback-sms")[0]
    assert sms.status == MessageStatus.QUEUED  # no worker: queued, not yet handed to a provider

    services.case_resolve(case=high_case, actor="test", now=T0 + dt.timedelta(minutes=31))

    sms.refresh_from_db()
    assert sms.status == MessageStatus.CANCELLED
    assert sent(high_case, "case-ack-email")[0].status == MessageStatus.CANCELLED
    run = CaseEscalation.objects.get(case=high_case, phase=Phase.OPENED)
    assert Enrollment.objects.get(pk=run.enrollment_id).status == EnrollmentStatus.EXITED
    advance(120)
    high_case.refresh_from_db()
    assert high_case.status == CaseStatus.RESOLVED and high_case.assigned_agent is None
    assert not high_case.events.filter(kind=CaseEventKind.ESCALATION, detail__contains="assigned").exists()


def test_the_follow_up_goes_a_day_after_resolution_and_closing_cancels_it(high_case):
    advance(0)
    resolved_at = T0 + dt.timedelta(minutes=10)
    services.case_resolve(case=high_case, actor="test", now=resolved_at)
    advance(10)
    advance(10 + 1439)
    assert sent(high_case, "case-followup-email") == []
    advance(10 + 1440)
    followup = sent(high_case, "case-followup-email")
    assert len(followup) == 1 and followup[0].status == MessageStatus.QUEUED

    services.case_close(case=high_case, actor="test", now=resolved_at + dt.timedelta(days=1, minutes=1))
    followup[0].refresh_from_db()
    assert followup[0].status == MessageStatus.CANCELLED


def test_a_customer_reply_within_thirty_minutes_skips_the_sms(high_case, customer,
                                                             django_capture_on_commit_callbacks):
    advance(0)
    with django_capture_on_commit_callbacks(execute=True):
        inbound_receive(provider="test", provider_message_id="SM-reply-1", from_address=customer.phone,
                        to_address="+15550000000", body="Thanks, I am around all day", payload={},
                        now=T0 + dt.timedelta(minutes=10))
    advance(30)
    assert sent(high_case, "case-callback-sms") == []
    assert high_case.events.filter(kind=CaseEventKind.CUSTOMER_REPLY).count() == 1


def test_a_case_opened_through_the_api_gets_the_default_policy_without_configuring_anything(
    policy, api, customer, time_machine
):
    time_machine.move_to(T0, tick=False)
    response = api.post("/api/v1/cases/", {"contact": customer.external_id, "subject": "Double charge",
                                           "category": "billing", "priority": "high"}, format="json")
    assert response.status_code == 201, response.json()
    call_command("advance_journeys", now=T0.isoformat())
    case = high_case_from(response.json()["number"])
    assert len(sent(case, "case-ack-email")) == 1


def high_case_from(number: str):
    from support.models import SupportCase

    return SupportCase.objects.get(number=number)


def test_a_policy_whose_journey_is_not_live_is_reported_on_the_case(case_templates, billing, settings):
    settings.JOURNEYS_APPROVAL_CLASSES = ["marketing", "operational"]
    from support.models import EscalationAction, EscalationPolicy, EscalationStep

    draft = EscalationPolicy.objects.create(name="Urgent billing", priority=Priority.URGENT, category="billing")
    EscalationStep.objects.create(policy=draft, delay_minutes=0, action=EscalationAction.SEND, channel="email",
                                  template_key="case-ack-email")
    from support.escalation import escalation_policy_publish

    versions = escalation_policy_publish(policy=draft, actor="operator")
    assert [v.status for v in versions] == ["in_review"]  # operational journeys need a reviewer here
    case = factories.case(team_=billing, priority=Priority.URGENT, category="billing", now=T0)
    assert case.events.filter(kind=CaseEventKind.ESCALATION, new_value="not started",
                              detail__contains="not live").exists()


def test_reopening_a_resolved_case_drops_the_pending_follow_up(high_case):
    advance(0)
    services.case_resolve(case=high_case, actor="test", now=T0 + dt.timedelta(minutes=10))
    advance(10)
    services.case_reopen(case=high_case, actor="test", reason="not fixed", now=T0 + dt.timedelta(minutes=20))
    advance(10 + 1440)
    assert sent(high_case, "case-followup-email") == []
    run = CaseEscalation.objects.get(case=high_case, phase=Phase.RESOLVED)
    assert run.stopped_at is not None and "reopened" in run.stop_reason


def test_two_open_cases_of_one_contact_each_get_their_acknowledgement_sms_and_assignment(
    policy, billing, ada, customer
):
    first = factories.case(contact_=customer, team_=billing, priority=Priority.HIGH, now=T0, subject="Refund")
    second = factories.case(contact_=customer, team_=billing, priority=Priority.HIGH,
                            now=T0 + dt.timedelta(minutes=1), subject="Card blocked")
    advance(1)
    advance(31)
    advance(121)
    for case in (first, second):
        run = CaseEscalation.objects.get(case=case, phase=Phase.OPENED)
        assert Enrollment.objects.get(pk=run.enrollment_id).scope_key == f"case:{case.pk}"
        [ack] = sent(case, "case-ack-email")
        [sms] = sent(case, "case-callback-sms")
        assert case.number in ack.content["subject"] and case.number in sms.content["body"]
        case.refresh_from_db()
        assert case.status == CaseStatus.ESCALATED and case.assigned_agent == ada
        assert not case.events.filter(kind=CaseEventKind.ESCALATION, new_value="not started").exists()
