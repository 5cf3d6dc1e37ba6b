"""Outbound webhooks: endpoints, the delivery outbox, Standard Webhooks
signing, delivery with a day-long retry schedule, auto-disable, replay.

Emit functions write WebhookDelivery rows in the caller's transaction (the
outbox) and enqueue their ids on commit; when no enabled endpoint subscribes
they return after one in-process cache check, touching no table."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from channels.models import (
    MessageStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEventType,
)

E = WebhookEventType
DS = WebhookDeliveryStatus
# Seconds to wait before attempt n+1 after n failures (Svix's schedule, about 27.6 hours in all).
RETRY_SCHEDULE = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
MESSAGE_EVENT_FOR = {
    MessageStatus.SENT: E.MESSAGE_SENT,
    MessageStatus.DELIVERED: E.MESSAGE_DELIVERED,
    MessageStatus.FAILED: E.MESSAGE_FAILED,
    MessageStatus.UNDELIVERED: E.MESSAGE_FAILED,
    MessageStatus.BOUNCED: E.MESSAGE_BOUNCED,
}
EXCERPT_CHARS = 500


class WebhookError(Exception):
    """A webhook operation that cannot be done (shown to the operator)."""


# --- Endpoints ------------------------------------------------------------------------


def secret_generate() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def endpoint_check(*, url: str, event_types: Iterable[str]) -> None:
    """Refuse a URL that is not https (http only under DEBUG or to an allowed
    host) and unknown event types, with a message per field."""
    errors: dict[str, str] = {}
    parts = urlsplit(url)
    http_ok = settings.DEBUG or parts.hostname in settings.WEBHOOKS_HTTP_ALLOWED_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and http_ok):
        errors["url"] = "Webhook URLs must use https."
    event_types = list(event_types)
    unknown = sorted(set(event_types) - set(E.values))
    if unknown:
        errors["event_types"] = f"Unknown event types: {', '.join(unknown)}. Known: {', '.join(E.values)}."
    elif not event_types:
        errors["event_types"] = "Subscribe to at least one event type."
    if errors:
        raise ValidationError(errors)


def endpoint_create(*, url: str, event_types: list[str], description: str = "", enabled: bool = True
                    ) -> WebhookEndpoint:
    endpoint_check(url=url, event_types=event_types)
    endpoint = WebhookEndpoint.objects.create(url=url, event_types=sorted(set(event_types)), description=description,
                                              enabled=enabled, secret=secret_generate())
    endpoints_cache_clear()
    return endpoint


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint, now: dt.datetime | None = None) -> WebhookEndpoint:
    """A new secret; the current one keeps signing beside it for the grace period."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.previous_secret = locked.secret
        locked.previous_secret_expires_at = now + dt.timedelta(hours=settings.WEBHOOKS_ROTATION_GRACE_HOURS)
        locked.secret = secret_generate()
        locked.save(update_fields=["previous_secret", "previous_secret_expires_at", "secret"])
    return locked


def endpoint_enable(*, endpoint: WebhookEndpoint) -> bool:
    """Enable again with a clean failure run; its waiting deliveries go out at once."""
    now = timezone.now()
    with transaction.atomic():
        updated = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=False).update(
            enabled=True, consecutive_failures=0, disabled_at=None, disabled_reason="")
        if updated:
            waiting = WebhookDelivery.objects.filter(endpoint_id=endpoint.pk, status=DS.PENDING)
            ids = list(waiting.values_list("pk", flat=True))
            waiting.update(next_attempt_at=now, enqueued_at=now)
            _enqueue_on_commit(ids)
    endpoints_cache_clear()
    return bool(updated)


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str, now: dt.datetime | None = None) -> bool:
    """Disabled endpoints get no new attempts; their pending deliveries wait
    (kept, not given up) until it is enabled again."""
    updated = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, disabled_at=now or timezone.now(), disabled_reason=reason[:200])
    endpoints_cache_clear()
    return bool(updated)


_endpoint_cache: dict[str, Any] = {"until": 0.0, "endpoints": ()}


def endpoints_cache_clear() -> None:
    _endpoint_cache["until"] = 0.0


