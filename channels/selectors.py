"""Reads of the channels app that edges share (API, admin, support)."""

from __future__ import annotations

from django.db.models import QuerySet

from channels.models import OutboundMessage
from consent.models import Contact


def messages_for_contact(contact: Contact) -> QuerySet[OutboundMessage]:
    """A contact's messages, newest first (index msg_contact_idx)."""
    return OutboundMessage.objects.filter(contact=contact).select_related("contact").order_by("-created_at", "-id")


def message_with_timeline() -> QuerySet[OutboundMessage]:
    return OutboundMessage.objects.select_related("contact").prefetch_related("events")
