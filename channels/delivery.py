"""Delivery: claim queued messages, hand each to its provider adapter, record
the outcome; retries with backoff, permanent failures with feedback, and the
sweeper that recovers what a lost task or a dead worker left behind.

Safe to run twice: a message is only handed to a provider after this worker
moved it queued -> sending with a conditional update; a redelivered task
finds it past queued and does nothing."""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from channels import ratelimit
from channels.models import Adapter, DeliveryEvent, MessageStatus, OutboundMessage, ProviderAccount
from channels.providers.base import Accepted, AmbiguousError, Feedback, PermanentError, TransientError
from channels.providers.registry import provider_for
from channels.services import enqueue_delivery, message_transition, messages_recheck_for_delivery
from channels.signals import message_status_changed
from consent import services as consent_services
from consent.models import Channel, DevicePlatform, PushDevice, SuppressionReason

logger = logging.getLogger(__name__)
SYSTEM_ACTOR = "channels"
RATE_LIMITED_DELAY = 1.0


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    ambiguous: int = 0
    rate_limited: list[int] = field(default_factory=list)


# Push is one channel served by two kinds of service: browsers subscribe with
# Web Push, apps register FCM tokens.
_PUSH_ADAPTERS = {
    DevicePlatform.WEB: (Adapter.WEBPUSH, Adapter.CONSOLE),
    DevicePlatform.ANDROID: (Adapter.FCM, Adapter.CONSOLE),
    DevicePlatform.IOS: (Adapter.FCM, Adapter.CONSOLE),
}


def account_for(channel: str, platform: str = "") -> ProviderAccount | None:
    """The active account with the lowest priority serves the channel (for
    push: among the adapters that can reach the device's platform)."""
    accounts = ProviderAccount.objects.filter(channel=channel, active=True).order_by("priority", "pk")
    if channel == Channel.PUSH and platform:
        accounts = accounts.filter(adapter__in=_PUSH_ADAPTERS.get(platform, (Adapter.CONSOLE,)))
    return accounts.first()


def _platform(message: OutboundMessage) -> str:
    if message.channel != Channel.PUSH:
        return ""
    return PushDevice.objects.filter(token=message.address).values_list("platform", flat=True).first() or ""


def messages_claim(*, message_ids: list[int], now: dt.datetime) -> list[OutboundMessage]:
    """queued -> sending, for the rows that are still queued and due and that
    the gate still allows (consent may have changed since they were queued);
    rows another worker holds are skipped, never waited for."""
    with transaction.atomic():
        candidates = list(
            OutboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("contact", "intent")
            .filter(pk__in=message_ids, status=MessageStatus.QUEUED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("pk")
        )
        claimable = [m.pk for m in messages_recheck_for_delivery(messages=candidates, now=now)]
        updated = OutboundMessage.objects.filter(pk__in=claimable, status=MessageStatus.QUEUED).update(
            status=MessageStatus.SENDING, sending_at=now, status_changed_at=now
        )
        if updated != len(claimable):
            raise AssertionError("rows locked for the claim changed under the lock")
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(message_id=pk, kind=DeliveryEvent.Kind.STATUS, status=MessageStatus.SENDING,
                          old_status=MessageStatus.QUEUED, received_at=now)
            for pk in claimable
        )
        claimed = list(OutboundMessage.objects.filter(pk__in=claimable).select_related("contact").order_by("pk"))
        transaction.on_commit(lambda: _announce(claimed, MessageStatus.QUEUED, MessageStatus.SENDING))
    return claimed


def _announce(messages: list[OutboundMessage], old: str, new: str) -> None:
    for message in messages:
        message_status_changed.send(sender=OutboundMessage, message=message, old_status=old, new_status=new)


def deliver_batch(*, message_ids: list[int], now: dt.datetime | None = None) -> BatchReport:
    now = now or timezone.now()
    report = BatchReport()
    claimed = messages_claim(message_ids=message_ids, now=now)
    report.claimed = len(claimed)
    accounts: dict[tuple[str, str], ProviderAccount | None] = {}
    for message in claimed:
        route = (message.channel, _platform(message))
        if route not in accounts:
            accounts[route] = account_for(*route)
        _deliver_one(message, accounts[route], report)
    if report.rate_limited:
        enqueue_delivery(report.rate_limited, countdown=RATE_LIMITED_DELAY)
    return report


def _deliver_one(message: OutboundMessage, account: ProviderAccount | None, report: BatchReport) -> None:
    if account is None:
        # Configuration an operator can fix (add or activate an account):
        # wait for it with backoff rather than lose the message.
        _count_attempt(message)
        _retry_or_fail(message, TransientError(f"no active provider account for channel {message.channel}"), report)
        return
    if not ratelimit.try_acquire(account):
        # Back in line without spending an attempt; retried in a second.
        message_transition(message=message, to=MessageStatus.QUEUED, detail=f"rate limit of {account.name}",
                           fields={"next_attempt_at": timezone.now()})
        report.rate_limited.append(message.pk)
        return
    _count_attempt(message)
    try:
        accepted = provider_for(account).send(message, account)
    except SoftTimeLimitExceeded:
        # The task is out of time: stop the batch now. This row and the rest
        # of the batch stay in `sending`; the sweeper recovers them.
        raise
    except AmbiguousError as error:
        _ambiguous(message, error, report)
    except TransientError as error:
        _retry_or_fail(message, error, report)
    except PermanentError as error:
        _fail(message, f"{error.code}: {error}" if error.code else str(error), report)
        feedback_apply(message=message, feedback=error.feedback, detail=str(error))
    except ImproperlyConfigured as error:  # a missing secret: an operator can fix it, so wait for it
        _retry_or_fail(message, TransientError(f"provider account misconfigured: {error}"), report)
    except Exception as error:  # an adapter bug or an unmapped library error: retry, do not lose it
        logger.exception("unexpected error delivering message %s", message.pk)
        _retry_or_fail(message, TransientError(f"unexpected {type(error).__name__}: {error}"), report)
    else:
        _accepted(message, account, accepted)
        report.sent += 1


