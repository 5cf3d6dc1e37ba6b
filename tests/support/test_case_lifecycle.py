"""Opening, numbering, status transitions (one mapping, one service each),
priority and SLA clocks on the team's calendar, notes, and the periodic
first-response SLA check."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.core import mail

from support import selectors, services
from support.models import (
    CASE_TRANSITIONS,
    CaseEvent,
    CaseEventKind,
    CaseStatus,
    Notification,
    Priority,
    SlaPolicy,
)
from tests.support import factories

LISBON = zoneinfo.ZoneInfo("Europe/Lisbon")
FRIDAY_EVENING = dt.datetime(2026, 11, 20, 18, 30, tzinfo=LISBON)


def test_a_case_gets_a_human_number_an_open_status_and_a_timeline(billing_case):
    assert billing_case.number == f"C-{billing_case.pk:06d}"
    assert billing_case.status == CaseStatus.OPEN
    assert billing_case.history.first().number == billing_case.number
    assert list(billing_case.events.values_list("kind", flat=True)) == [CaseEventKind.OPENED]


def test_sla_clocks_run_on_the_team_calendar_so_friday_evening_is_not_breached_on_saturday(billing):
    SlaPolicy.objects.filter(priority=Priority.HIGH).update(first_response_minutes=240, resolution_minutes=960)
    case = factories.case(team_=billing, priority=Priority.HIGH, now=FRIDAY_EVENING)
    assert case.first_response_due_at == dt.datetime(2026, 11, 23, 13, 0, tzinfo=LISBON)
    assert case.resolution_due_at == dt.datetime(2026, 11, 24, 17, 0, tzinfo=LISBON)
    saturday_morning = dt.datetime(2026, 11, 21, 9, 0, tzinfo=LISBON)
    assert services.cases_check_first_response_sla(now=saturday_morning) == 0


def test_every_allowed_transition_goes_through_its_service_and_leaves_a_row(billing_case):
    services.case_mark_pending(case=billing_case, actor="test", reason="asked for details")
    services.case_reopen(case=billing_case, actor="test")
    services.case_escalate(case=billing_case, actor="test")
    services.case_resolve(case=billing_case, actor="test")
    services.case_reopen(case=billing_case, actor="test", reason="customer says it is not fixed")
    services.case_close(case=billing_case, actor="test")
    billing_case.refresh_from_db()
    assert billing_case.status == CaseStatus.CLOSED and billing_case.closed_at is not None
    moves = list(billing_case.events.filter(kind=CaseEventKind.STATUS).values_list("old_value", "new_value"))
    assert moves == [("open", "pending_customer"), ("pending_customer", "open"), ("open", "escalated"),
                     ("escalated", "resolved"), ("resolved", "open"), ("open", "closed")]
    assert billing_case.history.filter(history_change_reason__contains="customer says it is not fixed").exists()


@pytest.mark.parametrize("target", [s for s in CaseStatus.values if s != CaseStatus.CLOSED])
def test_a_closed_case_refuses_every_move(billing_case, target):
    assert not CASE_TRANSITIONS[CaseStatus.CLOSED]
    services.case_close(case=billing_case, actor="test")
    with pytest.raises(services.IllegalCaseTransition):
        services.case_set_status(case=billing_case, status=target, actor="test")
    billing_case.refresh_from_db()
    assert billing_case.status == CaseStatus.CLOSED


def test_a_resolved_case_cannot_be_marked_pending(billing_case):
    services.case_resolve(case=billing_case, actor="test")
    with pytest.raises(services.IllegalCaseTransition, match="cannot move from resolved to pending_customer"):
        services.case_mark_pending(case=billing_case, actor="test")


def test_raising_the_priority_recomputes_the_sla_clocks_from_the_opening(billing):
    case = factories.case(team_=billing, priority=Priority.LOW, now=FRIDAY_EVENING)
    low_due = case.first_response_due_at
    services.case_set_priority(case=case, priority=Priority.URGENT, actor="test")
    assert case.first_response_due_at < low_due
    assert case.first_response_due_at == dt.datetime(2026, 11, 23, 10, 0, tzinfo=LISBON)  # 60 business minutes
    assert case.events.filter(kind=CaseEventKind.PRIORITY, old_value="low", new_value="urgent").exists()


def test_raise_priority_never_lowers(billing_case):
    services.case_set_priority(case=billing_case, priority=Priority.URGENT, actor="test")
    assert services.case_raise_priority(case=billing_case, priority=Priority.HIGH, actor="test") is False
    assert billing_case.priority == Priority.URGENT


def test_assigning_moves_the_guardian_grants_with_the_case(billing_case, ada, tom, tech):
    services.case_assign(case=billing_case, team=billing_case.team, agent=ada, actor="test")
    assert ada.has_perm("support.view_supportcase", billing_case)
    services.case_assign(case=billing_case, team=tech, agent=tom, actor="test")
    ada = type(ada).objects.get(pk=ada.pk)  # fresh permission cache
    assert not ada.has_perm("support.view_supportcase", billing_case)
    assert type(tom).objects.get(pk=tom.pk).has_perm("support.view_supportcase", billing_case)


def test_an_agent_outside_the_team_cannot_be_assigned_its_case(billing_case, tom):
    with pytest.raises(services.SupportError, match="not a member of team Billing"):
        services.case_assign(case=billing_case, team=billing_case.team, agent=tom, actor="test")


def test_an_empty_note_is_refused_and_a_note_lands_on_the_timeline(billing_case, ada):
    with pytest.raises(services.SupportError):
        services.case_note_add(case=billing_case, author=ada, body="   ")
    services.case_note_add(case=billing_case, author=ada, body="Called the bank.")
    assert billing_case.notes.get().body == "Called the bank."
    assert billing_case.events.filter(kind=CaseEventKind.NOTE, actor="user:ada_billing").exists()


def test_a_first_response_breach_sends_the_case_back_to_the_team_queue_and_tells_the_supervisor(
    billing, ada, sam, django_capture_on_commit_callbacks
):
    with time_machine.travel(dt.datetime(2026, 11, 23, 9, 0, tzinfo=LISBON), tick=False):
        case = factories.case(team_=billing, agent=ada, priority=Priority.URGENT)
    assert case.first_response_due_at == dt.datetime(2026, 11, 23, 10, 0, tzinfo=LISBON)
    with django_capture_on_commit_callbacks(execute=True):
        handled = services.cases_check_first_response_sla(now=dt.datetime(2026, 11, 23, 10, 1, tzinfo=LISBON))
    assert handled == 1
    case.refresh_from_db()
    assert case.assigned_agent is None and case.team == billing and case.first_response_breached_at
    assert Notification.objects.filter(recipient=sam, case=case, text__contains="breached").exists()
    assert any("breached" in message.subject and message.to == ["sam@example.com"] for message in mail.outbox)
    assert CaseEvent.objects.filter(case=case, kind=CaseEventKind.SLA_BREACH).count() == 1
    # The check is a claim: running it again does nothing more.
    assert services.cases_check_first_response_sla(now=dt.datetime(2026, 11, 23, 11, tzinfo=LISBON)) == 0


def test_a_case_answered_in_time_is_not_breached(billing, ada, case_templates):
    with time_machine.travel(dt.datetime(2026, 11, 23, 9, 0, tzinfo=LISBON), tick=False):
        case = factories.case(team_=billing, agent=ada, priority=Priority.URGENT)
        services.case_reply(case=case, channel="email", text="On it.", actor=ada)
    case.refresh_from_db()
    assert case.first_response_at is not None
    assert services.cases_check_first_response_sla(now=dt.datetime(2026, 11, 23, 12, tzinfo=LISBON)) == 0


def test_a_case_answered_or_resolved_between_the_scan_and_the_claim_is_not_breached(billing, ada, case_templates):
    with time_machine.travel(dt.datetime(2026, 11, 23, 9, 0, tzinfo=LISBON), tick=False):
        answered = factories.case(team_=billing, agent=ada, priority=Priority.URGENT)
        resolved = factories.case(team_=billing, agent=ada, priority=Priority.URGENT)
    late = dt.datetime(2026, 11, 23, 10, 1, tzinfo=LISBON)
    due = selectors.cases_due_for_first_response(now=late)
    assert set(due) == {answered.pk, resolved.pk}
    # Between the scan and the claim, an agent answers one case and resolves the other.
    with time_machine.travel(late, tick=False):
        services.case_reply(case=answered, channel="email", text="On it.", actor=ada)
    services.case_resolve(case=resolved, actor=ada, now=late)

    assert [services.case_first_response_breach(case_id=pk, now=late) for pk in due] == [False, False]
    for case in (answered, resolved):
        case.refresh_from_db()
        assert case.first_response_breached_at is None and case.assigned_agent == ada
    assert not CaseEvent.objects.filter(kind=CaseEventKind.SLA_BREACH).exists()
