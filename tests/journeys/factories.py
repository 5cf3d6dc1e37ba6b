"""Journeys built through the real services: a marketer drafts and
publishes, a different compliance reviewer approves."""

from __future__ import annotations

import datetime as dt
from typing import Any

from consent.models import ConsentSource, ConsentStatus, Contact
from consent.services import consent_record
from journeys import services
from journeys.models import Journey, VersionStatus
from tests.templates.factories import approved_template

AUTHOR = "journey-author"
REVIEWER = "journey-reviewer"

CHANNEL_CONTENT: dict[str, dict[str, Any]] = {
    "email": {"subject": "Hello {{ contact.first_name }}", "html": "<p>Hello {{ contact.first_name }}</p>"},
    "sms": {"body": "Hi {{ contact.first_name }}"},
    "push": {"title": "Hi", "body": "Hello {{ contact.first_name }}"},
    "whatsapp": {"template_name": "appointment_reminder", "language": "en", "body": "Reply C or R"},
    "rcs": {"title": "Hi", "description": "Hello", "fallback_text": "Hello"},
    "in_app": {"title": "Hi", "body": "Hello"},
}
FIRST_NAME = [{"path": "contact.first_name", "fallback": "there"}]


def template(key: str, channel: str, message_class: str = "operational"):
    return approved_template(key, channel, message_class, content=CHANNEL_CONTENT[channel], variables=FIRST_NAME)


def live_journey(
    key: str,
    steps: list[dict],
    *,
    message_class: str = "operational",
    priority: int = 50,
    **definition: Any,
) -> Journey:
    """An active journey whose first version is approved and live."""
    body = {"steps": steps, **definition}
    journey = services.journey_create(
        key=key, name=key.replace("-", " ").title(), message_class=message_class, priority=priority,
        definition=body, actor=AUTHOR,
    )
    version = services.journey_publish(journey=journey, actor=AUTHOR)
    if version.status == VersionStatus.IN_REVIEW:
        services.journey_version_approve(version=version, actor=REVIEWER)
    journey.refresh_from_db()
    return journey


def grant(contact: Contact, channel: str, purpose: str = "marketing", at: dt.datetime | None = None) -> None:
    """A confirmed grant (double opt-in confirmed where the channel needs it)."""
    record = consent_record(contact=contact, channel=channel, purpose=purpose, status=ConsentStatus.GRANTED,
                            source=ConsentSource.CONFIRMATION, actor="test", at=at)
    assert record.status == ConsentStatus.GRANTED


def revoke(contact: Contact, channel: str, purpose: str = "marketing", at: dt.datetime | None = None) -> None:
    consent_record(contact=contact, channel=channel, purpose=purpose, status=ConsentStatus.REVOKED,
                   source=ConsentSource.UNSUBSCRIBE, actor="test", at=at)
