"""Email through Postmark's batch API, with postmarker (Postmark's Python
client): up to 500 distinct messages in one HTTP call (`/email/batch`),
each answered on its own.

This is the email adapter for volume. Django's email classes build and
serialise a MIME message for each email (0.7-0.9 ms of CPU per message
against a local relay, more than the whole per-message budget at 3,000
messages/s on two cores); here a message is a small JSON object in a
request shared with hundreds of others. anymail's batch sending cannot
stand in: it sends one message to many recipients with merge data, and our
messages are rendered apart.

Account: `sender` is a confirmed Postmark sender signature. Options:
`message_stream` (default "outbound"), `batch_size` (messages per call, at
most 500), `timeout` (seconds), `api_url` (another host: a local fake in
tests). The server token comes from <PREFIX>_SERVER_TOKEN (prefix POSTMARK
by default). Each message carries Metadata `outbound_message_id`, so
Postmark's delivery, bounce and spam-complaint webhooks reach
/webhooks/anymail/postmark/tracking/ and are matched to it."""

from __future__ import annotations

import threading

import requests
from postmarker.core import DEFAULT_API, PostmarkClient
from postmarker.exceptions import ClientError

from channels.models import OutboundMessage, ProviderAccount
from channels.providers.base import (
    Accepted,
    AmbiguousError,
    Feedback,
    PermanentError,
    TransientError,
    account_secret,
    is_ambiguous,
)
from channels.providers.email_common import email_parts

MAX_BATCH_SIZE = 500  # Postmark's limit per /email/batch call
CONNECT_TIMEOUT_SECONDS = 5
# Postmark's per-message ErrorCode for a recipient it will not send to: it
# hard-bounced, complained of spam, or was suppressed by hand.
INACTIVE_RECIPIENT = 406

# One client per thread and account: postmarker keeps a requests Session
# (connections kept alive between batches) on the client.
_local = threading.local()


class PostmarkProvider:
    name = "postmark"
    concurrent_calls = True

    def batch_size(self, account: ProviderAccount) -> int:
        try:
            return max(1, min(MAX_BATCH_SIZE, int((account.options or {}).get("batch_size", MAX_BATCH_SIZE))))
        except (TypeError, ValueError):
            return MAX_BATCH_SIZE

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        answer = self.send_batch([message], account)[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def send_batch(self, messages: list[OutboundMessage], account: ProviderAccount) -> list[Accepted | Exception]:
        """One call for all `messages` (at most `batch_size`): each one's
        Accepted or error, in order. A failure of the whole call is every
        message's error."""
        stream = (account.options or {}).get("message_stream", "outbound")
        emails = [_email(message, account, stream) for message in messages]
        try:
            results = _client_for(account).emails.send_batch(*emails)
        except ClientError as error:
            return [_call_error(error)] * len(messages)
        except requests.RequestException as error:
            if is_ambiguous(error):
                return [AmbiguousError(f"no answer from Postmark after sending: {error}")] * len(messages)
            return [TransientError(f"Postmark unreachable: {error}")] * len(messages)
        if len(results) != len(messages):
            # Never expected; the call went out, so nothing may be sent again at once.
            why = f"Postmark answered {len(results)} results for {len(messages)} messages"
            return [AmbiguousError(why)] * len(messages)
        return [_answer(result) for result in results]


def _email(message: OutboundMessage, account: ProviderAccount, stream: str) -> dict:
    parts = email_parts(message, account)
    email = {"From": parts.from_email, "To": parts.to, "Subject": parts.subject, "TextBody": parts.text,
             "Headers": {"Message-ID": parts.message_id}, "Metadata": {"outbound_message_id": str(message.pk)},
             "MessageStream": stream}
    if parts.html:
        email["HtmlBody"] = parts.html
    if parts.reply_to:
        email["ReplyTo"] = parts.reply_to
    if message.template_key:
        email["Tag"] = message.template_key[:1000]
    return email


def _answer(result: dict) -> Accepted | Exception:
    code = result.get("ErrorCode", 0)
    if code == 0:
        return Accepted(provider_message_id=result.get("MessageID", ""))
    why = f"Postmark {code}: {result.get('Message', '')}"
    if code == INACTIVE_RECIPIENT:
        return PermanentError(why, code=str(code), feedback=Feedback.HARD_BOUNCE)
    return PermanentError(why, code=str(code))


def _call_error(error: ClientError) -> Exception:
    """The whole call was refused. Postmark answers 401 for a bad token
    (fixable: wait for it), 422 for a request it will never take, 429 and
    5xx for what may pass."""
    response = getattr(error.__cause__, "response", None)
    status = response.status_code if response is not None else None
    why = f"Postmark refused the batch (HTTP {status}): {error}"
    if status == 422:
        return PermanentError(why, code=str(error.error_code))
    return TransientError(why, code=str(error.error_code))


def _client_for(account: ProviderAccount) -> PostmarkClient:
    token = account_secret(account, "SERVER_TOKEN", default_prefix="POSTMARK")
    options = account.options or {}
    api_url = options.get("api_url") or DEFAULT_API
    timeout = (CONNECT_TIMEOUT_SECONDS, float(options.get("timeout", 10)))
    key = (token, api_url, timeout)
    clients = _local.__dict__.setdefault("clients", {})
    if key not in clients:
        clients[key] = PostmarkClient(server_token=token, root_api_url=api_url, timeout=timeout)
    return clients[key]
