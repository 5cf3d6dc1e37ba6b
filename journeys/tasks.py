"""Celery tasks: thin, carry ids only, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from journeys.tick_hooks import run_tick_hooks
from journeys.webhooks import SIGNATURE_HEADER, sign

__all__ = ["SIGNATURE_HEADER", "deliver_webhook", "enqueue_due_webhooks", "process_events_task",
           "run_enrollment_import", "sign", "tick"]

logger = logging.getLogger(__name__)


@shared_task(name="journeys.tick", ignore_result=True)
def tick() -> dict:
    """The Beat tick: pending events first, then due enrollments, bounded so
    a tick stays short; a duplicate tick from a second Beat claims nothing twice."""
    from journeys.engine import advance
    from journeys.events import process_events

    now = timezone.now()
    counts = {"events": 0, "advanced": 0, "webhooks": 0}
    for _ in range(settings.JOURNEYS_TICK_MAX_BATCHES):
        processed = process_events(now=now)
        counts["events"] += processed
        if not processed:
            break
    for _ in range(settings.JOURNEYS_TICK_MAX_BATCHES):
        advanced = advance(now=now)
        counts["advanced"] += advanced
        if not advanced:
            break
    counts["webhooks"] = enqueue_due_webhooks(now)
    counts.update(run_tick_hooks(now=now))
    return counts


@shared_task(name="journeys.process_events", ignore_result=True)
def process_events_task() -> int:
    from journeys.events import process_events

    total = 0
    for _ in range(settings.JOURNEYS_TICK_MAX_BATCHES):
        processed = process_events(now=timezone.now())
        total += processed
        if not processed:
            break
    return total


@shared_task(name="journeys.deliver_webhook", ignore_result=True)
def deliver_webhook(call_id: int) -> str:
    """One attempt; a retry is scheduled on the row (next_attempt_at) and
    published by the tick, never by a Celery countdown."""
    from journeys.webhooks import webhook_deliver

    return webhook_deliver(call_id=call_id, now=timezone.now())


def enqueue_due_webhooks(now) -> int:
    from journeys.webhooks import webhooks_due

    ids = webhooks_due(now=now)
    for call_id in ids:
        deliver_webhook.delay(call_id)
    return len(ids)


@shared_task(name="journeys.run_enrollment_import", ignore_result=True)
def run_enrollment_import(import_id: int) -> str:
    from journeys.services import enrollment_import_run

    return enrollment_import_run(import_id=import_id).status
