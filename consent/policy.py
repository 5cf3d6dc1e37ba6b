"""The one send-permission gate (DESIGN.md invariant 1).

`decide()` answers, for a contact, a channel, a message class and an instant:
allow, suppress(reason) or defer(until). It only reads. Everything it reads is
gathered by `load_facts()`, so a batch of contacts costs a fixed number of
queries; the single-contact call and the batch call run the same rules.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import phonenumbers
from django.conf import settings
from django.db import models
from phonenumbers import timezone as phone_timezone

from consent.hashing import address_hash
from consent.models import (
    Channel,
    ConsentRecord,
    ConsentStatus,
    Contact,
    Holiday,
    MessageClass,
    PushDevice,
    QuietHoursRule,
    Suppression,
)


class Outcome(models.TextChoices):
    ALLOW = "allow", "Allow"
    SUPPRESS = "suppress", "Suppress"
    DEFER = "defer", "Defer"


class Reason(models.TextChoices):
    """Reason codes a person can read; stored on every recorded decision."""

    CONSENT_GRANTED = "consent_granted", "Marketing consent granted on this channel"
    NO_CONSENT_NEEDED = "no_consent_needed", "Transactional/operational: address usable, nothing revoked"
    CONTACT_INACTIVE = "contact_inactive", "Contact erased or merged into another"
    NO_ADDRESS = "no_address", "No usable address on this channel"
    SUPPRESSED = "suppressed", "Address or contact suppressed"
    NO_MARKETING_CONSENT = "no_marketing_consent", "No marketing consent on this channel"
    CONSENT_PENDING = "consent_pending", "Marketing consent awaits double opt-in confirmation"
    CONSENT_REVOKED = "consent_revoked", "Consent revoked on this channel"
    QUIET_HOURS = "quiet_hours", "Quiet hours in the contact's time zone"
    HOLIDAY = "holiday", "Marketing held on a holiday"


@dataclass(frozen=True)
class Decision:
    outcome: str
    reason: str
    until: dt.datetime | None = None
    address: str = ""
    consent_record_id: int | None = None
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.outcome == Outcome.ALLOW


@dataclass
class GateFacts:
    """What the gate needs to know, loaded once for a set of contacts."""

    latest_consent: dict[tuple[int, str, str], ConsentRecord] = field(default_factory=dict)
    pending_consent: dict[tuple[int, str, str], ConsentRecord] = field(default_factory=dict)
    suppressions: dict[int, list[Suppression]] = field(default_factory=lambda: defaultdict(list))
    address_suppressions: dict[str, list[Suppression]] = field(default_factory=lambda: defaultdict(list))
    active_devices: dict[int, list[PushDevice]] = field(default_factory=lambda: defaultdict(list))
    quiet_rules: list[QuietHoursRule] = field(default_factory=list)
    holidays: dict[dt.date, set[str]] = field(default_factory=lambda: defaultdict(set))


def load_facts(contacts: Iterable[Contact], at: dt.datetime) -> GateFacts:
    """Load consent, suppressions, devices and rules for these contacts in a
    fixed number of queries, whatever their count."""
    contacts = list(contacts)
    ids = [c.pk for c in contacts]
    facts = GateFacts()
    for record in ConsentRecord.objects.filter(contact_id__any=ids).order_by("recorded_at", "id"):
        key = (record.contact_id, record.channel, record.purpose)
        if record.status == ConsentStatus.PENDING:
            facts.pending_consent[key] = record
        else:
            facts.latest_consent[key] = record
    addresses = {a for c in contacts for a in (c.email.lower(), c.phone, c.whatsapp_id) if a}
    addresses |= {address_hash(a) for a in addresses}
    in_force = Suppression.objects.in_force(at)
    for sup in in_force.filter(models.Q(contact_id__any=ids) | models.Q(address__any=addresses)):
        if sup.contact_id:
            facts.suppressions[sup.contact_id].append(sup)
        if sup.address:
            facts.address_suppressions[sup.address.lower()].append(sup)
    for device in PushDevice.objects.filter(contact_id__any=ids, active=True):
        facts.active_devices[device.contact_id].append(device)
    facts.quiet_rules = list(QuietHoursRule.objects.filter(active=True))
    for holiday in Holiday.objects.filter(date__gte=(at - dt.timedelta(days=2)).date()):
        facts.holidays[holiday.date].add(holiday.country)
    return facts


def decide(
    *,
    contact: Contact,
    channel: str,
    message_class: str,
    at: dt.datetime,
    facts: GateFacts | None = None,
) -> Decision:
    """The gate. `facts` may be shared across a batch (see `load_facts`)."""
    if facts is None:
        facts = load_facts([contact], at)
    if not contact.is_active:
        return Decision(Outcome.SUPPRESS, Reason.CONTACT_INACTIVE)
    address = usable_address(contact, channel, facts)
    if not address:
        return Decision(Outcome.SUPPRESS, Reason.NO_ADDRESS, detail=f"no {channel} address")
    suppression = _suppression_for(contact, channel, address, facts)
    if suppression is not None:
        return Decision(
            Outcome.SUPPRESS, Reason.SUPPRESSED, address=address, detail=f"{suppression.reason} (#{suppression.pk})"
        )
    consent = _consent_decision(contact, channel, message_class, at, facts, address)
    if not consent.allowed:
        return consent
    deferral = _time_deferral(contact, channel, message_class, at, facts)
    if deferral is not None:
        until, reason = deferral
        return Decision(
            Outcome.DEFER, reason, until=until, address=address, consent_record_id=consent.consent_record_id
        )
    return consent


def usable_address(contact: Contact, channel: str, facts: GateFacts) -> str:
    if channel == Channel.EMAIL:
        return contact.email.lower()
    if channel in (Channel.SMS, Channel.RCS):
        return contact.phone
    if channel == Channel.WHATSAPP:
        return contact.whatsapp_id or contact.phone
    if channel == Channel.PUSH:
        devices = facts.active_devices.get(contact.pk, [])
        return devices[-1].token if devices else ""
    if channel == Channel.IN_APP:
        return contact.external_id
    raise ValueError(f"unknown channel {channel!r}")


def _suppression_for(contact: Contact, channel: str, address: str, facts: GateFacts) -> Suppression | None:
    candidates = (
        facts.suppressions.get(contact.pk, [])
        + facts.address_suppressions.get(address.lower(), [])
        + facts.address_suppressions.get(address_hash(address), [])
    )
    for sup in candidates:
        if sup.channel in ("", channel):
            return sup
    return None


def _consent_decision(
    contact: Contact, channel: str, message_class: str, at: dt.datetime, facts: GateFacts, address: str
) -> Decision:
    key = (contact.pk, channel, message_class)
    latest = facts.latest_consent.get(key)
    if message_class == MessageClass.MARKETING:
        if latest is not None and latest.status == ConsentStatus.GRANTED:
            return Decision(Outcome.ALLOW, Reason.CONSENT_GRANTED, address=address, consent_record_id=latest.pk)
        pending = facts.pending_consent.get(key)
        newer_pending = pending is not None and (latest is None or pending.recorded_at > latest.recorded_at)
        if newer_pending and (pending.expires_at is None or pending.expires_at > at):
            return Decision(Outcome.SUPPRESS, Reason.CONSENT_PENDING, address=address)
        if latest is not None:
            return Decision(Outcome.SUPPRESS, Reason.CONSENT_REVOKED, address=address, consent_record_id=latest.pk)
        return Decision(Outcome.SUPPRESS, Reason.NO_MARKETING_CONSENT, address=address)
    if latest is not None and latest.status == ConsentStatus.REVOKED and _revocation_binds(channel, message_class):
        return Decision(Outcome.SUPPRESS, Reason.CONSENT_REVOKED, address=address, consent_record_id=latest.pk)
    return Decision(
        Outcome.ALLOW, Reason.NO_CONSENT_NEEDED, address=address, consent_record_id=latest.pk if latest else None
    )


def _revocation_binds(channel: str, message_class: str) -> bool:
    """SMS and WhatsApp revocations (STOP) bind every class. Elsewhere an
    explicit operational opt-out binds; transactional mail (receipts, password
    resets) is exempt."""
    if channel in (Channel.SMS, Channel.WHATSAPP, Channel.RCS):
        return True
    return message_class == MessageClass.OPERATIONAL


# --- Time: quiet hours and holidays -----------------------------------------


def contact_timezone(contact: Contact) -> zoneinfo.ZoneInfo:
    """contact's own zone -> the zone of its phone's country -> workspace default."""
    if contact.timezone:
        return zoneinfo.ZoneInfo(contact.timezone)
    country_zone = _phone_zone(contact.phone)
    if country_zone:
        return zoneinfo.ZoneInfo(country_zone)
    return zoneinfo.ZoneInfo(settings.WORKSPACE_TIMEZONE)


def contact_country(contact: Contact) -> str:
    return phone_country(contact.phone)


# Parsing a number costs ~0.2 ms and the gate asks twice per send: a tick of
# thousands of sends asks about the same few thousand numbers. Pure functions
# of their arguments, so a bounded cache never goes stale.
@functools.lru_cache(maxsize=65536)
def phone_country(phone: str) -> str:
    if not phone:
        return ""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone, None)) or ""
    except phonenumbers.NumberParseException:
        return ""


# For a mobile number phonenumbers knows only the country; where the country
# spans several zones, assume the zone where most of its people live.
MOST_POPULOUS_ZONE = {
    "AR": "America/Argentina/Buenos_Aires", "AU": "Australia/Sydney", "BR": "America/Sao_Paulo",
    "CA": "America/Toronto", "CD": "Africa/Kinshasa", "CL": "America/Santiago", "CN": "Asia/Shanghai",
    "EC": "America/Guayaquil", "ES": "Europe/Madrid", "FR": "Europe/Paris", "GB": "Europe/London",
    "ID": "Asia/Jakarta", "KZ": "Asia/Almaty", "MX": "America/Mexico_City", "NZ": "Pacific/Auckland",
    "PT": "Europe/Lisbon", "RU": "Europe/Moscow", "US": "America/New_York",
}


def _phone_zone(phone: str) -> str:
    return _phone_zone_in(phone, settings.WORKSPACE_TIMEZONE)


@functools.lru_cache(maxsize=65536)
def _phone_zone_in(phone: str, workspace_zone: str) -> str:
    if not phone:
        return ""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ""
    zones = [z for z in phone_timezone.time_zones_for_number(number) if z in zoneinfo.available_timezones()]
    if len(zones) <= 1:
        return zones[0] if zones else ""
    if workspace_zone in zones:
        return workspace_zone
    preferred = MOST_POPULOUS_ZONE.get(phonenumbers.region_code_for_number(number) or "")
    return preferred if preferred in zones else zones[0]


@dataclass(frozen=True)
class QuietWindow:
    start: dt.time
    end: dt.time
    classes: frozenset[str]

    def contains(self, local_time: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= local_time < self.end
        return local_time >= self.start or local_time < self.end


def quiet_window_for(contact: Contact, channel: str, facts: GateFacts) -> QuietWindow | None:
    # Only a rule scoped to a country makes the contact's country matter (parsing the number is the costly part).
    country = contact_country(contact) if any(rule.country for rule in facts.quiet_rules) else ""
    best: QuietHoursRule | None = None
    best_rank = -1
    for rule in facts.quiet_rules:
        if rule.channel not in ("", channel) or rule.country not in ("", country):
            continue
        rank = (2 if rule.country else 0) + (1 if rule.channel else 0)
        if rank > best_rank:
            best, best_rank = rule, rank
    if best is None:
        return None
    if contact.quiet_hours_start is not None and contact.quiet_hours_end is not None:
        return QuietWindow(contact.quiet_hours_start, contact.quiet_hours_end, frozenset(best.message_classes))
    return QuietWindow(best.start, best.end, frozenset(best.message_classes))


def _time_deferral(
    contact: Contact, channel: str, message_class: str, at: dt.datetime, facts: GateFacts
) -> tuple[dt.datetime, str] | None:
    """The earliest instant at or after `at` when neither quiet hours nor a
    holiday hold this message, with the reason of the first hold; None if
    nothing holds it now."""
    tz = contact_timezone(contact)
    window = quiet_window_for(contact, channel, facts)
    candidate = at
    first_reason = ""
    # Bounded: a window plus a run of holidays cannot exceed a few weeks.
    for _ in range(60):
        local = candidate.astimezone(tz)
        if message_class == MessageClass.MARKETING and _is_holiday(local.date(), contact, facts):
            first_reason = first_reason or Reason.HOLIDAY
            candidate = _local_midnight_after(local.date(), tz)
            continue
        if window is not None and message_class in window.classes and window.contains(local.time()):
            first_reason = first_reason or Reason.QUIET_HOURS
            candidate = _window_end_after(local, window.end, tz)
            continue
        break
    if not first_reason:
        return None
    return candidate.astimezone(dt.UTC), first_reason


def _is_holiday(day: dt.date, contact: Contact, facts: GateFacts) -> bool:
    countries = facts.holidays.get(day)
    return bool(countries) and ("" in countries or contact_country(contact) in countries)


def _local_midnight_after(day: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return _first_instant_at_or_after_wall(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0)), tz)


def _window_end_after(local: dt.datetime, end: dt.time, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The first instant after `local` at which the wall clock reads `end`
    (or has just jumped past it)."""
    day = local.date()
    for offset_days in (0, 1, 2):
        naive = dt.datetime.combine(day + dt.timedelta(days=offset_days), end)
        for fold in (0, 1):
            candidate = _first_instant_at_or_after_wall(naive, tz, fold=fold)
            if candidate > local:
                return candidate
    raise AssertionError("unreachable: a wall time recurs within two days")


def _first_instant_at_or_after_wall(naive: dt.datetime, tz: zoneinfo.ZoneInfo, fold: int = 0) -> dt.datetime:
    """The instant the wall clock reads `naive`. In an ambiguous autumn hour
    `fold` picks the occurrence. In a spring-forward gap the time never
    appears, so the answer is the moment the clock jumps past it."""
    aware = naive.replace(tzinfo=tz, fold=fold)
    utc = aware.astimezone(dt.UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == naive:
        return utc.astimezone(tz)
    # In the gap: fold=1 lands before the jump and fold=0 after it; find the
    # jump by bisection to the second.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(dt.UTC)
    high = naive.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)
    low, high = min(low, high), max(low, high)
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0).astimezone(tz)
