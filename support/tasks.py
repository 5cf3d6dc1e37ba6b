"""Celery tasks: thin wrappers, safe to run twice (the SLA check claims each
breach with a conditional update)."""

from __future__ import annotations

from celery import shared_task

from support import services


@shared_task(name="support.check_first_response_sla")
def check_first_response_sla() -> int:
    return services.cases_check_first_response_sla()
