"""Per-sender rate limits held in Redis, so every worker shares one budget.

The budget is a sliding window of a little over a second
(WINDOW_MICROSECONDS): a log of the grants of that window per sender (a
sorted set scored by grant time). One Lua script, run atomically by Redis,
drops what fell out of the window and takes as many of the wanted sends as
still fit, so a delivery task asks once for a whole wave of calls, and no
window ever holds more than the limit, not even across the edge of a clock
second (the fixed window this replaces let two full budgets through around
an edge). The clock is Redis's own (TIME), so workers on machines with
skewed clocks still share one window.

Sends the budget held wait in one line per sender (`hold_line`), also in
Redis: each batch's held sends are given the next free places after those
already waiting, at the sender's rate, so they come back as the budget
frees up rather than all at once to be held again."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache

import redis
from django.conf import settings

from channels.models import ProviderAccount

logger = logging.getLogger(__name__)
# The limit's worth of sends per 1.05 s, not per second: the budget is
# granted on Redis's clock, and the provider counts the requests as they
# arrive, a few milliseconds later and not always the same few. With a
# window of one second, the busiest second at a fake provider held up to
# 504 sends under a limit of 500; the 50 ms keep a second at the provider
# within the limit, for 5 % of the limit's pace.
WINDOW_MICROSECONDS = 1_050_000
# A window's worth of held sends is given a little more than the window: a
# wave takes a moment to go out, and the window slides; sends that came back
# a hair early would be held again, behind everyone.
LINE_SECOND = 1.1

# `now` in microseconds: the script's argument at this index, or Redis's clock when it is "".
_NOW = """
local now = tonumber(ARGV[{index}])
if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS[1] the sender's log. ARGV: limit, wanted, a unique prefix for the new
# entries, the time in microseconds ("" to use Redis's clock), the window.
_TAKE = _NOW.format(index=4) + """
-- A microsecond of slack: `at` comes in float seconds.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[5]) + 1))
local granted = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1]))
if granted <= 0 then
    return 0
end
local score = string.format('%.0f', now)
local entries = {}
for i = 1, granted do
    entries[#entries + 1] = score
    entries[#entries + 1] = ARGV[3] .. i
end
redis.call('ZADD', KEYS[1], unpack(entries))
redis.call('PEXPIRE', KEYS[1], 5000)
return granted
"""


# KEYS[1] the sender's line of held sends: its last second's time, in
# microseconds, and how many sends that second holds ("time:count"). ARGV: the
# limit, how many join it, the time ("" for Redis's clock), the shortest wait,
# the line's second. The joining sends fill the last second's room, then
# whole seconds of the limit's worth each. Returns the wait of the first of
# them, in microseconds, and how many sends its second held before them.
_JOIN_LINE = _NOW.format(index=3) + """
local limit, count, line_second = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
local earliest = now + tonumber(ARGV[4])
local slot, held = 0, 0
local line = redis.call('GET', KEYS[1])
local colon = line and string.find(line, ':', 1, true)
if colon then
    slot, held = tonumber(string.sub(line, 1, colon - 1)), tonumber(string.sub(line, colon + 1))
elseif line then
    -- Written by the version before: when the line ends, full up to there.
    slot, held = tonumber(line) - line_second, limit
end
if slot < earliest or held >= limit then
    slot, held = math.max(slot + line_second, earliest), 0
end
local last = slot + math.floor((held + count - 1) / limit) * line_second
local last_held = held + count - math.floor((held + count - 1) / limit) * limit
redis.call('SET', KEYS[1], string.format('%.0f:%d', last, last_held), 'PX', math.ceil((last - now) / 1000) + 1000)
return {string.format('%.0f', slot - now), held}
"""


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


@lru_cache(maxsize=1)
def _script(url: str):
    return _client(url).register_script(_TAKE)


@lru_cache(maxsize=1)
def _line_script(url: str):
    return _client(url).register_script(_JOIN_LINE)


def acquire(account: ProviderAccount, wanted: int, *, at: float | None = None) -> int:
    """Take up to `wanted` sends from this sender's budget, in one round trip;
    returns how many were granted (the first ones of the caller's list go,
    the rest wait). `at` (seconds) replaces Redis's clock, for tests."""
    if wanted <= 0:
        return 0
    if not account.rate_limit_per_second:
        return wanted
    if not settings.REDIS_URL:
        logger.warning("rate limit on %s not enforced: REDIS_URL is not set", account.name)
        return wanted
    now = "" if at is None else str(round(at * 1_000_000))
    try:
        granted = _script(settings.REDIS_URL)(
            keys=[f"channels:rate:{account.pk}"],
            args=[account.rate_limit_per_second, wanted, f"{uuid.uuid4().hex}:", now, WINDOW_MICROSECONDS],
        )
    except redis.RedisError as error:
        # Without the shared count we cannot know the budget: hold the sends
        # (they go back in line) rather than fail them or send unlimited.
        logger.warning("rate limit on %s unknown, holding the send: Redis error %s", account.name, error)
        return 0
    return int(granted)


def try_acquire(account: ProviderAccount, *, at: float | None = None) -> bool:
    """Take one send from this sender's budget; False when it is spent."""
    return acquire(account, 1, at=at) == 1


def hold_line(account: ProviderAccount, count: int, *, shortest_wait: float, at: float | None = None) -> list[float]:
    """`count` sends the budget held join the sender's line, after every send
    already waiting: returns, for each of them in order, in how many seconds
    it may try again (the first at least `shortest_wait`). The line is cut in
    seconds of `rate_limit_per_second` sends, LINE_SECOND apart: the held
    sends first fill what room the line's last second has left (batches
    holding fewer than the limit share a second), then take whole seconds."""
    if count <= 0 or not account.rate_limit_per_second or not settings.REDIS_URL:
        return [shortest_wait] * count
    now = "" if at is None else str(round(at * 1_000_000))
    limit = account.rate_limit_per_second
    try:
        first, held = _line_script(settings.REDIS_URL)(
            keys=[f"channels:rate-line:{account.pk}"],
            args=[limit, count, now, round(shortest_wait * 1_000_000), round(LINE_SECOND * 1_000_000)],
        )
    except redis.RedisError as error:
        logger.warning("rate limit line of %s unknown, retrying its held sends soon: Redis error %s", account.name,
                       error)
        return [shortest_wait] * count
    first_wait = int(first) / 1_000_000
    return [first_wait + ((int(held) + i) // limit) * LINE_SECOND for i in range(count)]
