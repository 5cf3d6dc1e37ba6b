"""Writes of the consent app: contacts, the ledger, suppressions, merge, erasure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone

from consent.hashing import address_hash
from consent.masking import redact_text
from consent.models import (
    ConsentRecord,
    ConsentSource,
    ConsentStatus,
    Contact,
    ContactMerge,
    PushDevice,
    Suppression,
    normalise_phone,
)
from consent.selectors import consent_state
from consent.signals import consent_recorded

Actor = Any  # a User, an APIKey, or a plain label such as "system"

CONTACT_FIELDS = ("email", "phone", "whatsapp_id", "timezone", "locale", "lifecycle_stage", "attributes")
IDENTIFIER_FIELDS = ("email", "phone")
CONFIRMATION_SALT = "consent.double-opt-in"


class ConsentError(Exception):
    """A consent operation that cannot be done as asked (API answers 409)."""


class IdentityConflict(ConsentError):
    """An identifier in the request already belongs to another contact."""

    def __init__(self, field: str, other: Contact):
        self.field = field
        self.other = other
        super().__init__(f"{field} already belongs to contact {other.external_id!r} (id {other.pk})")


def actor_label(actor: Actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    if hasattr(actor, "get_username"):
        return f"user:{actor.get_username()}"
    if hasattr(actor, "prefix"):
        return f"api-key:{actor.name}"
    return str(actor)


def _clean_identifiers(data: dict[str, Any]) -> dict[str, Any]:
    cleaned = dict(data)
    if cleaned.get("email"):
        cleaned["email"] = cleaned["email"].strip().lower()
    for field in ("phone", "whatsapp_id"):
        if cleaned.get(field):
            cleaned[field] = normalise_phone(cleaned[field])
    return cleaned


def _check_identity(contact: Contact | None, data: dict[str, Any]) -> None:
    for field in IDENTIFIER_FIELDS:
        value = data.get(field)
        if not value:
            continue
        other = Contact.objects.filter(**{field: value}).exclude(pk=contact.pk if contact else None).first()
        if other is not None:
            raise IdentityConflict(field, other)


def contact_upsert(
    *,
    external_id: str,
    data: dict[str, Any],
    push_devices: list[dict[str, Any]] | None = None,
    actor: Actor,
) -> tuple[Contact, bool]:
    """Create or update the contact with this external id. Identifiers that
    belong to another contact raise IdentityConflict instead of a duplicate."""
    data = _clean_identifiers({k: v for k, v in data.items() if k in CONTACT_FIELDS})
    try:
        with transaction.atomic():
            contact = Contact.objects.select_for_update().filter(external_id=external_id).first()
            _check_identity(contact, data)
            created = contact is None
            if created:
                contact = Contact(external_id=external_id, **data)
                contact._change_reason = f"created by {actor_label(actor)}"
                contact.save()
            elif data:
                for field, value in data.items():
                    setattr(contact, field, value)
                contact._change_reason = f"updated by {actor_label(actor)}"
                contact.save(update_fields=[*data.keys(), "updated_at"])
            for device in push_devices or []:
                push_device_register(contact=contact, **device)
    except IntegrityError:
        # A concurrent request took the identifier between check and write.
        _check_identity(Contact.objects.filter(external_id=external_id).first(), data)
        raise
    return contact, created


def push_device_register(
    *, contact: Contact, token: str, platform: str, active: bool = True, subscription: dict | None = None
) -> PushDevice:
    device, _ = PushDevice.objects.update_or_create(
        token=token,
        defaults={"contact": contact, "platform": platform, "active": active, "subscription": subscription or {}},
    )
    return device


def push_device_deactivate(*, device: PushDevice, reason: str) -> None:
    PushDevice.objects.filter(pk=device.pk).update(active=False, deactivated_reason=reason[:200])


def needs_double_opt_in(channel: str, purpose: str) -> bool:
    return f"{channel}:{purpose}" in settings.CONSENT_DOUBLE_OPT_IN


def consent_record(
    *,
    contact: Contact,
    channel: str,
    purpose: str,
    status: str,
    source: str,
    actor: Actor,
    evidence: dict[str, Any] | None = None,
    wording_version: str = "",
    at: dt.datetime | None = None,
) -> ConsentRecord:
    """Append one record to the ledger. A grant on a double opt-in
    channel/purpose is stored as pending until confirmed."""
    at = at or timezone.now()
    expires_at = None
    confirmed = source == ConsentSource.CONFIRMATION
    if status == ConsentStatus.GRANTED and not confirmed and needs_double_opt_in(channel, purpose):
        status = ConsentStatus.PENDING
        expires_at = at + dt.timedelta(hours=settings.CONSENT_PENDING_TTL_HOURS)
    with transaction.atomic():
        record = ConsentRecord.objects.create(
            contact=contact,
            channel=channel,
            purpose=purpose,
            status=status,
            source=source,
            evidence=evidence or {},
            wording_version=wording_version or settings.CONSENT_WORDING_VERSION,
            recorded_at=at,
            recorded_by=actor_label(actor),
            expires_at=expires_at,
        )
        # Inside the transaction: what listeners write (webhook outbox rows) commits or rolls back with the record.
        consent_recorded.send(sender=ConsentRecord, record=record)
    return record


def consent_confirmation_token(record: ConsentRecord) -> str:
    return signing.dumps({"record": record.pk}, salt=CONFIRMATION_SALT)


def consent_confirm_token(*, token: str, evidence: dict[str, Any], at: dt.datetime | None = None) -> ConsentRecord:
    """Confirm a pending grant from a signed email link."""
    max_age = dt.timedelta(hours=settings.CONSENT_PENDING_TTL_HOURS)
    try:
        payload = signing.loads(token, salt=CONFIRMATION_SALT, max_age=max_age)
    except signing.BadSignature:
        raise ConsentError("This confirmation link is invalid or has expired.") from None
    pending = ConsentRecord.objects.select_related("contact").get(pk=payload["record"])
    return consent_confirm(pending=pending, evidence=evidence, actor="double-opt-in", at=at)


def consent_confirm_latest_pending(
    *, contact: Contact, channel: str, evidence: dict[str, Any], at: dt.datetime | None = None
) -> list[ConsentRecord]:
    """Confirm every open pending grant on a channel (a YES reply by SMS)."""
    at = at or timezone.now()
    pending = ConsentRecord.objects.filter(
        contact=contact, channel=channel, status=ConsentStatus.PENDING, expires_at__gt=at
    )
    confirmed = []
    for record in pending:
        try:
            confirmed.append(consent_confirm(pending=record, evidence=evidence, actor="double-opt-in", at=at))
        except ConsentError:
            continue
    return confirmed


def consent_confirm(
    *, pending: ConsentRecord, evidence: dict[str, Any], actor: Actor, at: dt.datetime | None = None
) -> ConsentRecord:
    at = at or timezone.now()
    with transaction.atomic():
        # Lock the contact so two clicks on the same link confirm once.
        Contact.objects.select_for_update().get(pk=pending.contact_id)
        if pending.status != ConsentStatus.PENDING:
            raise ConsentError("Only a pending grant can be confirmed.")
        if pending.expires_at and pending.expires_at <= at:
            raise ConsentError("This grant was not confirmed in time and has expired.")
        if pending.confirmations.exists():
            raise ConsentError("This grant was already confirmed.")
        later = ConsentRecord.objects.filter(
            contact_id=pending.contact_id, channel=pending.channel, purpose=pending.purpose,
            recorded_at__gt=pending.recorded_at,
        ).exclude(status=ConsentStatus.PENDING)
        if later.exists():
            raise ConsentError("A later consent decision supersedes this grant.")
        confirmed = ConsentRecord.objects.create(
            contact_id=pending.contact_id,
            channel=pending.channel,
            purpose=pending.purpose,
            status=ConsentStatus.GRANTED,
            source=ConsentSource.CONFIRMATION,
            evidence={**evidence, "confirms_record": pending.pk},
            wording_version=pending.wording_version,
            recorded_at=at,
            recorded_by=actor_label(actor),
            confirms=pending,
        )
        consent_recorded.send(sender=ConsentRecord, record=confirmed)
    return confirmed


def suppression_create(
    *,
    reason: str,
    actor: Actor,
    contact: Contact | None = None,
    address: str = "",
    channel: str = "",
    note: str = "",
    expires_at: dt.datetime | None = None,
) -> Suppression:
    suppression = Suppression(
        contact=contact,
        address=address.strip().lower(),
        channel=channel,
        reason=reason,
        note=note,
        expires_at=expires_at,
        created_by=actor_label(actor),
    )
    suppression._change_reason = f"suppressed ({reason}) by {actor_label(actor)}"
    suppression.full_clean()
    suppression.save()
    return suppression


def suppression_lift(*, suppression: Suppression, actor: Actor) -> None:
    lifted = Suppression.objects.filter(pk=suppression.pk, lifted_at__isnull=True).update(
        lifted_at=timezone.now(), lifted_by=actor_label(actor)
    )
    if lifted != 1:
        raise ConsentError("This suppression was already lifted.")


# --- Merge --------------------------------------------------------------

MergeHandler = Callable[[Contact, Contact], int]
_merge_handlers: dict[str, MergeHandler] = {}


def register_merge_handler(label: str, handler: MergeHandler) -> None:
    """Apps above consent (channels, support) move their rows on a merge
    through a handler they register here, so consent never imports upward."""
    _merge_handlers[label] = handler


def contact_merge(*, survivor: Contact, merged: Contact, actor: Actor) -> ContactMerge:
    """Fold `merged` into `survivor`. The ledger is append-only, so the merged
    contact's consent records are copied (with their original times) rather
    than moved; everything registered by higher apps moves."""
    if survivor.pk == merged.pk:
        raise ConsentError("A contact cannot be merged into itself.")
    with transaction.atomic():
        locked = {c.pk: c for c in Contact.objects.select_for_update().filter(pk__in=[survivor.pk, merged.pk])}
        survivor, merged = locked[survivor.pk], locked[merged.pk]
        if not survivor.is_active or not merged.is_active:
            raise ConsentError("Only active contacts can be merged.")
        copies = _copy_ledger(survivor, merged, actor)
        moved = {"consent_records": len(copies)}
        moved["push_devices"] = PushDevice.objects.filter(contact=merged).update(contact=survivor)
        moved["suppressions"] = Suppression.objects.filter(contact=merged).update(contact=survivor)
        for label, handler in _merge_handlers.items():
            moved[label] = handler(survivor, merged)
        _adopt_missing_fields(survivor, merged, actor)
        merged.merged_into = survivor
        merged._change_reason = f"merged into {survivor.external_id} by {actor_label(actor)}"
        merged.save(update_fields=["merged_into", "updated_at"])
        _announce_copies(survivor, copies)
        return ContactMerge.objects.create(survivor=survivor, merged=merged, merged_by=actor_label(actor), moved=moved)


def _copy_ledger(survivor: Contact, merged: Contact, actor: Actor) -> list[ConsentRecord]:
    copies = [
        ConsentRecord(
            contact=survivor,
            channel=r.channel,
            purpose=r.purpose,
            status=r.status,
            source=ConsentSource.MERGE,
            evidence={"merged_from_record": r.pk, "merged_from_contact": merged.external_id, "original": r.evidence},
            wording_version=r.wording_version,
            recorded_at=r.recorded_at,
            recorded_by=actor_label(actor),
            expires_at=r.expires_at,
        )
        for r in merged.consent_records.order_by("recorded_at", "id")
    ]
    return ConsentRecord.objects.bulk_create(copies)


def _announce_copies(survivor: Contact, copies: list[ConsentRecord]) -> None:
    """Each copy is a record of the survivor's ledger like any other, so
    listeners hear of it; but a copy keeps its original time, so a copied
    revocation may be older than the survivor's own grant: only one that is
    now the survivor's state unsubscribes it."""
    in_effect = {cell.record_id for cell in consent_state(survivor)}
    for copy in copies:
        consent_recorded.send(sender=ConsentRecord, record=copy, in_effect=copy.pk in in_effect)


