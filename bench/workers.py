"""Worker processes the scenarios start: `python -m bench.workers tick`
runs the journeys engine's Beat tick (the production task body) in a loop
until nothing is due. It prints "ready" once Django is set up and starts on
a line on stdin, so the clock measures work, not start-up; it prints its
counts when done and exits when stdin closes, so the harness can read the
CPU time it and its database connection used before they are gone."""

from __future__ import annotations

import json
import sys
import time


def tick_until_idle() -> dict:
    from journeys.tasks import tick

    totals = {"events": 0, "advanced": 0, "ticks": 0}
    started = time.perf_counter()
    while True:
        counts = tick()
        totals["ticks"] += 1
        totals["events"] += counts["events"]
        totals["advanced"] += counts["advanced"]
        if not counts["advanced"] and not counts["events"]:
            break
    totals["seconds"] = time.perf_counter() - started
    return totals


def main() -> None:
    from bench.common import configure_django

    configure_django()
    kind = sys.argv[1]
    if kind != "tick":
        raise SystemExit(f"unknown worker kind {kind!r}")
    import journeys.tasks  # noqa: F401 - imported before the clock starts
    from config.celery import tune_garbage_collector

    tune_garbage_collector()  # as in a Celery worker process

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    sys.stdout.write(json.dumps(tick_until_idle()) + "\n")
    sys.stdout.flush()
    sys.stdin.read()


if __name__ == "__main__":
    main()
