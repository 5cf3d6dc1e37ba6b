"""Resolving a case while the journeys tick runs its escalation: both take
the enrollment rows before the case row, so neither waits for the other in
a cycle (two real database connections)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction

from journeys.models import Enrollment, EnrollmentStatus
from support import escalation, services
from support.demo import install_default_policy
from support.models import CaseEscalation, EscalationAction, EscalationStep, Phase, Priority, SupportCase
from tests.support import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

T0 = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)


def wait_for_a_blocked_backend(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # pg_stat_activity is a per-transaction snapshot: refresh it each time.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND datname = current_database()")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the agent's connection never waited for a lock")


@pytest.mark.parametrize("finish", [services.case_resolve, services.case_close])
def test_resolving_or_closing_while_the_tick_runs_the_escalate_step_does_not_deadlock(
    case_templates, billing, ada, finish
):
    install_default_policy()
    case = factories.case(team_=billing, priority=Priority.HIGH, now=T0)
    run = CaseEscalation.objects.get(case=case, phase=Phase.OPENED)
    step = EscalationStep.objects.get(policy=run.policy, action=EscalationAction.ESCALATE)
    errors: list[BaseException] = []

    def agent_finishes_the_case() -> None:
        try:
            finish(case=SupportCase.objects.get(pk=case.pk), actor="agent", now=T0 + dt.timedelta(minutes=121))
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)
        finally:
            connection.close()

    with transaction.atomic():
        # What advance() holds while it runs a batch: the enrollment rows, locked.
        Enrollment.objects.select_for_update().get(pk=run.enrollment_id)
        agent = threading.Thread(target=agent_finishes_the_case)
        agent.start()
        wait_for_a_blocked_backend()
        # The escalate step needs the case row; a resolve holding it while it
        # waits for the enrollment would be a deadlock, and one side would fail.
        outcome = escalation.escalation_step_run(step_id=step.pk, enrollment_id=run.enrollment_id,
                                                 now=T0 + dt.timedelta(minutes=120))
    agent.join(timeout=30)

    assert not agent.is_alive() and errors == []
    assert outcome.startswith("assigned to ada_billing")
    case.refresh_from_db()
    assert case.status == ("resolved" if finish is services.case_resolve else "closed")
    assert Enrollment.objects.get(pk=run.enrollment_id).status == EnrollmentStatus.EXITED