def _subscribers() -> tuple[tuple[int, frozenset[str]], ...]:
    """(endpoint id, event types) of the enabled endpoints, read at most once
    per WEBHOOKS_ENDPOINT_CACHE_SECONDS per process."""
    if time.monotonic() >= _endpoint_cache["until"]:
        rows = WebhookEndpoint.objects.filter(enabled=True).values_list("pk", "event_types")
        _endpoint_cache["endpoints"] = tuple((pk, frozenset(types)) for pk, types in rows)
        _endpoint_cache["until"] = time.monotonic() + settings.WEBHOOKS_ENDPOINT_CACHE_SECONDS
    return _endpoint_cache["endpoints"]


def subscribed(event_types: Iterable[str]) -> bool:
    wanted = set(event_types)
    return any(types & wanted for _pk, types in _subscribers())


# --- Emitting events (the outbox) -----------------------------------------------------


def events_emit(*, events: list[tuple[str, dict]], at: dt.datetime | None = None) -> list[WebhookDelivery]:
    """One delivery row per (event, subscribed enabled endpoint), in the
    caller's transaction, enqueued when it commits."""
    subscribers = _subscribers()
    if not subscribers:
        return []
    at = at or timezone.now()
    rows = [
        WebhookDelivery(endpoint_id=pk, webhook_id=f"msg_{secrets.token_urlsafe(18)}", event_type=event_type,
                        payload={"type": event_type, "timestamp": at.isoformat(), "data": data},
                        next_attempt_at=at, enqueued_at=at, created_at=at)
        for event_type, data in events
        for pk, types in subscribers
        if event_type in types
    ]
    if not rows:
        return []
    with transaction.atomic():
        created = WebhookDelivery.objects.bulk_create(rows)
        _enqueue_on_commit([row.pk for row in created])
    return created


def event_emit(*, event_type: str, data: dict, at: dt.datetime | None = None) -> list[WebhookDelivery]:
    return events_emit(events=[(event_type, data)], at=at)


def message_moves_emit(*, moves: list[tuple[Any, str, str, str]], at: dt.datetime) -> None:
    """message.sent/delivered/failed/bounced for a batch of status moves, with
    one query for the contacts' external ids (only when someone subscribes)."""
    wanted = [(m, MESSAGE_EVENT_FOR[new]) for m, _old, new, _detail in moves if new in MESSAGE_EVENT_FOR]
    if not wanted or not subscribed(event for _m, event in wanted):
        return
    external_ids = _external_ids(m.contact_id for m, _event in wanted)
    events_emit(events=[(event, {
        "message_id": m.pk, "status": event.removeprefix("message."), "channel": m.channel,
        "contact_external_id": external_ids.get(m.contact_id, ""), "provider_message_id": m.provider_message_id,
        "origin_kind": m.origin_kind,
    }) for m, event in wanted], at=at)


def reply_emit(*, inbound: Any) -> None:
    if not subscribed([E.MESSAGE_REPLIED]):
        return
    event_emit(event_type=E.MESSAGE_REPLIED, at=inbound.received_at, data={
        "inbound_id": inbound.pk, "channel": inbound.channel,
        "contact_external_id": _external_ids([inbound.contact_id]).get(inbound.contact_id, ""),
        "in_reply_to_message_id": inbound.in_reply_to_id,
    })


def consent_changed_emit(*, record: Any, in_effect: bool = True, **_signal: Any) -> None:
    """consent.changed for every ledger record; contact.unsubscribed too for a
    revocation that is now the contact's state."""
    from consent.models import ConsentStatus

    unsubscribes = record.status == ConsentStatus.REVOKED and in_effect
    types = [E.CONSENT_CHANGED] + ([E.CONTACT_UNSUBSCRIBED] if unsubscribes else [])
    if not subscribed(types):
        return
    external_id = _external_ids([record.contact_id]).get(record.contact_id, "")
    data = {"consent_record_id": record.pk, "contact_external_id": external_id,
            "channel": record.channel, "purpose": record.purpose, "status": record.status, "source": record.source}
    events_emit(events=[(t, data) for t in types], at=record.recorded_at)


