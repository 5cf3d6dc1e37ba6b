"""Console provider accounts for every channel, and a few delivered demo
messages so the message log is not empty after `make run`."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from channels import services
from channels.delivery import deliver_batch
from channels.models import Adapter, OutboundMessage, ProviderAccount
from consent.models import Channel, Contact, Holiday
from consent.policy import contact_timezone
from templates.services import render_context

# contact, template key, event properties
DEMO_SENDS = [
    ("cus_ana", "appointment-reminder-sms", {"appointment_at": "2026-12-01T10:30:00+00:00"}),
    ("cus_ben", "payment-failed-email", {"amount": "29.00", "invoice_url": "https://example.com/inv/1"}),
    ("cus_chloe", "onboarding-welcome-email", {}),
    ("cus_diego", "appointment-reminder-push", {"appointment_at": "2026-12-02T15:00:00+00:00"}),
]


def seed() -> int:
    added = 0
    for channel in Channel.values:
        _, created = ProviderAccount.objects.get_or_create(
            name=f"Console {channel}", defaults={"channel": channel, "adapter": Adapter.CONSOLE,
                                                 "sender": "demo", "priority": 1000},
        )
        added += created
    queued = []
    for external_id, template_key, event in DEMO_SENDS:
        contact = Contact.objects.filter(external_id=external_id).first()
        if contact is None or services.template_profile(template_key) is None:
            continue
        key = f"demo:{external_id}:{template_key}"
        if OutboundMessage.objects.filter(idempotency_key=key).exists():
            continue
        result = services.send(
            contact=contact, data=render_context(contact, event_properties=event),
            origin=services.Origin(kind=services.OriginKind.SYSTEM, label="demo data"), idempotency_key=key,
            template_key=template_key, now=_last_working_noon(contact),
        )
        added += len(result.messages)
        queued += [m.pk for m in result.messages if m.status == "queued"]
    if queued:
        deliver_batch(message_ids=queued)  # console accounts: delivered at once
    return added


def _last_working_noon(contact: Contact) -> dt.datetime:
    """Sent at the contact's last noon that was not a holiday, so the demo
    messages are delivered whatever the hour `make run` (or a test) seeds at,
    instead of deferred by quiet hours."""
    local_now = timezone.now().astimezone(contact_timezone(contact))
    noon = local_now.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon > local_now:
        noon -= dt.timedelta(days=1)
    while Holiday.objects.filter(date=noon.date()).exists():
        noon -= dt.timedelta(days=1)
    return noon
