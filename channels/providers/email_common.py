"""What the two email adapters share: building the Django EmailMessage from
rendered content. Both then send through a Django email connection."""

from __future__ import annotations

import re
from email.utils import formataddr

from django.core.mail import EmailMultiAlternatives
from django.utils.html import escape

from channels.models import OutboundMessage, ProviderAccount


def build_email(message: OutboundMessage, account: ProviderAccount, connection) -> EmailMultiAlternatives:
    content = message.content
    profile = content.get("sender_profile") or {}
    from_email = profile.get("from_email") or account.sender
    if profile.get("from_name"):
        from_email = formataddr((profile["from_name"], from_email))
    domain = (profile.get("from_email") or account.sender).rpartition("@")[2] or "localhost"
    email = EmailMultiAlternatives(
        subject=content.get("subject", ""),
        body=content.get("text", ""),
        from_email=from_email,
        to=[message.address],
        reply_to=[profile["reply_to"]] if profile.get("reply_to") else None,
        # A Message-ID derived from our row: a resend after a crash carries
        # the same id, which receiving systems use to drop duplicates.
        headers={"Message-ID": message_id_for(message, domain)},
        connection=connection,
    )
    if content.get("html"):
        email.attach_alternative(with_preheader(content["html"], content.get("preheader", "")), "text/html")
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
