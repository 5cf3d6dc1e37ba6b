"""Web Push (browsers) with pywebpush and VAPID.

Account: `sender` is the VAPID subject (mailto: or https: URL); the private
key comes from <PREFIX>_VAPID_PRIVATE_KEY (prefix WEBPUSH by default). The
push service is whatever endpoint the browser subscribed with."""

from __future__ import annotations

import json
import uuid

import requests
from pywebpush import WebPushException, webpush

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
from consent.models import PushDevice

GONE = (404, 410)  # the subscription expired or was withdrawn


class WebPushProvider:
    name = "webpush"
    # It reads the subscription keys from the database: one call at a time, on the task's thread.
    concurrent_calls = False

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        device = PushDevice.objects.filter(token=message.address).first()
        if device is None or not device.subscription:
            raise PermanentError("no Web Push subscription keys for this device", code="no_subscription")
        content = message.content
        body = {k: content.get(k, "") for k in ("title", "body", "deep_link")} | {"message_id": message.pk}
        try:
            response = webpush(
                subscription_info={"endpoint": device.token, "keys": device.subscription},
                data=json.dumps(body),
                vapid_private_key=account_secret(account, "VAPID_PRIVATE_KEY", default_prefix="WEBPUSH"),
                vapid_claims={"sub": account.sender or "mailto:ops@example.com"},
                timeout=(account.options or {}).get("timeout", 10),
                ttl=(account.options or {}).get("ttl", 86400),
            )
        except WebPushException as error:
            raise _classify(error) from error
        except (requests.ConnectionError, requests.Timeout) as error:
            if is_ambiguous(error):
                raise AmbiguousError(f"no answer from the push service after sending: {error}") from error
            raise TransientError(f"push service unreachable: {error}") from error
        return Accepted(provider_message_id=response.headers.get("Location") or f"webpush-{uuid.uuid4().hex}")


def _classify(error: WebPushException) -> Exception:
    status = error.status_code
    if status in GONE:
        return PermanentError(f"subscription gone ({status})", code=str(status), feedback=Feedback.UNREGISTERED_DEVICE)
    if status is None or status == 429 or status >= 500:
        return TransientError(error.message, code=str(status or ""))
    return PermanentError(error.message, code=str(status))