def enrollments_ended_emit(*, statuses: dict[int, str], at: dt.datetime) -> None:
    from journeys.models import Enrollment, EnrollmentStatus

    event_for = {EnrollmentStatus.CONVERTED: E.ENROLLMENT_CONVERTED, EnrollmentStatus.EXITED: E.ENROLLMENT_EXITED}
    ended = {pk: event_for[s] for pk, s in statuses.items() if s in event_for}
    if not ended or not subscribed(ended.values()):
        return
    rows = Enrollment.objects.filter(pk__in=list(ended)).values_list(
        "pk", "journey_id", "contact__external_id", "end_reason")
    events_emit(events=[(ended[pk], {
        "enrollment_id": pk, "journey_id": journey_id, "contact_external_id": external_id,
        "status": ended[pk].removeprefix("enrollment."), "reason": reason,
    }) for pk, journey_id, external_id, reason in rows], at=at)


def case_emit(*, event_type: str, case: Any) -> None:
    if not subscribed([event_type]):
        return
    event_emit(event_type=event_type, at=case.status_changed_at, data={
        "case_id": case.pk, "number": case.number, "status": case.status, "priority": case.priority,
        "category": case.category, "contact_external_id": _external_ids([case.contact_id]).get(case.contact_id, ""),
    })


def _external_ids(contact_ids: Iterable[int | None]) -> dict[int, str]:
    from consent.models import Contact

    ids = {pk for pk in contact_ids if pk}
    return dict(Contact.objects.filter(pk__in=ids).values_list("pk", "external_id")) if ids else {}


def _enqueue_on_commit(ids: list[int]) -> None:
    if not ids:
        return
    from channels.tasks import deliver_webhooks

    size = settings.WEBHOOKS_BATCH_SIZE
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        transaction.on_commit(lambda chunk=chunk: deliver_webhooks.delay(chunk))


# --- Signing (Standard Webhooks) ------------------------------------------------------


def signature(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(*, endpoint: WebhookEndpoint, webhook_id: str, body: bytes, now: dt.datetime) -> dict[str, str]:
    """During a rotation both secrets sign, space-separated, as the spec allows."""
    timestamp = int(now.timestamp())
    keys = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        keys.append(endpoint.previous_secret)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret=k, webhook_id=webhook_id, timestamp=timestamp, body=body)
                                      for k in keys),
        "content-type": "application/json",
    }


def body_of(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


# --- Delivering -------------------------------------------------------------------------


def delivery_claim(*, delivery_id: int, now: dt.datetime) -> WebhookDelivery | None:
    """pending and due -> sending, for an enabled endpoint; None when another
    run got there first (so a task run twice sends once)."""
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DS.PENDING, next_attempt_at__lte=now, endpoint__enabled=True,
    ).update(status=DS.SENDING, claimed_at=now)
    if claimed != 1:
        return None
    return WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)


def deliveries_attempt(*, delivery_ids: list[int], now: dt.datetime | None = None) -> int:
    """Attempt each claimable delivery; returns how many were sent successfully."""
    sent = 0
    for delivery_id in delivery_ids:
        delivery = delivery_claim(delivery_id=delivery_id, now=now or timezone.now())
        if delivery is not None:
            sent += delivery_send(delivery=delivery)
    return sent


def delivery_send(*, delivery: WebhookDelivery) -> bool:
    """One POST of a claimed delivery, logged, then the outcome recorded."""
    now = timezone.now()
    body = body_of(delivery)
    headers = signed_headers(endpoint=delivery.endpoint, webhook_id=delivery.webhook_id, body=body, now=now)
    started = time.monotonic()
    status_code, excerpt, error = None, "", ""
    try:
        response = requests.post(delivery.endpoint.url, data=body, headers=headers,
                                 timeout=settings.WEBHOOKS_TIMEOUT_SECONDS, allow_redirects=False)
        status_code, excerpt = response.status_code, response.text[:EXCERPT_CHARS]
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS]
    succeeded = status_code is not None and 200 <= status_code < 300
    if status_code is not None and not succeeded:
        error = f"HTTP {status_code}"
    WebhookAttempt.objects.create(
        delivery=delivery, endpoint=delivery.endpoint, attempted_at=now, succeeded=succeeded, status_code=status_code,
        response_excerpt=excerpt, error=error, duration_ms=int((time.monotonic() - started) * 1000),
        trigger=f"replay by {delivery.replay_requested_by}" if delivery.replay_requested_by else "scheduled",
    )
    (_record_success if succeeded else _record_failure)(delivery, now)
    return succeeded


