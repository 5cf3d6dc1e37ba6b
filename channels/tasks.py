"""Celery tasks: thin wrappers carrying ids only. Every one is safe to run
twice (see channels.delivery)."""

from __future__ import annotations

from celery import shared_task

from channels import delivery, outbound_webhooks, services


@shared_task(name="channels.deliver_messages")
def deliver_messages(message_ids: list[int]) -> dict:
    report = delivery.deliver_batch(message_ids=[int(pk) for pk in message_ids])
    return {"claimed": report.claimed, "sent": report.sent, "retried": report.retried, "failed": report.failed}


@shared_task(name="channels.sweep_stuck_messages")
def sweep_stuck_messages() -> int:
    return delivery.messages_sweep_stuck()


@shared_task(name="channels.release_deferred_messages")
def release_deferred_messages() -> int:
    return services.messages_release_deferred()


@shared_task(name="channels.advance_ladders")
def advance_ladders() -> int:
    return services.ladders_advance_due()


@shared_task(name="channels.deliver_webhooks")
def deliver_webhooks(delivery_ids: list[int]) -> int:
    return outbound_webhooks.deliveries_attempt(delivery_ids=[int(pk) for pk in delivery_ids])


@shared_task(name="channels.dispatch_due_webhooks")
def dispatch_due_webhooks() -> int:
    return outbound_webhooks.deliveries_dispatch_due()


@shared_task(name="channels.prune_webhook_deliveries")
def prune_webhook_deliveries() -> int:
    return outbound_webhooks.deliveries_prune()
