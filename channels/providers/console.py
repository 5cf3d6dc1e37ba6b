"""The embedded adapter for `make run` and demos: it records what would have
been sent (in the log and on the message) and reports it delivered."""

from __future__ import annotations

import logging
import uuid

from channels.models import OutboundMessage, ProviderAccount
from channels.providers.base import Accepted

logger = logging.getLogger("channels.console")


class ConsoleProvider:
    name = "console"
    concurrent_calls = True

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        # Only ids and the channel: the content may hold personal data.
        logger.info("console %s message %s from %s delivered", message.channel, message.pk, account.sender or "-")
        return Accepted(provider_message_id=f"console-{uuid.uuid4().hex}", delivered=True)
