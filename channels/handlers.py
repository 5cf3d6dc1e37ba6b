"""What channels does when consent merges or erases a contact."""

from __future__ import annotations

from channels.models import DeliveryEvent, InboundMessage, OutboundMessage, SendIntent
from consent.masking import redact_text
from consent.models import Contact

REDACTED = {"redacted": True}


def contact_merged(survivor: Contact, merged: Contact) -> int:
    """The merged contact's messages, ladders and replies move to the survivor."""
    moved = OutboundMessage.objects.filter(contact=merged).update(contact=survivor)
    moved += SendIntent.objects.filter(contact=merged).update(contact=survivor)
    moved += InboundMessage.objects.filter(contact=merged).update(contact=survivor)
    return moved


def contact_erased(contact: Contact) -> None:
    """Rendered content, addresses, render data and reply text are personal;
    statuses, times, template versions and decisions stay for the counts."""
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