def _adopt_missing_fields(survivor: Contact, merged: Contact, actor: Actor) -> None:
    """The survivor keeps its own values and takes the merged one's where it
    has none; identifiers are released by the merged contact first."""
    adopted = {}
    for field in ("email", "phone", "whatsapp_id", "timezone", "locale"):
        if not getattr(survivor, field) and getattr(merged, field):
            adopted[field] = getattr(merged, field)
    released = [f for f in adopted if f in IDENTIFIER_FIELDS]
    for field in released:
        setattr(merged, field, "")
    if released:
        merged.save(update_fields=[*released, "updated_at"])
    survivor.attributes = {**merged.attributes, **survivor.attributes}
    for field, value in adopted.items():
        setattr(survivor, field, value)
    survivor._change_reason = f"absorbed {merged.external_id} by {actor_label(actor)}"
    survivor.save(update_fields=[*adopted.keys(), "attributes", "updated_at"])


# --- Erasure ------------------------------------------------------------


def contact_erase(*, contact: Contact, actor: Actor) -> Contact:
    """Anonymise a contact's personal data everywhere it is kept, its history
    rows included. Counts, consent decisions and message statuses stay, so
    aggregates still add up. Address suppressions are kept as hashes so a
    legal hold still holds if the address comes back."""
    with transaction.atomic():
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        if contact.erased_at:
            return contact
        addresses = _addresses_ever_held(contact)
        former_external_ids = frozenset({contact.external_id, *contact.history.values_list("external_id", flat=True)})
        _redact_suppression_notes(contact, addresses)
        for address in addresses:
            hashed = address_hash(address)
            Suppression.objects.filter(address=address).update(address=hashed)
            Suppression.history.filter(address=address).update(address=hashed)
        anonymous = {
            "external_id": f"erased-{contact.pk}",
            "email": "",
            "phone": "",
            "whatsapp_id": "",
            "attributes": {},
            "locale": "",
            "timezone": "",
        }
        contact.history.all().update(**anonymous)
        for field, value in anonymous.items():
            setattr(contact, field, value)
        contact.erased_at = timezone.now()
        contact._change_reason = f"erased by {actor_label(actor)}"
        contact.save(update_fields=[*anonymous.keys(), "erased_at", "updated_at"])
        contact.push_devices.all().delete()
        # The one sanctioned change to the ledger: evidence (IPs, form data)
        # is personal; the decision, channel, purpose and time are not.
        models.QuerySet.update(ConsentRecord.objects.filter(contact=contact), evidence={"redacted": True})
        for handler in _erase_handlers.values():
            handler(contact, former_external_ids=former_external_ids)
        # The admin log keeps each object's name as it was (the old external id).
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Contact), object_id=str(contact.pk)
        ).update(object_repr=str(contact))
    return contact


