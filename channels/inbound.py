"""Inbound replies (SMS, WhatsApp, RCS): STOP/START/HELP/YES keywords act on
consent at once; anything else is stored and announced for support."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from channels import outbound_webhooks
from channels.models import HANDED_OVER, DeliveryEvent, InboundMessage, KeywordAction, OriginKind, OutboundMessage
from channels.services import message_engagement_record, messages_cancel, system_reply_send
from channels.signals import inbound_message_received
from consent import services as consent_services
from consent.models import Channel, ConsentSource, ConsentStatus, Contact, MessageClass, SuppressionReason

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP"})
CONFIRM_WORDS = frozenset({"YES"})
ACTOR = "inbound-keyword"


def keyword_action(body: str) -> str:
    """Case-insensitive, surrounding spaces ignored; the whole reply must be
    the keyword ("stop it" is a reply, not an opt-out)."""
    word = body.strip().upper()
    if word in STOP_WORDS:
        return KeywordAction.STOP
    if word in START_WORDS:
        return KeywordAction.START
    if word in HELP_WORDS:
        return KeywordAction.HELP
    if word in CONFIRM_WORDS:
        return KeywordAction.CONFIRM
    return KeywordAction.NONE


@dataclass(frozen=True)
class InboundAddress:
    channel: str
    address: str  # E.164, without the whatsapp:/rcs: prefix


def parse_address(raw: str) -> InboundAddress:
    for prefix, channel in (("whatsapp:", Channel.WHATSAPP), ("rcs:", Channel.RCS)):
        if raw.startswith(prefix):
            return InboundAddress(channel, raw[len(prefix):])
    return InboundAddress(Channel.SMS, raw)


def contact_for_address(parsed: InboundAddress) -> Contact | None:
    contacts = Contact.objects.filter(erased_at__isnull=True, merged_into__isnull=True)
    if parsed.channel == Channel.WHATSAPP:
        return contacts.filter(Q(whatsapp_id=parsed.address) | Q(phone=parsed.address)).order_by("-id").first()
    return contacts.filter(phone=parsed.address).first()


def inbound_receive(
    *,
    provider: str,
    provider_message_id: str,
    from_address: str,
    to_address: str,
    body: str,
    payload: dict,
    now: dt.datetime | None = None,
) -> InboundMessage:
    """Store one inbound message once (by provider id) and act on it."""
    now = now or timezone.now()
    existing = InboundMessage.objects.filter(provider_message_id=provider_message_id).first()
    if existing is not None:
        return existing
    parsed = parse_address(from_address)
    contact = contact_for_address(parsed)
    try:
        with transaction.atomic():
            inbound = InboundMessage.objects.create(
                contact=contact, channel=parsed.channel, from_address=parsed.address, to_address=to_address,
                body=body, received_at=now, provider=provider, provider_message_id=provider_message_id,
                keyword_action=keyword_action(body), payload=payload,
                in_reply_to=_latest_outbound(parsed) if contact else None,
            )
            _act(inbound, contact, now)
    except IntegrityError:
        # The same report delivered twice at once: the other one acted.
        return InboundMessage.objects.get(provider_message_id=provider_message_id)
    return inbound


def _latest_outbound(parsed: InboundAddress) -> OutboundMessage | None:
    return (
        OutboundMessage.objects.filter(channel=parsed.channel, address=parsed.address, status__in=HANDED_OVER)
        .order_by("-created_at", "-id")
        .first()
    )


def _act(inbound: InboundMessage, contact: Contact | None, now: dt.datetime) -> None:
    action = inbound.keyword_action
    if action == KeywordAction.STOP:
        _stop(inbound, contact, now)
    elif contact is None:
        pass  # START/HELP/YES or a reply from a number we do not know: kept for the record
    elif action == KeywordAction.START:
        _start(inbound, contact, now)
    elif action == KeywordAction.HELP:
        _reply(inbound, contact, settings.CHANNELS_HELP_TEXT, now)
    elif action == KeywordAction.CONFIRM:
        consent_services.consent_confirm_latest_pending(
            contact=contact, channel=inbound.channel, evidence=_evidence(inbound), at=now
        )
    if action == KeywordAction.NONE:
        if inbound.in_reply_to_id:
            message_engagement_record(message=inbound.in_reply_to, kind=DeliveryEvent.Kind.REPLIED, at=now, now=now)
        outbound_webhooks.reply_emit(inbound=inbound)
        transaction.on_commit(lambda: inbound_message_received.send(sender=InboundMessage, inbound=inbound))


def _evidence(inbound: InboundMessage) -> dict:
    return {"keyword": inbound.body.strip().upper(), "inbound_message_id": inbound.pk,
            "provider_message_id": inbound.provider_message_id, "channel": inbound.channel}


def _stop(inbound: InboundMessage, contact: Contact | None, now: dt.datetime) -> None:
    """Revoke every purpose on this channel. Order matters: pending sends are
    cancelled first, then the one confirmation passes the gate while it is
    still allowed, then the ledger records the revocation."""
    if contact is None:
        consent_services.suppression_create(
            reason=SuppressionReason.MANUAL, actor=ACTOR, address=inbound.from_address, channel=inbound.channel,
            note=f"{inbound.body.strip().upper()} from an unknown number (inbound {inbound.pk})",
        )
        return
    # Earlier keyword answers still in the outbox stay: they are the answers.
    messages_cancel(queryset_filter={"contact": contact, "channel": inbound.channel,
                                     "origin_kind__in": [k for k in OriginKind.values if k != OriginKind.SYSTEM]},
                    reason=f"contact replied {inbound.body.strip().upper()}", now=now)
    _reply(inbound, contact, settings.CHANNELS_STOP_TEXT, now)
    for purpose in MessageClass.values:
        consent_services.consent_record(
            contact=contact, channel=inbound.channel, purpose=purpose, status=ConsentStatus.REVOKED,
            source=ConsentSource.KEYWORD, actor=ACTOR, evidence=_evidence(inbound), at=now,
        )


def _start(inbound: InboundMessage, contact: Contact, now: dt.datetime) -> None:
    """Re-grant what a keyword revoked on this channel. Marketing on a
    double opt-in channel comes back as pending, as any grant would."""
    for purpose in MessageClass.values:
        latest = (
            contact.consent_records.filter(channel=inbound.channel, purpose=purpose)
            .exclude(status=ConsentStatus.PENDING)
            .order_by("-recorded_at", "-id")
            .first()
        )
        if latest is not None and latest.status == ConsentStatus.REVOKED:
            consent_services.consent_record(
                contact=contact, channel=inbound.channel, purpose=purpose, status=ConsentStatus.GRANTED,
                source=ConsentSource.KEYWORD, actor=ACTOR, evidence=_evidence(inbound), at=now,
            )
    _reply(inbound, contact, settings.CHANNELS_START_TEXT, now)


def _reply(inbound: InboundMessage, contact: Contact, text: str, now: dt.datetime) -> OutboundMessage:
    return system_reply_send(
        contact=contact, channel=inbound.channel, text=text, idempotency_key=f"inbound:{inbound.pk}:reply",
        label=f"answer to {inbound.body.strip().upper()}", now=now,
    )
