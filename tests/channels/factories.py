"""Channels test data: contacts with addresses and devices, approved
templates for every channel, provider accounts."""

from __future__ import annotations

import itertools

from channels.models import Adapter, ProviderAccount
from consent import services as consent_services
from consent.models import Channel, ConsentSource, ConsentStatus, Contact, DevicePlatform
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template

_phones = itertools.count(100)

CONTENT = {
    Channel.EMAIL: {"subject": "Hi {{ contact.first_name }}", "html": "<p>Your code is {{ event.code }}</p>",
                    "sender_profile": {"from_email": "hello@example.com", "from_name": "Example"}},
    Channel.SMS: {"body": "Hi {{ contact.first_name }}, code {{ event.code }}"},
    Channel.PUSH: {"title": "Hi {{ contact.first_name }}", "body": "Code {{ event.code }}"},
    Channel.WHATSAPP: {"template_name": "code_notice", "language": "en", "body": "Your code is {{ event.code }}",
                       "parameters": ["event.code"]},
    Channel.RCS: {"title": "Code", "description": "Your code is {{ event.code }}", "fallback_text": "Code"},
    Channel.IN_APP: {"title": "Code", "body": "Your code is {{ event.code }}"},
}


def contact_with_everything(**fields) -> Contact:
    """A contact reachable on every channel, with an Android device."""
    n = next(_phones)
    defaults = {"phone": f"+1415555{n:04d}", "whatsapp_id": "", "attributes": {"first_name": "Ana"}}
    contact = ContactFactory(**{**defaults, **fields})
    consent_services.push_device_register(contact=contact, token=f"fcm-token-{n}", platform=DevicePlatform.ANDROID)
    return contact


def grant(contact: Contact, channel: str, purpose: str = "marketing") -> None:
    consent_services.consent_record(
        contact=contact, channel=channel, purpose=purpose, status=ConsentStatus.GRANTED,
        source=ConsentSource.CONFIRMATION, actor="test",
    )


def channel_template(channel: str, message_class: str = "operational", key: str | None = None):
    key = key or f"code-{channel.replace('_', '-')}-{message_class}"
    variables = [{"path": "contact.first_name", "fallback": "there"}, {"path": "event.code", "required": True}]
    return approved_template(key, channel, message_class, content=CONTENT[channel], variables=variables)


def account(channel: str, adapter: str = Adapter.CONSOLE, **fields) -> ProviderAccount:
    return ProviderAccount.objects.create(
        name=fields.pop("name", f"{adapter}-{channel}"), channel=channel, adapter=adapter, **fields
    )
