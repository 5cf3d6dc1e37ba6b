"""Console provider accounts for every channel, and a few delivered demo
messages so the message log is not empty after `make run`."""

from __future__ import annotations

from channels import services
from channels.delivery import deliver_batch
from channels.models import Adapter, OutboundMessage, ProviderAccount
from consent.demo import last_working_noon
from consent.models import Channel, Contact
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
            template_key=template_key, now=last_working_noon(contact),
        )
        added += len(result.messages)
        queued += [m.pk for m in result.messages if m.status == "queued"]
    if queued:
        deliver_batch(message_ids=queued)  # console accounts: delivered at once
    return added
