"""Which adapter class serves each ProviderAccount.adapter value. Imports are
lazy: firebase-admin pulls in grpc, and a web process never needs it."""

from __future__ import annotations

import importlib

from channels.models import Adapter, ProviderAccount
from channels.providers.base import Provider

_ADAPTERS: dict[str, str] = {
    Adapter.CONSOLE: "channels.providers.console:ConsoleProvider",
    Adapter.SMTP: "channels.providers.smtp:SmtpProvider",
    Adapter.ANYMAIL: "channels.providers.anymail_esp:AnymailProvider",
    Adapter.POSTMARK: "channels.providers.postmark:PostmarkProvider",
    Adapter.TWILIO: "channels.providers.twilio_messaging:TwilioProvider",
    Adapter.FCM: "channels.providers.fcm:FcmProvider",
    Adapter.WEBPUSH: "channels.providers.webpush:WebPushProvider",
}
_instances: dict[str, Provider] = {}


def provider_for(account: ProviderAccount) -> Provider:
    if account.adapter not in _instances:
        module_name, _, class_name = _ADAPTERS[account.adapter].partition(":")
        _instances[account.adapter] = getattr(importlib.import_module(module_name), class_name)()
    return _instances[account.adapter]
