"""Celery tasks: thin, carry ids only, safe to run twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from journeys.models import WebhookCall, WebhookStatus

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Journey-Signature"


@shared_task(name="journeys.tick", ignore_result=True)
def tick() -> dict:
    """The Beat tick: pending events first, then due enrollments, bounded so
    a tick stays short; a duplicate tick from a second Beat claims nothing twice."""
    from journeys.engine import advance
    from journeys.events import process_events

    now = timezone.now()
    counts = {"events": 0, "advanced": 0}
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


def sign(body: bytes, timestamp: str) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex: receivers recompute it with
    the shared secret and reject old timestamps (replay)."""
    secret = settings.JOURNEYS_WEBHOOK_SECRET.encode()
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@shared_task(
    name="journeys.deliver_webhook", bind=True, ignore_result=True, max_retries=None,
)
def deliver_webhook(self, call_id: int) -> str:
    call = WebhookCall.objects.filter(pk=call_id, status=WebhookStatus.PENDING).first()
    if call is None:
        return "not pending"
    body = json.dumps(call.payload, sort_keys=True, default=str).encode()
    timestamp = str(int(timezone.now().timestamp()))
    request = urllib.request.Request(  # noqa: S310 - the URL is validated as http(s) by the journey definition
        call.url, data=body, method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: f"t={timestamp},v1={sign(body, timestamp)}",
                 "X-Journey-Webhook-Id": str(call.pk)},
    )
    attempts = call.attempts + 1
    try:
        with urllib.request.urlopen(request, timeout=settings.JOURNEYS_WEBHOOK_TIMEOUT) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as error:
        status, problem = error.code, f"HTTP {error.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        status, problem = None, str(error)[:500]
    else:
        problem = ""
    if status is not None and 200 <= status < 300:
        WebhookCall.objects.filter(pk=call.pk, status=WebhookStatus.PENDING).update(
            status=WebhookStatus.DELIVERED, attempts=attempts, response_status=status, delivered_at=timezone.now(),
            last_error="",
        )
        return "delivered"
    final = attempts >= settings.JOURNEYS_WEBHOOK_MAX_ATTEMPTS or (status is not None and 400 <= status < 500
                                                                    and status not in (408, 429))
    WebhookCall.objects.filter(pk=call.pk, status=WebhookStatus.PENDING).update(
        attempts=attempts, response_status=status, last_error=problem,
        status=WebhookStatus.FAILED if final else WebhookStatus.PENDING,
    )
    if final:
        return "failed"
    raise self.retry(countdown=min(2 ** attempts * 5, 600))
