"""Addresses as lists, logs and exports show them to people who need to
tell records apart, not to reach the person. Plain functions, no Django
imports: the logging filter loads this before the apps are ready."""

from __future__ import annotations

import re

PERSONAL_DATA_PERMISSION = "consent.view_personal_data"

# Emails as providers and people write them. Phones: E.164 only (a "+" then
# 7 to 15 digits), the form we store and providers report, matched by a
# regex rather than phonenumbers' PhoneNumberMatcher: the matcher skips
# numbers it does not hold valid (it found neither +15555550100 nor
# +447700900123 in a log line) and costs about seven times more per line
# (README, "Personal data").
EMAIL_RE = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
E164_RE = re.compile(r"(?<![\w+])\+[1-9]\d{6,14}(?!\d)")


def mask_address(address: str) -> str:
    """'jane.doe@example.com' -> 'j***@example.com'; '+447700900123' ->
    '+44********23'; anything else (push tokens, ids) keeps 4 characters."""
    if not address:
        return ""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if address.startswith("+") and address[1:].isdigit():
        return address[:3] + "*" * max(len(address) - 5, 0) + address[-2:]
    return address[:4] + "***"


def mask_text(text: str) -> str:
    """Every email and E.164 phone in free text, masked as mask_address does."""
    text = EMAIL_RE.sub(lambda match: mask_address(match.group()), text)
    return E164_RE.sub(lambda match: mask_address(match.group()), text)


def redact_text(text: str, replacement: str = "[erased]") -> str:
    """Every email and E.164 phone in free text, replaced (erasure keeps the
    rest of a provider's error or a decision's reason)."""
    return E164_RE.sub(replacement, EMAIL_RE.sub(replacement, text))


def sees_personal_data(user) -> bool:
    """Superusers hold every permission, so they see everything."""
    return user.has_perm(PERSONAL_DATA_PERMISSION)
