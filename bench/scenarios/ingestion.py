"""Scenario 1, ingestion: N events in batches of 1,000 POSTed to
/api/v1/events/ on gunicorn (the production WSGI server), each matching an
active journey's trigger. Clocks: until every event is accepted (stored,
deduplicated) and until every enrollment exists, processed the production
way (the process_events task a commit enqueues, run by a 2-process Celery
worker). Contacts already exist (synced from a CRM), made with COPY.

Target (issue 23): enrollments created at 0.6x the multi-row INSERT
baseline of the same run."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench import fixtures
from bench.baselines import start_worker, stop_worker
from bench.common import autovacuum_standin, cpu_snapshot, cpu_used, of_median_run, target

SIZE = 200_000  # the size (--full)
DEFAULT_SIZE = 50_000  # keeps `make bench` under 10 minutes on the 2-core machine
BATCH = 1_000
CLIENTS = 4  # concurrent HTTP clients
GUNICORN_WORKERS = 3
TARGET_RATIO = 0.6  # enrollments created, of the multi-row INSERT baseline
JOURNEY = "bench-ingest"
EVENT = "bench.signed_up"
DEADLINE_SECONDS = 900


def setup(size: int) -> dict:
    from config.models import ApiKey

    fixtures.approved_template("bench-ingest-sms", "sms", "operational", fixtures.SMS_CONTENT, fixtures.FIRST_NAME)
    journey = fixtures.live_journey(JOURNEY, {
        "trigger": {"event": EVENT},
        "steps": [
            {"key": "wait-1d", "type": "wait", "duration": "1d"},
            {"key": "sms", "type": "send", "template": "bench-ingest-sms"},
        ],
    })
    tag = fixtures.unique_tag()
    fixtures.copy_contacts(size, prefix=f"ing{tag}")
    fixtures.analyze("consent_contact")
    _key_obj, key = ApiKey.objects.create_key(name=f"bench-{tag}", scopes=["events:write"], rate_limit_per_minute=10**6)
    return {"journey_id": journey.pk, "prefix": f"ing{tag}", "key": key}


def payloads(size: int, prefix: str, run: int) -> list[bytes]:
    now = dt.datetime.now(dt.UTC).isoformat()
    bodies = []
    for start in range(0, size, BATCH):
        events = [
            {"name": EVENT, "contact": {"external_id": f"{prefix}-{i}"}, "occurred_at": now,
             "idempotency_key": f"{prefix}-r{run}-{i}", "properties": {"plan": "pro", "source": "bench"}}
            for i in range(start, min(size, start + BATCH))
        ]
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def start_gunicorn(port: int) -> subprocess.Popen:
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    process = subprocess.Popen(
        [gunicorn, "config.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(GUNICORN_WORKERS),
         "--timeout", "120", "--log-level", "warning"],
        env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    fixtures.wait_for_port(port)
    return process


def post_all(port: int, key: str, bodies: list[bytes]) -> tuple[int, int, list[str]]:
    """CLIENTS threads POST the batches (bounded: each body once, 120 s timeout)."""
    work: queue.Queue = queue.Queue()
    for body in bodies:
        work.put(body)
    totals = {"accepted": 0, "duplicates": 0}
    errors: list[str] = []
    lock = threading.Lock()

    def client():
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                conn.request("POST", "/api/v1/events/", body=body, headers={
                    "Content-Type": "application/json", "Authorization": f"Api-Key {key}", "Host": "127.0.0.1"})
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            with lock:
                if response.status != 202:
                    errors.append(f"{response.status}: {data[:300]!r}")
                    continue
                answer = json.loads(data)
                totals["accepted"] += answer["accepted"]
                totals["duplicates"] += answer["duplicates"]

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return totals["accepted"], totals["duplicates"], errors


def warm_up(port: int, key: str) -> None:
    """A refused (400) request per worker before the clock starts: each gunicorn
    worker imports and connects on its first request, which is start-up, not
    ingestion. Nothing is stored."""
    def refused() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", "/api/v1/events/", body=b'{"events": []}', headers={
                "Content-Type": "application/json", "Authorization": f"Api-Key {key}", "Host": "127.0.0.1"})
            conn.getresponse().read()
        finally:
            conn.close()

    threads = [threading.Thread(target=refused) for _ in range(GUNICORN_WORKERS * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def any_unprocessed() -> bool:
    """An event not processed yet (the partial index the processor claims from):
    its enrollment is written in the same transaction that marks it processed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM journeys_event WHERE processed_at IS NULL)")
        return cursor.fetchone()[0]


