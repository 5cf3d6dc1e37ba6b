"""Signals by which channels tells higher apps (journeys, support, analytics)
what happened, without importing them."""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: inbound (InboundMessage). Sent after STOP/START/HELP/YES handling,
# only for replies that were not a keyword, so support can route them.
inbound_message_received = Signal()

# kwargs: message (OutboundMessage), old_status, new_status. Sent on commit
# of every status change.
message_status_changed = Signal()
