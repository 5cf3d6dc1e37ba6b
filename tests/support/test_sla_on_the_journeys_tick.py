"""The first-response SLA check runs on the journeys scheduler: `advance_journeys
--now` (and the Beat tick) breach a case nobody answered, with no Beat task of its own."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django_celery_beat.models import PeriodicTask

from journeys.services import run_until_idle
from journeys.tick_hooks import run_tick_hooks
from support.models import Priority
from tests.support import factories

LISBON = zoneinfo.ZoneInfo("Europe/Lisbon")

pytestmark = pytest.mark.django_db


def test_support_registers_its_sla_check_as_a_tick_hook_and_has_no_beat_task_of_its_own():
    counts = run_tick_hooks(now=dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC))
    assert "support.first_response_sla" in counts
    assert not PeriodicTask.objects.filter(task="support.check_first_response_sla").exists()


def test_advance_journeys_breaches_an_unanswered_case_as_of_its_now(billing, ada):
    with time_machine.travel(dt.datetime(2026, 11, 23, 9, 0, tzinfo=LISBON), tick=False):
        case = factories.case(team_=billing, agent=ada, priority=Priority.URGENT)
    assert case.first_response_due_at == dt.datetime(2026, 11, 23, 10, tzinfo=LISBON)
    assert run_until_idle(now=dt.datetime(2026, 11, 23, 9, 59, tzinfo=LISBON))["support.first_response_sla"] == 0
    counts = run_until_idle(now=dt.datetime(2026, 11, 23, 10, 1, tzinfo=LISBON))
    assert counts["support.first_response_sla"] == 1
    case.refresh_from_db()
    assert case.first_response_breached_at is not None and case.assigned_agent is None