def count_enrollments(journey_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM journeys_enrollment WHERE journey_id = %s", [journey_id])
        return cursor.fetchone()[0]


def reset() -> None:
    fixtures.truncate("journeys_entrydecision", "journeys_stepexecution", "journeys_enrollment", "journeys_event")


def one_run(size: int, state: dict, run: int, port: int) -> dict:
    reset()
    bodies = payloads(size, state["prefix"], run)
    worker = start_worker(concurrency=2)
    warm_up(port, state["key"])
    try:
        with autovacuum_standin() as maintenance:
            cpu_before = cpu_snapshot()
            start = time.perf_counter()
            accepted, duplicates, errors = post_all(port, state["key"], bodies)
            accepted_s = time.perf_counter() - start
            deadline = time.monotonic() + DEADLINE_SECONDS
            enrolled = 0
            while time.monotonic() < deadline:
                # Cheap probe first: counting 200,000 enrollments ten times a second took a
                # good share of the same 2 cores the processor runs on.
                if not any_unprocessed():
                    enrolled = count_enrollments(state["journey_id"])
                    if enrolled >= size:
                        break
                time.sleep(0.1)
            enrolled_s = time.perf_counter() - start
            cpu_after = cpu_snapshot()
    finally:
        stop_worker(worker)
    # Deduplication: the same batch again is accepted as duplicates only.
    again, again_dupes, _ = post_all(port, state["key"], bodies[:1])
    return {"accepted": accepted, "duplicates": duplicates, "errors": errors[:3], "accepted_s": accepted_s,
            "enrolled": enrolled, "enrolled_s": enrolled_s, "resend_accepted": again, "resend_duplicates": again_dupes,
            "cpu": cpu_used(cpu_before, cpu_after, max(accepted, 1)), "autovacuum_standin": maintenance}


def query_counts(state: dict) -> dict:
    """Queries for one 1,000-event request (in process, test client) and for
    processing one batch of them, at two batch sizes: a fixed number per batch."""
    from django.conf import settings
    from django.utils import timezone
    from rest_framework.test import APIClient

    from journeys.events import process_events

    reset()
    client = APIClient()
    counts = {}
    for size in (100, 1000):
        body = json.loads(payloads(size, state["prefix"], run=900 + size)[0])
        with CaptureQueriesContext(connection) as ctx:
            response = client.post("/api/v1/events/", body, format="json", HTTP_AUTHORIZATION=f"Api-Key {state['key']}",
                                   HTTP_HOST="127.0.0.1")
        assert response.status_code == 202, response.content[:300]
        counts[f"request_{size}_events"] = len(ctx.captured_queries)
        with CaptureQueriesContext(connection) as ctx:
            process_events(now=timezone.now() + dt.timedelta(seconds=1), batch_size=size)
        counts[f"process_{size}_events"] = len(ctx.captured_queries)
    counts["event_batch_size_setting"] = settings.JOURNEYS_EVENT_BATCH_SIZE
    reset()
    return counts


def run(*, runs: int, scale: float, baselines: dict, full: bool = False) -> dict:
    size = max(BATCH, int((SIZE if full else DEFAULT_SIZE) * scale) // BATCH * BATCH)
    state = setup(size)
    port = fixtures.free_port()
    server = start_gunicorn(port)
    try:
        results = [one_run(size, state, run, port) for run in range(runs)]
    finally:
        fixtures.stop_process(server)
        fixtures.purge_broker()
    queries = query_counts(state)
    fixtures.purge_broker()
    accepted_rates = [r["accepted"] / r["accepted_s"] for r in results]
    enrolled_rates = [r["enrolled"] / r["enrolled_s"] for r in results]
    accepted_rate = statistics.median(accepted_rates)
    enrolled_rate = statistics.median(enrolled_rates)
    insert = baselines.get("insert_rows_per_s") or 0
    complete = all(r["accepted"] == size and r["enrolled"] == size and not r["errors"] for r in results)
    deduplicated = all(r["resend_accepted"] == 0 and r["resend_duplicates"] == BATCH for r in results)
    enrolled_ratio = round(enrolled_rate / insert, 3) if insert else None
    return {
        "scenario": "ingestion",
        "size": size, "full_size": SIZE, "batch": BATCH, "clients": CLIENTS, "gunicorn_workers": GUNICORN_WORKERS,
        "celery_processes": 2,
        "rate": round(accepted_rate), "unit": "events/s accepted (stored, deduplicated)",
        "enrolled_rate": round(enrolled_rate), "enrolled_unit": "enrollments/s (first POST to last enrollment)",
        "baseline": {"insert_rows_per_s": insert},
        "ratio_to_insert": round(accepted_rate / insert, 3) if insert else None,
        "enrolled_ratio_to_insert": enrolled_ratio,
        "targets": [target("ingestion: enrollments created / multi-row INSERT", enrolled_ratio, TARGET_RATIO,
                           holds=complete and deduplicated)],
        "complete": complete, "deduplicated_on_resend": deduplicated,
        "cpu_of_median_run": of_median_run(enrolled_rates, results, "cpu"),
        "runs": [{"accepted_per_s": round(a), "enrolled_per_s": round(e), "accepted_s": round(r["accepted_s"], 2),
                  "enrolled_s": round(r["enrolled_s"], 2), "errors": r["errors"], "cpu": r["cpu"],
                  "autovacuum_standin": r["autovacuum_standin"]}
                 for a, e, r in zip(accepted_rates, enrolled_rates, results, strict=True)],
        "queries": queries,
    }
