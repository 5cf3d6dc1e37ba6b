"""What channels does when consent merges or erases a contact."""

from __future__ import annotations

from channels.models import DeliveryEvent, InboundMessage, OutboundMessage, SendIntent, WebhookDelivery
from consent.masking import redact_text
from consent.models import Contact

REDACTED = {"redacted": True}


def contact_merged(survivor: Contact, merged: Contact) -> int:
    """The merged contact's messages, ladders and replies move to the survivor."""
    moved = OutboundMessage.objects.filter(contact=merged).update(contact=survivor)
    moved += SendIntent.objects.filter(contact=merged).update(contact=survivor)
    moved += InboundMessage.objects.filter(contact=merged).update(contact=survivor)
    return moved


def contact_erased(contact: Contact, *, former_external_ids: frozenset[str] = frozenset()) -> None:
    """Rendered content, addresses, render data and reply text are personal;
    statuses, times, template versions and decisions stay for the counts.
    Stored webhook payloads (kept for replay) name the contact by its
    external id: they name it by its erased one from now on."""
    messages = OutboundMessage.objects.filter(contact=contact)
    for pk, detail in messages.exclude(decision_detail="").values_list("pk", "decision_detail"):
        OutboundMessage.objects.filter(pk=pk).update(decision_detail=redact_text(detail))
    messages.update(content=REDACTED, render_data={}, address="", error="")
    events = DeliveryEvent.objects.filter(message__in=messages)
    # A provider's bounce text quotes the address; the rest of it says why.
    for pk, detail in events.exclude(detail="").values_list("pk", "detail"):
        DeliveryEvent.objects.filter(pk=pk).update(detail=redact_text(detail))
    events.update(payload=REDACTED)
    SendIntent.objects.filter(contact=contact).update(data={})
    InboundMessage.objects.filter(contact=contact).update(body="", from_address="", to_address="", payload=REDACTED)
    _rename_in_webhook_payloads(former_external_ids, contact.external_id)


def _rename_in_webhook_payloads(former_external_ids: frozenset[str], erased_id: str) -> None:
    quoting = WebhookDelivery.objects.filter(payload__data__contact_external_id__in=former_external_ids - {erased_id})
    renamed = []
    for delivery in quoting.only("pk", "payload").iterator(chunk_size=500):
        delivery.payload["data"]["contact_external_id"] = erased_id
        renamed.append(delivery)
    WebhookDelivery.objects.bulk_update(renamed, ["payload"], batch_size=500)