def _addresses_ever_held(contact: Contact) -> set[str]:
    """Current and earlier addresses (history keeps those an update replaced),
    and those of the contact's own suppressions, as suppressions store them."""
    rows = contact.history.values_list("email", "phone", "whatsapp_id")
    found = {a for row in rows for a in row} | {contact.email, contact.phone, contact.whatsapp_id}
    found |= set(Suppression.objects.filter(contact=contact).values_list("address", flat=True))
    return {a.strip().lower() for a in found if a and not a.startswith("sha256:")}


def _redact_suppression_notes(contact: Contact, addresses: set[str]) -> None:
    """An operator's note may quote the address or phone it was written about."""
    about_contact = models.Q(contact_id=contact.pk) | models.Q(address__in=addresses)
    for model in (Suppression, Suppression.history.model):
        rows = model._default_manager.filter(about_contact).exclude(note="").values_list("pk", "note")
        for pk, note in rows:
            model._default_manager.filter(pk=pk).update(note=redact_text(note))


# handler(contact, former_external_ids=...): the contact already anonymised,
# and the external ids it was known by, which copies outside consent may quote.
EraseHandler = Callable[..., None]
_erase_handlers: dict[str, EraseHandler] = {}


def register_erase_handler(label: str, handler: EraseHandler) -> None:
    """Higher apps redact their copies of personal data (rendered messages,
    replies) through a handler registered here."""
    _erase_handlers[label] = handler


def consent_confirmation_url(record: ConsentRecord) -> str:
    return settings.SITE_URL + reverse("consent-confirm", args=[consent_confirmation_token(record)])
