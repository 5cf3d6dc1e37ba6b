"""Email over plain SMTP with Django's SMTP backend (self-hosted relays).

Account options: host, port, use_tls, use_ssl, timeout, username; the
password comes from <PREFIX>_PASSWORD (prefix SMTP by default) when a
username is set. `messages_per_session` (default 100) bounds how many
messages go through one SMTP session before it is closed and a new one
opened (many relays cap it).

Sessions are kept open between messages and batches, one per thread in
use at a time: a new session costs a connect, the greeting, EHLO (and
STARTTLS, AUTH), which against a near relay is most of the time of a
message. A session idle for a while is checked with NOOP before it is used
again, since relays drop idle sessions."""

from __future__ import annotations

import contextlib
import os
import smtplib
import threading
import time
from dataclasses import dataclass, field

from django.core.mail import get_connection

from channels.models import OutboundMessage, ProviderAccount
from channels.providers.base import Accepted, Feedback, PermanentError, TransientError, account_secret
from channels.providers.email_common import build_email

MESSAGES_PER_SESSION = 100
CHECK_IDLE_AFTER_SECONDS = 1.0


class SmtpProvider:
    name = "smtp"
    concurrent_calls = True

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        options = account.options or {}
        session = _take_session(account)
        email = build_email(message, account, session.backend)
        try:
            email.send()
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            _give_back(session, options, code)
            raise _by_code(code, reply, hard_bounce=True) from error
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            _give_back(session, options, error.smtp_code)
            raise _by_code(error.smtp_code, error.smtp_error, hard_bounce=False) from error
        except (smtplib.SMTPException, OSError) as error:
            # Disconnects, refused connections, timeouts, auth trouble: may pass.
            _close(session)
            raise TransientError(f"SMTP: {error}") from error
        except BaseException:
            _close(session)
            raise
        _give_back(session, options)
        return Accepted(provider_message_id=email.extra_headers["Message-ID"])


@dataclass
class _Session:
    key: tuple
    backend: object
    pid: int = field(default_factory=os.getpid)
    sent: int = 0
    last_used: float = field(default_factory=time.monotonic)


_idle: dict[tuple, list[_Session]] = {}
_lock = threading.Lock()


def _settings(account: ProviderAccount) -> dict:
    options = account.options or {}
    username = options.get("username", "")
    return {
        "host": options.get("host", "localhost"),
        "port": int(options.get("port", 25)),
        "username": username or None,
        "password": account_secret(account, "PASSWORD", default_prefix="SMTP") if username else None,
        "use_tls": bool(options.get("use_tls", False)),
        "use_ssl": bool(options.get("use_ssl", False)),
        "timeout": options.get("timeout", 10),
    }


def _take_session(account: ProviderAccount) -> _Session:
    """An open session for this account's relay: an idle one if it still
    answers, else a new one. Opening may raise what send() maps."""
    kwargs = _settings(account)
    key = tuple(sorted(kwargs.items()))
    while True:
        with _lock:
            idle = _idle.get(key)
            session = idle.pop() if idle else None
        if session is None:
            break
        if session.pid == os.getpid() and _answers(session):
            return session
        _close(session)
    backend = get_connection("django.core.mail.backends.smtp.EmailBackend", fail_silently=False, **kwargs)
    try:
        backend.open()
    except (smtplib.SMTPException, OSError) as error:
        _close_backend(backend)
        raise TransientError(f"SMTP: {error}") from error
    return _Session(key=key, backend=backend)


def _answers(session: _Session) -> bool:
    if time.monotonic() - session.last_used < CHECK_IDLE_AFTER_SECONDS:
        return True
    try:
        return session.backend.connection.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _give_back(session: _Session, options: dict, code: int = 250) -> None:
    """Keep the session for the next message, unless it has carried its
    share or the server is closing it (421: smtplib has closed the socket)."""
    session.sent += 1
    session.last_used = time.monotonic()
    if code == 421 or session.sent >= int(options.get("messages_per_session", MESSAGES_PER_SESSION)):
        _close(session)
        return
    with _lock:
        _idle.setdefault(session.key, []).append(session)


def _close(session: _Session) -> None:
    _close_backend(session.backend)


def _close_backend(backend) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):  # it is being dropped either way
        backend.close()


def _by_code(code: int, reply: bytes | str, *, hard_bounce: bool) -> Exception:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    if 500 <= code < 600:
        feedback = Feedback.HARD_BOUNCE if hard_bounce else Feedback.NONE
        return PermanentError(f"SMTP {code} {text}", code=str(code), feedback=feedback)
    return TransientError(f"SMTP {code} {text}", code=str(code))
