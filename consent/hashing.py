from __future__ import annotations

import hashlib


def address_hash(address: str) -> str:
    """How an erased address is kept on a suppression: matchable, not readable."""
    return "sha256:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()
