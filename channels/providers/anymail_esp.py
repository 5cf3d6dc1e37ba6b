"""Email through any ESP django-anymail supports (Mailgun, SendGrid,
Postmark, Amazon SES, Brevo, ...).

Account options: `esp` (anymail's backend module name, e.g. "mailgun",
"sendgrid", "postmark", "amazon_ses"), and `settings`: non-secret anymail
settings for that ESP (e.g. {"sender_domain": "mg.example.com"} or an
"api_url" for a sandbox). The key comes from <PREFIX>_API_KEY (prefix
ANYMAIL by default); ESPs that use another name for it take
`options.secret_setting` (e.g. "server_token" for Postmark)."""

from __future__ import annotations

from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.core.mail import get_connection

from channels.models import OutboundMessage, ProviderAccount
from channels.providers.base import (
    Accepted,
    AmbiguousError,
    PermanentError,
    TransientError,
    account_secret,
    is_ambiguous,
)
from channels.providers.email_common import build_email


class AnymailProvider:
    name = "anymail"
    concurrent_calls = True

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        options = account.options or {}
        esp = options.get("esp", "")
        if not esp.isidentifier():
            raise PermanentError(f"provider account {account.name!r} names no valid anymail ESP", code="config")
        secret_setting = options.get("secret_setting", "api_key")
        kwargs = dict(options.get("settings") or {})
        kwargs[secret_setting] = account_secret(account, "API_KEY", default_prefix="ANYMAIL")
        connection = get_connection(f"anymail.backends.{esp}.EmailBackend", **kwargs)
        email = build_email(message, account, connection)
        email.metadata = {"outbound_message_id": str(message.pk)}
        if message.template_key:
            email.tags = [message.template_key]
        try:
            email.send()
        except AnymailRecipientsRefused as error:
            raise PermanentError(f"ESP refused the recipient: {error}", code="refused") from error
        except AnymailRequestsAPIError as error:
            # anymail re-raises requests' own exception type mixed in.
            if is_ambiguous(error):
                raise AmbiguousError(f"no answer from the ESP after sending: {error}") from error
            if error.status_code is None or error.status_code == 429 or error.status_code >= 500:
                raise TransientError(str(error), code=str(error.status_code or "")) from error
            raise PermanentError(str(error), code=str(error.status_code)) from error
        except AnymailAPIError as error:
            raise TransientError(str(error)) from error
        except AnymailError as error:
            raise PermanentError(str(error), code="anymail") from error
        return Accepted(provider_message_id=email.anymail_status.message_id or "")
