"""Webhook step delivery: claim, POST, record; retries are rows, not Celery
countdowns. A call is claimed pending -> sending by a conditional UPDATE
before the POST, so a redelivered or duplicated task never POSTs twice; a
failed attempt goes back to pending with `next_attempt_at`, and the tick
re-enqueues due calls, so a lost publish (or a worker that vanished
mid-call) is recovered by the next tick."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import urllib.error
import urllib.request

from django.conf import settings
from django.db.models import F, Q

from journeys.models import WebhookCall, WebhookStatus

SIGNATURE_HEADER = "X-Journey-Signature"
# How long after the first publish (or a re-enqueue) the tick publishes a still-pending call again.
REQUEUE_AFTER = dt.timedelta(minutes=1)


def sign(body: bytes, timestamp: str) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex: receivers recompute it with
    the shared secret and reject old timestamps (replay)."""
    secret = settings.JOURNEYS_WEBHOOK_SECRET.encode()
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(2 ** attempts * 5, 600))


def webhook_deliver(*, call_id: int, now: dt.datetime) -> str:
    """One attempt. Returns "not pending" (someone else has it, or it is
    done), "delivered", "retry" (pending again, next_attempt_at set) or "failed"."""
    claimed = WebhookCall.objects.filter(pk=call_id, status=WebhookStatus.PENDING).update(
        status=WebhookStatus.SENDING, sending_at=now, attempts=F("attempts") + 1,
    )
    if claimed != 1:
        return "not pending"
    call = WebhookCall.objects.get(pk=call_id)
    body = json.dumps(call.payload, sort_keys=True, default=str).encode()
    timestamp = str(int(now.timestamp()))
    request = urllib.request.Request(  # noqa: S310 - the URL is validated as http(s) by the journey definition
        call.url, data=body, method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: f"t={timestamp},v1={sign(body, timestamp)}",
                 "X-Journey-Webhook-Id": str(call.pk)},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.JOURNEYS_WEBHOOK_TIMEOUT) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as error:
        status, problem = error.code, f"HTTP {error.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        status, problem = None, str(error)[:500]
    else:
        problem = ""
    mine = WebhookCall.objects.filter(pk=call.pk, status=WebhookStatus.SENDING)
    if status is not None and 200 <= status < 300:
        mine.update(status=WebhookStatus.DELIVERED, response_status=status, delivered_at=now, last_error="",
                    next_attempt_at=None)
        return "delivered"
    final = call.attempts >= settings.JOURNEYS_WEBHOOK_MAX_ATTEMPTS or (
        status is not None and 400 <= status < 500 and status not in (408, 429)
    )
    if final:
        mine.update(status=WebhookStatus.FAILED, response_status=status, last_error=problem, next_attempt_at=None)
        return "failed"
    mine.update(status=WebhookStatus.PENDING, response_status=status, last_error=problem,
                next_attempt_at=now + backoff(call.attempts))
    return "retry"


def webhooks_due(*, now: dt.datetime, limit: int = 500) -> list[int]:
    """Calls the tick should publish: pending and due, plus calls a worker
    claimed and never finished (it died mid-POST: at-least-once, receivers
    dedupe on X-Journey-Webhook-Id). Each is leased for REQUEUE_AFTER so a
    busy queue is not flooded with copies."""
    stale = now - dt.timedelta(seconds=settings.JOURNEYS_WEBHOOK_STALE_SECONDS)
    WebhookCall.objects.filter(status=WebhookStatus.SENDING, sending_at__lt=stale).update(
        status=WebhookStatus.PENDING, next_attempt_at=now, last_error="worker lost during the call"
    )
    due = Q(status=WebhookStatus.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    ids = list(WebhookCall.objects.filter(due).order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit])
    if ids:
        WebhookCall.objects.filter(due, pk__in=ids).update(next_attempt_at=now + REQUEUE_AFTER)
    return ids