def _record_success(delivery: WebhookDelivery, now: dt.datetime) -> None:
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DS.SENDING).update(
            status=DS.SUCCEEDED, attempts=F("attempts") + 1, finished_at=now, replay_requested_by="")
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(consecutive_failures=0, last_success_at=now)


def _record_failure(delivery: WebhookDelivery, now: dt.datetime) -> None:
    """Retry on the schedule, or give up once it is spent; a long enough run
    of failures disables the endpoint."""
    attempts = delivery.attempts + 1
    with transaction.atomic():
        if attempts >= len(RETRY_SCHEDULE):
            changes = {"status": DS.GIVEN_UP, "finished_at": now}
        else:
            changes = {"status": DS.PENDING, "next_attempt_at": now + dt.timedelta(seconds=RETRY_SCHEDULE[attempts]),
                       "enqueued_at": None}
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DS.SENDING).update(
            attempts=attempts, replay_requested_by="", **changes)
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
            consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now)
        failures = WebhookEndpoint.objects.values_list("consecutive_failures", flat=True).get(pk=delivery.endpoint_id)
        if failures >= settings.WEBHOOKS_DISABLE_AFTER_FAILURES:
            endpoint_disable(endpoint=delivery.endpoint, now=now,
                             reason=f"disabled automatically after {failures} consecutive failed attempts")


def deliveries_dispatch_due(*, now: dt.datetime | None = None) -> int:
    """The Beat tick: hand due deliveries of enabled endpoints to the broker
    (again, if it lost them), and put back rows left `sending` by a worker
    that died mid-request. Returns how many were enqueued."""
    now = now or timezone.now()
    stale = now - dt.timedelta(seconds=settings.WEBHOOKS_REENQUEUE_AFTER_SECONDS)
    stuck_before = now - dt.timedelta(seconds=settings.WEBHOOKS_TIMEOUT_SECONDS + settings.CELERY_TASK_TIME_LIMIT)
    with transaction.atomic():
        WebhookDelivery.objects.filter(status=DS.SENDING, claimed_at__lt=stuck_before).update(
            status=DS.PENDING, next_attempt_at=now, enqueued_at=None)
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=DS.PENDING, next_attempt_at__lte=now, endpoint__enabled=True)
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
            .order_by("next_attempt_at").values_list("pk", flat=True)[:settings.WEBHOOKS_CLAIM_LIMIT]
        )
        WebhookDelivery.objects.filter(pk__in=due).update(enqueued_at=now)
        _enqueue_on_commit(due)
    return len(due)


def deliveries_prune(*, now: dt.datetime | None = None, chunk: int = 5000) -> int:
    """Forget deliveries finished (succeeded or given up) more than
    WEBHOOKS_RETENTION_DAYS ago, with their attempts; pending, sending and
    replayed ones stay. Returns how many were deleted."""
    before = (now or timezone.now()) - dt.timedelta(days=settings.WEBHOOKS_RETENTION_DAYS)
    deleted = 0
    while True:
        with transaction.atomic():
            # Locked and re-checked: a replay between the read and the delete keeps its row.
            ids = list(WebhookDelivery.objects.select_for_update(skip_locked=True)
                       .filter(status__in=[DS.SUCCEEDED, DS.GIVEN_UP], finished_at__lt=before)
                       .order_by("finished_at").values_list("pk", flat=True)[:chunk])
            WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
            WebhookDelivery.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
        if len(ids) < chunk:
            return deleted


def deliveries_replay(*, deliveries: Iterable[WebhookDelivery], actor: str) -> int:
    """A new attempt now (same webhook-id), logged as a replay by `actor`.
    Refused for a disabled endpoint: enable it first."""
    ids = [d.pk for d in deliveries]
    disabled = WebhookDelivery.objects.filter(pk__in=ids, endpoint__enabled=False)
    if disabled.exists():
        raise WebhookError("Some of these deliveries belong to a disabled endpoint: enable it first.")
    now = timezone.now()
    with transaction.atomic():
        replayed = list(WebhookDelivery.objects.select_for_update().filter(pk__in=ids).exclude(status=DS.SENDING)
                        .values_list("pk", flat=True))
        WebhookDelivery.objects.filter(pk__in=replayed).update(
            status=DS.PENDING, next_attempt_at=now, enqueued_at=now, finished_at=None,
            replay_requested_by=actor[:150])
        _enqueue_on_commit(replayed)
    return len(replayed)
