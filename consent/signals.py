"""Signals by which consent tells higher apps (channels' outbound webhooks)
about ledger changes, without importing them."""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: record (ConsentRecord); in_effect (bool, False only for a merge's
# copy that a newer record of the survivor's own outranks). Sent inside the
# transaction that appends the record, so what a receiver writes commits or
# rolls back with it.
consent_recorded = Signal()
