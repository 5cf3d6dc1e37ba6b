"""Demo contacts with a spread of consent states, zones and devices."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from consent import services
from consent.models import (
    ConsentSource,
    ConsentStatus,
    Contact,
    Holiday,
    QuietHoursRule,
    SuppressionReason,
)
from consent.policy import contact_timezone

SYSTEM = "seed_demo"

# external_id, email, phone, timezone, locale, stage, attributes, grants, devices
DEMO_CONTACTS = [
    ("cus_ana", "ana@example.com", "+351912345678", "Europe/Lisbon", "pt-PT", "onboarding",
     {"first_name": "Ana", "plan": "pro"}, ["email:marketing", "sms:marketing", "push:marketing"], ["android"]),
    ("cus_ben", "ben@example.com", "+14155550101", "America/Los_Angeles", "en-US", "active",
     {"first_name": "Ben", "plan": "starter"}, ["email:marketing"], ["ios"]),
    ("cus_chloe", "chloe@example.com", "+447911123456", "Europe/London", "en-GB", "active",
     {"first_name": "Chloe"}, ["email:marketing", "whatsapp:marketing"], []),
    ("cus_diego", "diego@example.com", "+5511987654321", "America/Sao_Paulo", "pt-BR", "at_risk",
     {"first_name": "Diego", "plan": "pro"}, ["sms:marketing"], ["android"]),
    ("cus_emma", "emma@example.com", "+4915123456789", "Europe/Berlin", "de", "lead",
     {"first_name": "Emma"}, [], []),
    ("cus_farid", "farid@example.com", "+14155550102", "", "en", "churned",
     {"first_name": "Farid", "cancelled_at": "2026-10-01"}, ["email:marketing"], []),
    ("cus_grace", "grace@example.com", "+61412345678", "Australia/Sydney", "en-AU", "active",
     {"first_name": "Grace"}, ["email:marketing", "sms:marketing"], ["ios"]),
    ("cus_hiro", "hiro@example.com", "", "Asia/Tokyo", "en", "onboarding", {}, [], []),
]


def seed() -> int:
    added = 0
    for external_id, email, phone, tz, locale, stage, attributes, grants, devices in DEMO_CONTACTS:
        if Contact.objects.filter(external_id=external_id).exists():
            continue
        contact, _ = services.contact_upsert(
            external_id=external_id,
            data={"email": email, "phone": phone, "timezone": tz, "locale": locale,
                  "lifecycle_stage": stage, "attributes": attributes, "whatsapp_id": phone},
            push_devices=[{"token": f"demo-{platform}-{external_id}", "platform": platform} for platform in devices],
            actor=SYSTEM,
        )
        for grant in grants:
            channel, purpose = grant.split(":")
            _grant_confirmed(contact, channel, purpose)
        added += 1
    if added:
        _seed_governance()
    return added


def _grant_confirmed(contact: Contact, channel: str, purpose: str) -> None:
    evidence = {"form_url": "https://example.com/signup", "ip": "203.0.113.7"}
    record = services.consent_record(
        contact=contact, channel=channel, purpose=purpose, status=ConsentStatus.GRANTED,
        source=ConsentSource.FORM, evidence=evidence, actor=SYSTEM,
        at=timezone.now() - dt.timedelta(days=30),
    )
    if record.status == ConsentStatus.PENDING:
        services.consent_confirm(
            pending=record, evidence={"via": "demo"}, actor=SYSTEM, at=timezone.now() - dt.timedelta(days=29)
        )


def _seed_governance() -> None:
    QuietHoursRule.objects.get_or_create(
        channel="", country="", defaults={"name": "Workspace default", "start": dt.time(21), "end": dt.time(8)}
    )
    QuietHoursRule.objects.get_or_create(
        channel="sms", country="US",
        defaults={"name": "US SMS (TCPA)", "start": dt.time(20), "end": dt.time(9)},
    )
    Holiday.objects.get_or_create(date=dt.date(2026, 12, 25), country="", defaults={"name": "Christmas Day"})
    Holiday.objects.get_or_create(date=dt.date(2027, 1, 1), country="", defaults={"name": "New Year's Day"})
    emma = Contact.objects.get(external_id="cus_emma")
    services.suppression_create(
        contact=emma, reason=SuppressionReason.MANUAL, channel="sms", actor=SYSTEM,
        note="Asked by phone not to be texted",
    )
    farid = Contact.objects.get(external_id="cus_farid")
    services.consent_record(
        contact=farid, channel="sms", purpose="operational", status=ConsentStatus.REVOKED,
        source=ConsentSource.KEYWORD, evidence={"keyword": "STOP"}, actor=SYSTEM,
    )
    services.consent_record(
        contact=emma, channel="email", purpose="marketing", status=ConsentStatus.GRANTED,
        source=ConsentSource.FORM, evidence={"form_url": "https://example.com/newsletter"}, actor=SYSTEM,
    )


def last_working_noon(contact: Contact) -> dt.datetime:
    """The contact's last noon that was not a holiday: when the demo's
    messages are dated, so they are delivered whatever the hour `make run`
    (or a test) seeds at, instead of deferred by quiet hours."""
    local_now = timezone.now().astimezone(contact_timezone(contact))
    noon = local_now.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon > local_now:
        noon -= dt.timedelta(days=1)
    while Holiday.objects.filter(date=noon.date()).exists():
        noon -= dt.timedelta(days=1)
    return noon
