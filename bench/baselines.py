"""Baselines measured in the same run on the same database and broker:
plain psycopg multi-row INSERT and COPY of rows shaped like an outbox row,
and a Celery no-op task round trip through a real worker."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid

import psycopg
import redis

from bench.common import BENCH_BROKER_URL, BENCH_DATABASE_URL, stopwatch

ROW_TABLE = """
CREATE UNLOGGED TABLE IF NOT EXISTS bench_baseline_rows (
    id bigserial PRIMARY KEY, contact_id bigint NOT NULL, channel varchar(16) NOT NULL,
    address varchar(254) NOT NULL, status varchar(16) NOT NULL, idempotency_key varchar(200) UNIQUE NOT NULL,
    content jsonb NOT NULL, created_at timestamptz NOT NULL
)
"""
# Unlogged would flatter the baseline against our logged tables; use a logged one.
ROW_TABLE = ROW_TABLE.replace("UNLOGGED ", "")


def _rows(n: int, tag: str):
    now = dt.datetime.now(dt.UTC)
    content = json.dumps({"body": "Hi there, your appointment is tomorrow at 10:00. Reply C to confirm."})
    for i in range(n):
        yield (i, "sms", f"+1415555{i % 10000:04d}", "queued", f"{tag}-{i}", content, now)


def _reset(conn) -> None:
    conn.execute(ROW_TABLE)
    conn.execute("TRUNCATE bench_baseline_rows")
    conn.commit()


def insert_rate(n: int, batch: int = 1000) -> tuple[int, float]:
    """Multi-row INSERT, one transaction per batch: the write limit."""
    with psycopg.connect(BENCH_DATABASE_URL) as conn:
        _reset(conn)
        rows = list(_rows(n, uuid.uuid4().hex))
        sql_head = ("INSERT INTO bench_baseline_rows (contact_id, channel, address, status, idempotency_key, content,"
                    " created_at) VALUES ")
        with stopwatch() as clock:
            for start in range(0, n, batch):
                chunk = rows[start:start + batch]
                placeholders = ",".join(["(%s,%s,%s,%s,%s,%s,%s)"] * len(chunk))
                conn.execute(sql_head + placeholders, [v for row in chunk for v in row])
                conn.commit()
    return n, clock["seconds"]


def copy_rate(n: int) -> tuple[int, float]:
    with psycopg.connect(BENCH_DATABASE_URL) as conn:
        _reset(conn)
        rows = list(_rows(n, uuid.uuid4().hex))
        with stopwatch() as clock:
            with conn.cursor() as cursor, cursor.copy(
                "COPY bench_baseline_rows (contact_id, channel, address, status, idempotency_key, content, created_at)"
                " FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
    return n, clock["seconds"]


def start_worker(concurrency: int = 2, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "CELERY_BROKER_URL": BENCH_BROKER_URL, "REDIS_URL": BENCH_BROKER_URL,
           "DATABASE_URL": BENCH_DATABASE_URL, **(extra_env or {})}
    celery = os.path.join(os.path.dirname(sys.executable), "celery")
    worker = subprocess.Popen(
        [celery, "-A", "config", "worker", "--concurrency", str(concurrency), "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(4)  # let the pool start before the clock does
    return worker


def stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def celery_noop_rate(n: int) -> tuple[int, float]:
    """Publish n no-op tasks and wait until a 2-process worker has run them all."""
    from config.tasks import noop

    counter = redis.Redis.from_url(BENCH_BROKER_URL)
    key = f"bench:noop:{uuid.uuid4().hex}"
    worker = start_worker()
    try:
        with stopwatch() as clock:
            for _ in range(n):
                noop.delay(key)
            deadline = time.monotonic() + 600
            while int(counter.get(key) or 0) < n and time.monotonic() < deadline:
                time.sleep(0.02)
        done = int(counter.get(key) or 0)
    finally:
        stop_worker(worker)
        counter.delete(key)
    return done, clock["seconds"]
