"""Shared pieces of the benchmark harness: the bench database, timing,
peak memory, and the JSON line each scenario prints."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager

BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/backoffice_bench")
BENCH_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")


def configure_django() -> None:
    """Point Django at the bench database and broker, then set it up."""
    os.environ["DATABASE_URL"] = BENCH_DATABASE_URL
    os.environ["CELERY_BROKER_URL"] = BENCH_BROKER_URL
    os.environ.setdefault("REDIS_URL", BENCH_BROKER_URL)
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 60)
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its waited-for children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


@contextmanager
def stopwatch():
    box = {}
    start = time.perf_counter()
    yield box
    box["seconds"] = time.perf_counter() - start


def median_rate(runs: int, work: Callable[[], tuple[int, float]]) -> tuple[float, list[float]]:
    """Run `work` (returning items done and seconds) several times; the median rate."""
    rates = []
    for _ in range(runs):
        items, seconds = work()
        rates.append(items / seconds)
    return statistics.median(rates), [round(r, 1) for r in rates]


def emit(result: dict) -> None:
    result.setdefault("peak_rss_mb", peak_rss_mb())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
