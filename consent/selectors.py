"""Reads of the consent app that need thought."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from consent.models import Channel, ConsentRecord, ConsentStatus, Contact, MessageClass


@dataclass(frozen=True)
class ConsentCell:
    channel: str
    purpose: str
    state: str  # granted, revoked, pending, expired, none
    since: dt.datetime | None
    record_id: int | None


def consent_state(contact: Contact, at: dt.datetime | None = None) -> list[ConsentCell]:
    """Current state per channel x purpose, derived from the ledger: the latest
    decided record wins; a newer pending grant shows as pending (or expired)."""
    at = at or timezone.now()
    decided: dict[tuple[str, str], ConsentRecord] = {}
    pending: dict[tuple[str, str], ConsentRecord] = {}
    for record in contact.consent_records.filter(recorded_at__lte=at).order_by("recorded_at", "id"):
        target = pending if record.status == ConsentStatus.PENDING else decided
        target[(record.channel, record.purpose)] = record
    cells = []
    for channel in Channel.values:
        for purpose in MessageClass.values:
            cells.append(_cell(channel, purpose, decided.get((channel, purpose)), pending.get((channel, purpose)), at))
    return cells


def _cell(
    channel: str, purpose: str, decided: ConsentRecord | None, pending: ConsentRecord | None, at: dt.datetime
) -> ConsentCell:
    if pending is not None and (decided is None or pending.recorded_at > decided.recorded_at):
        state = "pending" if pending.expires_at is None or pending.expires_at > at else "expired"
        if state == "pending" or decided is None:
            return ConsentCell(channel, purpose, state, pending.recorded_at, pending.pk)
    if decided is None:
        return ConsentCell(channel, purpose, "none", None, None)
    return ConsentCell(channel, purpose, decided.status, decided.recorded_at, decided.pk)