def _count_attempt(message: OutboundMessage) -> None:
    # Counted before the call, so a crash inside the provider call still counts.
    OutboundMessage.objects.filter(pk=message.pk).update(attempts=F("attempts") + 1)
    message.attempts += 1


def _ambiguous(message: OutboundMessage, error: AmbiguousError, report: BatchReport) -> None:
    """The request reached the provider but its answer did not reach us: it
    may have been accepted. Sending again now could deliver it twice, so the
    row stays in `sending`: the provider's status callback (it carries our
    message id) settles it, and if none comes the sweeper re-queues it after
    CHANNELS_STUCK_AFTER_SECONDS (or fails it at the attempt limit)."""
    detail = f"ambiguous, left for the status callback or the sweeper: {error}"
    OutboundMessage.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(error=detail[:2000])
    DeliveryEvent.objects.create(message=message, kind=DeliveryEvent.Kind.STATUS, status=MessageStatus.SENDING,
                                 old_status=MessageStatus.SENDING, detail=detail[:500], received_at=timezone.now())
    report.ambiguous += 1


def _accepted(message: OutboundMessage, account: ProviderAccount, accepted: Accepted) -> None:
    fields = {
        "provider": account.adapter,
        "provider_account_id": account.pk,
        "provider_message_id": accepted.provider_message_id[:200],
        "cost_estimate": accepted.cost_estimate,
        "error": "",
    }
    # A fast provider may already have reported delivery (a webhook landed
    # first); then only the bookkeeping fields are filled in.
    moved = message_transition(message=message, to=MessageStatus.SENT, fields=fields, strict=False)
    if not moved:
        OutboundMessage.objects.filter(pk=message.pk).update(**fields)
        return
    if accepted.delivered:
        message_transition(message=message, to=MessageStatus.DELIVERED, detail="console adapter", strict=False)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, then a
    random point in its upper half so retries from a burst spread out."""
    ceiling = min(settings.CHANNELS_RETRY_MAX_SECONDS, settings.CHANNELS_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def _retry_or_fail(message: OutboundMessage, error: TransientError, report: BatchReport) -> None:
    if message.attempts >= settings.CHANNELS_MAX_ATTEMPTS:
        _fail(message, f"gave up after {message.attempts} attempts: {error}", report)
        return
    delay = backoff_seconds(message.attempts)
    not_before = timezone.now() + dt.timedelta(seconds=delay)
    message_transition(message=message, to=MessageStatus.QUEUED, detail=f"transient: {error}"[:500],
                       fields={"next_attempt_at": not_before, "error": str(error)[:2000]})
    enqueue_delivery([message.pk], countdown=delay)
    report.retried += 1


def _fail(message: OutboundMessage, detail: str, report: BatchReport) -> None:
    message_transition(message=message, to=MessageStatus.FAILED, detail=detail[:500], fields={"error": detail[:2000]})
    report.failed += 1


def feedback_apply(*, message: OutboundMessage, feedback: str, detail: str) -> None:
    """What a permanent failure teaches about the address: a dead push token
    is deactivated; a hard bounce or complaint suppresses the address."""
    if feedback == Feedback.UNREGISTERED_DEVICE:
        for device in PushDevice.objects.filter(token=message.address, active=True):
            consent_services.push_device_deactivate(device=device, reason=f"provider: {detail}"[:200])
    elif feedback in (Feedback.HARD_BOUNCE, Feedback.COMPLAINT):
        reason = SuppressionReason.HARD_BOUNCE if feedback == Feedback.HARD_BOUNCE else SuppressionReason.SPAM_COMPLAINT
        consent_services.suppression_create(
            reason=reason, actor=SYSTEM_ACTOR, address=message.address, channel=message.channel,
            note=f"message {message.pk}: {detail}"[:1000],
        )


# --- The sweeper -----------------------------------------------------------------


def messages_sweep_stuck(*, now: dt.datetime | None = None, limit: int = 5000) -> int:
    """Re-enqueue what the broker lost (queued past the threshold) and recover
    what a dead worker left in `sending` (past the task time limit, so the
    task cannot still be running). Returns how many were re-enqueued."""
    now = now or timezone.now()
    threshold = now - dt.timedelta(seconds=settings.CHANNELS_STUCK_AFTER_SECONDS)
    with transaction.atomic():
        stuck_sending = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.SENDING, sending_at__lt=threshold)
            .order_by("sending_at")[:limit]
        )
        for message in stuck_sending:
            if message.attempts >= settings.CHANNELS_MAX_ATTEMPTS:
                # A message that kills its worker every time must not loop forever.
                message_transition(message=message, to=MessageStatus.FAILED, now=now,
                                   detail=f"worker lost mid-delivery {message.attempts} times")
                continue
            message_transition(message=message, to=MessageStatus.QUEUED, now=now,
                               detail="recovered by the sweeper: worker lost mid-delivery",
                               fields={"next_attempt_at": now})
        lost = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.QUEUED, next_attempt_at__lt=threshold)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        # Restamp so the next sweep waits a full threshold before trying again.
        OutboundMessage.objects.filter(pk__in=lost).update(next_attempt_at=now)
        ids = [m.pk for m in stuck_sending if m.status == MessageStatus.QUEUED] + lost
        if ids:
            enqueue_delivery(ids)
    if ids:
        logger.info("sweeper re-enqueued %d messages (%d from sending)", len(ids), len(stuck_sending))
    return len(ids)
