"""Project-level tasks."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from config import idempotency
from config.celery import app

HEARTBEAT_FILE = "worker-heartbeat"


@app.task(name="config.heartbeat", ignore_result=True)
def heartbeat(source: str = "beat") -> str:
    """Proves the broker carries work end to end: Beat (or a caller) sends
    it, a worker writes when it ran. `make run` schedules it every minute."""
    stamp = f"{timezone.now().isoformat()} {source}\n"
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(settings.VAR_DIR / HEARTBEAT_FILE, "a", encoding="utf-8") as handle:
        handle.write(stamp)
    return stamp


@app.task(name="config.noop", ignore_result=True)
def noop(counter_key: str = "") -> None:
    """Does nothing but count itself: the Celery round-trip baseline of `make bench`."""
    if counter_key:
        import redis

        redis.Redis.from_url(settings.REDIS_URL).incr(counter_key)


@app.task(name="config.prune_idempotency_records", ignore_result=True)
def prune_idempotency_records() -> int:
    return idempotency.prune(now=timezone.now())
