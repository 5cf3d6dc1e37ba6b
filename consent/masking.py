"""Addresses as exports and lists show them to people who need to tell
messages apart, not to reach the person."""

from __future__ import annotations


def mask_address(address: str) -> str:
    """'jane.doe@example.com' -> 'j***@example.com'; '+447700900123' ->
    '+44*******23'; anything else (push tokens, ids) keeps 4 characters."""
    if not address:
        return ""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if address.startswith("+") and address[1:].isdigit():
        return address[:3] + "*" * max(len(address) - 5, 0) + address[-2:]
    return address[:4] + "***"
