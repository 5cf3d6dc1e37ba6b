"""Scenario 2, scheduler: N active enrollments due at a send step (made
with COPY), advanced by the journeys engine's tick (`journeys.tasks.tick`,
the Beat task body) in two worker processes at once: real concurrent claims
with SKIP LOCKED. Every send goes through channels.send: the consent gate
with quiet hours on (a tenth of the contacts are inside them and are
deferred), a frequency cap rule, the approved template rendered, the outbox
row written and delivery published to the broker on commit. The tick decides
each send of a batch in memory (channels.SendBatch) and writes the batch's
outbox rows and events in one statement each, so the queries per batch stay
flat (`queries`: batch of 20 vs 200).

Target (issue 23): 0.35x the multi-row INSERT baseline of the same run."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import statistics
import subprocess
import sys
import time

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench import fixtures
from bench.common import autovacuum_standin, cpu_snapshot, cpu_used, of_median_run, target

SIZE = 1_000_000  # the size (--full)
DEFAULT_SIZE = 20_000  # keeps `make bench` under 10 minutes on the 2-core machine
TARGET_RATIO = 0.35  # of the multi-row INSERT baseline
JOURNEY = "bench-scheduler"
STEP = "sms"
QUIET_SHARE = 10  # one contact in QUIET_SHARE sits inside quiet hours
DEADLINE_SECONDS = 1800


def setup(size: int) -> dict:
    from consent.models import QuietHoursRule
    from journeys.models import CapRule

    fixtures.approved_template("bench-reminder-sms", "sms", "operational", fixtures.SMS_CONTENT, fixtures.FIRST_NAME)
    journey = fixtures.live_journey(JOURNEY, {
        "trigger": {"event": "bench.scheduler_never"},
        "steps": [{"key": STEP, "type": "send", "template": "bench-reminder-sms"}],
    })
    QuietHoursRule.objects.get_or_create(name="bench sms quiet hours", defaults={
        "channel": "sms", "start": dt.time(21, 0), "end": dt.time(8, 0)})
    CapRule.objects.get_or_create(name="bench sms cap", defaults={
        "channel": "sms", "max_messages": 3, "window_hours": 24})
    tag = fixtures.unique_tag()
    quiet = size // QUIET_SHARE
    day, night = fixtures.zone_at_local_hour(13), fixtures.zone_at_local_hour(23)
    day_first, day_last = fixtures.copy_contacts(size - quiet, prefix=f"sch{tag}d", timezone=day)
    night_first, night_last = fixtures.copy_contacts(quiet, prefix=f"sch{tag}n", timezone=night)
    fixtures.analyze("consent_contact")
    contacts = list(range(day_first, day_last + 1)) + list(range(night_first, night_last + 1))
    return {"journey": journey, "contacts": contacts}


ENROLLMENT_COLUMNS = ["journey_id", "version_id", "contact_id", "status", "is_control", "context", "current_step",
                      "current_step_type", "send_pending", "visits", "next_run_at", "entered_at", "end_reason",
                      "created_at"]


def load_enrollments(state: dict) -> None:
    """Fresh due enrollments for every contact (and an empty outbox)."""
    from journeys.models import Enrollment

    fixtures.truncate("journeys_stepexecution", "journeys_entrydecision", "journeys_enrollment",
                      "channels_deliveryevent", "channels_outboundmessage")
    journey = state["journey"]
    now = dt.datetime.now(dt.UTC)
    due, entered = (now - dt.timedelta(minutes=1)).isoformat(), (now - dt.timedelta(hours=1)).isoformat()
    visits = json.dumps({STEP: 1})
    rows = ((journey.pk, journey.live_version_id, contact_id, "active", "f", "{}", STEP, "send", "t", visits, due,
             entered, "", entered) for contact_id in state["contacts"])
    fixtures.copy_model_rows(Enrollment, ENROLLMENT_COLUMNS, rows)
    fixtures.analyze("journeys_enrollment")


def start_tickers(count: int) -> list[subprocess.Popen]:
    workers = [
        subprocess.Popen([sys.executable, "-m", "bench.workers", "tick"], env={**os.environ}, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    for worker in workers:
        line = worker.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"tick worker did not start: {line!r}")
    return workers


def read_report(worker: subprocess.Popen, deadline: float) -> dict:
    """The counts a tick worker prints when nothing is left due."""
    ready, _, _ = select.select([worker.stdout], [], [], max(0.0, deadline - time.monotonic()))
    line = worker.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError("a tick worker ended or ran out of time without its counts")
    return json.loads(line)


def one_run(state: dict, workers_count: int = 2) -> dict:
    load_enrollments(state)
    workers = start_tickers(workers_count)
    try:
        with autovacuum_standin() as maintenance:
            cpu_before = cpu_snapshot()
            start = time.perf_counter()
            for worker in workers:
                worker.stdin.write("go\n")
                worker.stdin.flush()
            deadline = time.monotonic() + DEADLINE_SECONDS
            reports = [read_report(worker, deadline) for worker in workers]
            seconds = time.perf_counter() - start
            cpu_after = cpu_snapshot()
        for worker in workers:
            worker.communicate(timeout=60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                fixtures.stop_process(worker)
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM journeys_enrollment GROUP BY status")
        enrollments = dict(cursor.fetchall())
        cursor.execute("SELECT status, count(*) FROM channels_outboundmessage GROUP BY status")
        messages = dict(cursor.fetchall())
    advanced = sum(r["advanced"] for r in reports)
    return {"advanced": advanced, "seconds": seconds, "per_worker": [r["advanced"] for r in reports],
            "enrollments": enrollments, "messages": messages,
            "cpu": cpu_used(cpu_before, cpu_after, max(advanced, 1)), "autovacuum_standin": maintenance}


def query_counts(state: dict) -> dict:
    """Queries for one tick batch, at two batch sizes: the count per batch
    should not grow with it (this says where the per-row cost is)."""
    from django.utils import timezone

    from journeys.engine import advance

    load_enrollments(state)
    counts = {}
    for size in (20, 200):
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            advanced = advance(now=timezone.now(), batch_size=size)
            seconds = time.perf_counter() - started
        counts[f"batch_{size}"] = {"queries": len(ctx.captured_queries), "advanced": advanced,
                                   "queries_per_enrollment": round(len(ctx.captured_queries) / max(advanced, 1), 2),
                                   "ms_per_enrollment": round(seconds * 1000 / max(advanced, 1), 2)}
    return counts


def run(*, runs: int, scale: float, baselines: dict, full: bool = False) -> dict:
    size = max(200, int((SIZE if full else DEFAULT_SIZE) * scale))
    state = setup(size)
    try:
        queries = query_counts(state)
        results = [one_run(state) for _ in range(runs)]
    finally:
        fixtures.purge_broker()
    rates = [r["advanced"] / r["seconds"] for r in results]
    rate = statistics.median(rates)
    insert = baselines.get("insert_rows_per_s") or 0
    complete = all(r["advanced"] == size for r in results)
    ratio = round(rate / insert, 3) if insert else None
    return {
        "scenario": "scheduler",
        "size": size, "full_size": SIZE, "tick_processes": 2,
        "rate": round(rate), "unit": "enrollments/s advanced (gate, cap, quiet hours, render, outbox row)",
        "baseline": {"insert_rows_per_s": insert}, "ratio_to_insert": ratio,
        "targets": [target("scheduler: enrollments advanced / multi-row INSERT", ratio, TARGET_RATIO,
                           holds=complete)],
        "complete": complete,
        "cpu_of_median_run": of_median_run(rates, results, "cpu"),
        "runs": [{"per_s": round(rate_), "seconds": round(r["seconds"], 2), "per_worker": r["per_worker"],
                  "enrollments": r["enrollments"], "messages": r["messages"], "cpu": r["cpu"],
                  "autovacuum_standin": r["autovacuum_standin"]}
                 for rate_, r in zip(rates, results, strict=True)],
        "queries": queries,
    }
