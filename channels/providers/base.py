"""The small interface every provider adapter implements, and its errors.

An adapter turns one OutboundMessage into one provider call (or, with a
batch API, many into one call: see Provider below). It raises
TransientError for what may succeed later (timeouts, 5xx, 429) and
PermanentError for what never will (bad number, unsubscribed, dead token);
`feedback` on a PermanentError tells delivery what to record about the
address (deactivate the device, suppress the address)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from channels.models import OutboundMessage, ProviderAccount


class Feedback:
    """What a permanent failure says about the address."""

    NONE = ""
    UNREGISTERED_DEVICE = "unregistered_device"
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"


class ProviderError(Exception):
    def __init__(self, message: str, *, code: str = "", feedback: str = Feedback.NONE):
        self.code = code
        self.feedback = feedback
        super().__init__(message)


class TransientError(ProviderError):
    """May succeed if tried again later."""


class PermanentError(ProviderError):
    """Will never succeed for this message; fail at once."""


class AmbiguousError(ProviderError):
    """The request was sent but no answer came back (a read timeout): the
    provider may or may not have accepted it, so it must not simply be sent
    again at once."""


def is_ambiguous(error: BaseException) -> bool:
    """A requests read timeout: the request went out, the answer never came."""
    import requests

    return isinstance(error, requests.exceptions.ReadTimeout)


@dataclass(frozen=True)
class Accepted:
    """The provider took the message."""

    provider_message_id: str
    delivered: bool = False  # the console adapter knows at once
    cost_estimate: Decimal | None = None


class Provider(Protocol):
    name: str
    # True when send() may run on several threads at once and touches only
    # the network (delivery calls it from a thread pool, and those threads
    # have no database connection of their own); False keeps its calls on
    # the task's thread, one at a time.
    concurrent_calls: bool

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted: ...

    # An adapter with an async client may also have
    #     async def send_async(self, message, account) -> Accepted
    # raising the same errors: delivery then makes its calls on one event
    # loop per worker process instead of a thread each (channels/delivery.py).
    #
    # An adapter for a batch API may instead have
    #     def batch_size(self, account) -> int
    #     def send_batch(self, messages, account) -> list[Accepted | Exception]
    # one call for up to batch_size messages, an answer for each in order
    # (a failure of the whole call is every message's error); delivery then
    # gives each call that many messages.


def account_secret(account: ProviderAccount, name: str, *, default_prefix: str) -> str:
    """Secrets come only from the environment: <PREFIX>_<NAME>."""
    prefix = (account.env_prefix or default_prefix).upper()
    variable = f"{prefix}_{name}"
    value = os.environ.get(variable, "")
    file_path = os.environ.get(f"{variable}_FILE")
    if not value and file_path:
        with open(file_path, encoding="utf-8") as handle:
            value = handle.read().strip()
    if not value:
        raise ImproperlyConfigured(f"provider account {account.name!r} needs the environment variable {variable}")
    return value


def status_callback_url(path: str) -> str:
    from django.conf import settings

    return f"{settings.CHANNELS_WEBHOOK_BASE_URL}{path}"
