"""Email over plain SMTP with Django's SMTP backend (self-hosted relays).

Account options: host, port, use_tls, use_ssl, timeout, username; the
password comes from <PREFIX>_PASSWORD (prefix SMTP by default) when a
username is set."""

from __future__ import annotations

import smtplib

from django.core.mail import get_connection

from channels.models import OutboundMessage, ProviderAccount
from channels.providers.base import Accepted, Feedback, PermanentError, TransientError, account_secret
from channels.providers.email_common import build_email


class SmtpProvider:
    name = "smtp"

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        options = account.options or {}
        username = options.get("username", "")
        connection = get_connection(
            "django.core.mail.backends.smtp.EmailBackend",
            host=options.get("host", "localhost"),
            port=int(options.get("port", 25)),
            username=username or None,
            password=account_secret(account, "PASSWORD", default_prefix="SMTP") if username else None,
            use_tls=bool(options.get("use_tls", False)),
            use_ssl=bool(options.get("use_ssl", False)),
            timeout=options.get("timeout", 10),
            fail_silently=False,
        )
        email = build_email(message, account, connection)
        try:
            email.send()
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            raise _by_code(code, reply, hard_bounce=True) from error
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            raise _by_code(error.smtp_code, error.smtp_error, hard_bounce=False) from error
        except (smtplib.SMTPException, OSError) as error:
            # Disconnects, refused connections, timeouts, auth trouble: may pass.
            raise TransientError(f"SMTP: {error}") from error
        return Accepted(provider_message_id=email.extra_headers["Message-ID"])


def _by_code(code: int, reply: bytes | str, *, hard_bounce: bool) -> Exception:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    if 500 <= code < 600:
        feedback = Feedback.HARD_BOUNCE if hard_bounce else Feedback.NONE
        return PermanentError(f"SMTP {code} {text}", code=str(code), feedback=feedback)
    return TransientError(f"SMTP {code} {text}", code=str(code))
