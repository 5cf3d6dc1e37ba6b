"""WhatsApp template approval status from the Twilio Content API. Meta
approves each template (one Content SID per language); we keep its verdict on
the locale variant so a send of an unapproved template is refused."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from consent.models import Channel
from templates import services
from templates.models import TemplateVariant, VersionStatus, WhatsAppStatus

# Twilio's WhatsApp approval states -> ours. Anything else is reported, not stored.
PROVIDER_STATUS = {
    "approved": WhatsAppStatus.APPROVED,
    "pending": WhatsAppStatus.PENDING, "received": WhatsAppStatus.PENDING, "in_appeal": WhatsAppStatus.PENDING,
    "unsubmitted": WhatsAppStatus.PENDING,
    "rejected": WhatsAppStatus.REJECTED,
    "paused": WhatsAppStatus.PAUSED, "disabled": WhatsAppStatus.PAUSED,
}


class NotConfigured(Exception):
    """Twilio credentials are missing; nothing can be refreshed."""


@dataclass
class RefreshReport:
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def twilio_client() -> Client:
    sid, token = settings.TEMPLATES_TWILIO_ACCOUNT_SID, settings.TEMPLATES_TWILIO_AUTH_TOKEN
    if not sid or not token:
        raise NotConfigured(
            "Twilio is not configured: set TEMPLATES_TWILIO_ACCOUNT_SID and TEMPLATES_TWILIO_AUTH_TOKEN "
            "(or TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN) to refresh WhatsApp template approvals."
        )
    client = Client(sid, token)
    if settings.TEMPLATES_TWILIO_CONTENT_API_URL:
        client.content.base_url = settings.TEMPLATES_TWILIO_CONTENT_API_URL
    return client


def variants_to_refresh():
    return (
        TemplateVariant.objects.select_related("version__template")
        .filter(version__template__channel=Channel.WHATSAPP)
        .exclude(wa_content_sid="")
        .exclude(version__status=VersionStatus.ARCHIVED)
        .order_by("pk")
    )


def whatsapp_statuses_refresh(*, client: Client, now: dt.datetime | None = None) -> RefreshReport:
    """Fetch the approval of every WhatsApp variant with a Content SID and store it."""
    now = now or timezone.now()
    report = RefreshReport()
    for variant in variants_to_refresh():
        label = f"{variant.version} [{variant.locale}] {variant.wa_content_sid}"
        try:
            approval = client.content.v1.contents(variant.wa_content_sid).approval_fetch().fetch()
        except TwilioException as error:
            report.errors.append(f"{label}: {error}")
            continue
        whatsapp = approval.whatsapp or {}
        raw = str(whatsapp.get("status", "")).lower()
        if raw not in PROVIDER_STATUS:
            report.errors.append(f"{label}: unknown provider status {raw!r}")
            continue
        report.checked += 1
        status = PROVIDER_STATUS[raw]
        if services.whatsapp_status_update(variant=variant, status=status,
                                           reason=str(whatsapp.get("rejection_reason") or ""), now=now):
            report.changed.append(f"{label}: {status}")
    return report
