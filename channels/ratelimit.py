"""Per-sender rate limits held in Redis, so every worker shares one budget."""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import redis
from django.conf import settings

from channels.models import ProviderAccount

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def try_acquire(account: ProviderAccount, *, at: float | None = None) -> bool:
    """Take one send from this sender's budget for the current second; False
    when it is spent. A fixed one-second window: simple, shared, and its
    worst case (2x at a window edge) is within what providers tolerate."""
    if not account.rate_limit_per_second:
        return True
    if not settings.REDIS_URL:
        logger.warning("rate limit on %s not enforced: REDIS_URL is not set", account.name)
        return True
    second = int(at if at is not None else time.time())
    key = f"channels:rate:{account.pk}:{second}"
    try:
        pipe = _client(settings.REDIS_URL).pipeline()
        pipe.incr(key)
        pipe.expire(key, 5)
        count, _ = pipe.execute()
    except redis.RedisError as error:
        # Without the shared count we cannot know the budget: hold the send
        # (it goes back in line) rather than fail it or send unlimited.
        logger.warning("rate limit on %s unknown, holding the send: Redis error %s", account.name, error)
        return False
    return count <= account.rate_limit_per_second
