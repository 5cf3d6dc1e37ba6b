"""What the email adapters share: the parts of an email from rendered
content, and the Django EmailMessage that the SMTP and anymail adapters
send through a Django email connection."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formataddr

from django.core.mail import EmailMultiAlternatives
from django.utils.html import escape

from channels.models import OutboundMessage, ProviderAccount


@dataclass(frozen=True)
class EmailParts:
    """A rendered email message as every email adapter sends it."""

    from_email: str
    to: str
    subject: str
    text: str
    html: str  # with its preheader; "" for a text-only message
    reply_to: str
    message_id: str


def email_parts(message: OutboundMessage, account: ProviderAccount) -> EmailParts:
    content = message.content
    profile = content.get("sender_profile") or {}
    from_email = profile.get("from_email") or account.sender
    if profile.get("from_name"):
        from_email = formataddr((profile["from_name"], from_email))
    domain = (profile.get("from_email") or account.sender).rpartition("@")[2] or "localhost"
    return EmailParts(
        from_email=from_email,
        to=message.address,
        subject=content.get("subject", ""),
        text=content.get("text", ""),
        html=with_preheader(content["html"], content.get("preheader", "")) if content.get("html") else "",
        reply_to=profile.get("reply_to") or "",
        # A Message-ID derived from our row: a resend after a crash carries
        # the same id, which receiving systems use to drop duplicates.
        message_id=message_id_for(message, domain),
    )


def build_email(message: OutboundMessage, account: ProviderAccount, connection) -> EmailMultiAlternatives:
    parts = email_parts(message, account)
    email = EmailMultiAlternatives(
        subject=parts.subject,
        body=parts.text,
        from_email=parts.from_email,
        to=[parts.to],
        reply_to=[parts.reply_to] if parts.reply_to else None,
        headers={"Message-ID": parts.message_id},
        connection=connection,
    )
    if parts.html:
        email.attach_alternative(parts.html, "text/html")
    return email


# The inbox preview line: first text in the body, hidden when the mail is opened.
PREHEADER_DIV = (
    '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;'
    'mso-hide:all;color:transparent">{}</div>'
)


def with_preheader(html: str, preheader: str) -> str:
    """Put the hidden preheader first in the body (right after <body> when
    the HTML has one)."""
    if not preheader.strip():
        return html
    div = PREHEADER_DIV.format(escape(preheader))
    match = _BODY_TAG.search(html)
    if match is None:
        return div + html
    return html[: match.end()] + div + html[match.end():]


_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def message_id_for(message: OutboundMessage, domain: str) -> str:
    return f"<outbound-{message.pk}@{domain}>"
