"""SMS, WhatsApp and RCS through the Twilio SDK.

Account: `sender` is a phone number (+E164), a WhatsApp sender
(whatsapp:+E164) or a messaging service SID (MG...). Secrets from
<PREFIX>_ACCOUNT_SID and <PREFIX>_AUTH_TOKEN (prefix TWILIO by default).
WhatsApp templates and RCS cards go through a messaging service as
`content_sid` + `content_variables`. The Content SID comes from the rendered
content (the template variant's own SID, per locale) and only when that has
none from `options.content_sids`: our template key to a SID, or to
{locale: SID}. RCS content variables are named slots (see CONTENT_SLOTS
below and the README, "Configuring providers"). `options.base_url` points the SDK at
another host (a local fake in tests)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import weakref
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

import aiohttp
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from channels.models import OutboundMessage, ProviderAccount
from channels.providers.base import (
    Accepted,
    AmbiguousError,
    PermanentError,
    TransientError,
    account_secret,
    is_ambiguous,
    status_callback_url,
)
from consent.models import Channel

# Twilio error codes that will never succeed for this message.
PERMANENT_CODES = {
    21211: "invalid 'To' number",
    21214: "'To' number cannot be reached",
    21408: "permission to send to this region is not enabled",
    21610: "recipient replied STOP (unsubscribed)",
    21612: "'To' number is not reachable on this route",
    21614: "'To' number is not a mobile number",
    63016: "outside the WhatsApp 24-hour window: use an approved template",
}

# The SDK logs every request and answer at INFO, from both of its HTTP
# clients: eight lines per message in a worker's log (and the URL, which
# for a lookup names a phone number).
for _name in ("twilio.http_client", "twilio.async_http_client"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# One client per thread and account: the SDK's HTTP client keeps a requests
# Session (connections kept alive between messages and batches), but it hands
# each answer back through an attribute of the client, so two threads sharing
# one could read each other's answers.
_local = threading.local()


class TwilioProvider:
    name = "twilio"
    concurrent_calls = True

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        params = _params(message, account)
        try:
            return _accepted(client_for(account).messages.create(**params))
        except CALL_ERRORS as error:
            raise _provider_error(error) from error

    async def send_async(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        """`send` through the SDK's aiohttp client, for delivery's waves: a
        third of the CPU of a call through `requests`, and no thread each."""
        params = _params(message, account)
        try:
            return _accepted(await _async_client_for(account).messages.create_async(**params))
        except CALL_ERRORS as error:
            raise _provider_error(error) from error


# What a call can fail with, through either of the SDK's HTTP clients.
CALL_ERRORS = (TwilioException, RequestsConnectionError, Timeout, aiohttp.ClientError, TimeoutError)


def _provider_error(error: Exception) -> Exception:
    why = str(error) or repr(error)  # aiohttp's timeouts have no message
    if isinstance(error, TwilioRestException):
        return _classify(error)
    if isinstance(error, aiohttp.ConnectionTimeoutError):  # before the request went out
        return TransientError(f"Twilio unreachable: {why}")
    if is_ambiguous(error) or isinstance(error, TimeoutError):  # the request went out, no answer came
        return AmbiguousError(f"no answer from Twilio after sending: {why}")
    if isinstance(error, RequestsConnectionError | Timeout | aiohttp.ClientError):
        return TransientError(f"Twilio unreachable: {why}")
    return TransientError(why)


def _accepted(created) -> Accepted:
    return Accepted(provider_message_id=created.sid, cost_estimate=_price(created.price))


def _params(message: OutboundMessage, account: ProviderAccount) -> dict[str, str]:
    callback = status_callback_url(f"/webhooks/twilio/status/?message={message.pk}")
    params = {"to": _to_address(message), "status_callback": callback}
    params.update(_sender_params(account, message.channel))
    params.update(_content_params(message, account))
    return params


def _client_key(account: ProviderAccount) -> tuple:
    sid = account_secret(account, "ACCOUNT_SID", default_prefix="TWILIO")
    token = account_secret(account, "AUTH_TOKEN", default_prefix="TWILIO")
    options = account.options or {}
    return sid, token, options.get("base_url", ""), options.get("timeout", 10)


def _pointed(client: Client, base_url: str) -> Client:
    if base_url:
        client.api.base_url = base_url.rstrip("/")
    return client


def client_for(account: ProviderAccount) -> Client:
    key = sid, token, base_url, timeout = _client_key(account)
    clients = _local.__dict__.setdefault("clients", {})
    if key not in clients:
        clients[key] = _pointed(Client(sid, token, http_client=TwilioHttpClient(timeout=timeout)), base_url)
    return clients[key]


# One async client per event loop and account: its aiohttp session (and the
# connections it keeps alive) belongs to the loop it was made on.
_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _async_client_for(account: ProviderAccount) -> Client:
    key = sid, token, base_url, timeout = _client_key(account)
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    if key not in clients:
        http = AsyncTwilioHttpClient(pool_connections=False)
        http.session = _TimedSession(timeout)
        clients[key] = _pointed(Client(sid, token, http_client=http), base_url)
    return clients[key]


class _TimedSession:
    """The aiohttp session under the SDK's async client. The SDK hands every
    request `timeout=None` (its own `timeout` argument is never used), which
    aiohttp reads as no timeout at all: this gives each request the
    account's, connect and read apart (only a read timeout is ambiguous).

    It also hands over the form as a dict, which aiohttp encodes through its
    multipart-capable FormData (a quarter of the SDK's CPU per message), and
    the credentials as a BasicAuth, which aiohttp 3.14 deprecates: the body
    goes encoded as the SDK's requests client encodes it, the credentials as
    their header."""

    def __init__(self, timeout: float):
        self._session = aiohttp.ClientSession()
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)

    def request(self, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        if isinstance(kwargs.get("data"), dict):  # the SDK has set its Content-Type (form-urlencoded)
            kwargs["data"] = urlencode(kwargs["data"], doseq=True).encode()
        if isinstance(kwargs.get("auth"), aiohttp.BasicAuth):
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": kwargs.pop("auth").encode()}
        return self._session.request(**kwargs)

    async def close(self) -> None:
        await self._session.close()


def _to_address(message: OutboundMessage) -> str:
    if message.channel == Channel.WHATSAPP and not message.address.startswith("whatsapp:"):
        return f"whatsapp:{message.address}"
    if message.channel == Channel.RCS and not message.address.startswith("rcs:"):
        return f"rcs:{message.address}"
    return message.address


def _sender_params(account: ProviderAccount, channel: str) -> dict[str, str]:
    sender = account.sender
    if sender.startswith("MG"):
        return {"messaging_service_sid": sender}
    if channel == Channel.WHATSAPP and not sender.startswith("whatsapp:"):
        sender = f"whatsapp:{sender}"
    return {"from_": sender}


def content_sid_for(message: OutboundMessage, account: ProviderAccount) -> str:
    """The rendered variant's own SID first (it is per locale); the account's
    mapping only when the template carries none."""
    if message.content.get("content_sid"):
        return message.content["content_sid"]
    configured = (account.options or {}).get("content_sids", {}).get(message.template_key, "")
    if isinstance(configured, dict):
        return configured.get(message.locale) or configured.get(message.locale.split("-")[0], "")
    return configured


# RCS: the named variables an RCS Content template (twilio/card with actions)
# may use. Suggestions fill suggestion_<n>_text / suggestion_<n>_value, n
# from 1, in the template's order; value is the reply payload, URL or phone.
CONTENT_SLOTS = ("title", "description", "media_url")


def rcs_variables(content: dict) -> dict[str, str]:
    variables = {slot: str(content.get(slot, "")) for slot in CONTENT_SLOTS}
    for n, suggestion in enumerate(content.get("suggestions") or [], start=1):
        variables[f"suggestion_{n}_text"] = str(suggestion.get("text", ""))
        variables[f"suggestion_{n}_value"] = str(suggestion.get("value", ""))
    return variables


def _content_params(message: OutboundMessage, account: ProviderAccount) -> dict[str, str]:
    content = message.content
    content_sid = content_sid_for(message, account)
    if message.channel == Channel.WHATSAPP and content.get("template_name"):
        if not content_sid:
            raise PermanentError(f"no Twilio content SID for WhatsApp template {message.template_key!r}",
                                 code="no_content_sid")
        variables = {str(i + 1): value for i, value in enumerate(content.get("parameters", []))}
        return {"content_sid": content_sid, "content_variables": json.dumps(variables)}
    if message.channel == Channel.RCS:
        if content_sid:
            return {"content_sid": content_sid, "content_variables": json.dumps(rcs_variables(content))}
        # Without a rich card the SDK sends the text form.
        return {"body": content.get("fallback_text") or content.get("description", "")}
    return {"body": content.get("body", "")}


def _classify(error: TwilioRestException) -> Exception:
    if error.status == 429 or error.status >= 500:
        return TransientError(error.msg or str(error), code=str(error.code or error.status))
    why = PERMANENT_CODES.get(error.code or 0, error.msg or "rejected")
    return PermanentError(why, code=str(error.code or error.status))


def _price(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return abs(Decimal(str(value)))
    except InvalidOperation:
        return None
