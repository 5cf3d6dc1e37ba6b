"""Shared pieces of the benchmark harness: the bench database, timing,
peak memory, CPU time by process group, and the JSON line each scenario
prints."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import threading
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


# Every process on the machine falls in the first group whose marker its command line holds.
CPU_GROUPS = [
    ("fake providers", "bench.fakes"),
    ("tick processes", "bench.workers"),
    ("celery workers", "celery"),
    ("gunicorn", "gunicorn"),
    ("postgresql", "postgres"),
    ("redis", "redis-server"),
]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_snapshot() -> dict:
    """CPU seconds (user + system, its own and its waited-for children's)
    used so far by every process on the machine, by pid with its group, and
    by the machine as a whole. Take one before the clock starts and one
    before the processes measured exit (a process gone from the second
    snapshot, and not waited for, takes its time with it; the machine's total
    still has it)."""
    processes = {}
    harness = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        group = "harness" if int(name) == harness else next(
            (label for label, marker in CPU_GROUPS if marker in command), "other")
        # utime, stime, cutime and cstime are fields 14 to 17 of /proc/PID/stat (12 to 15 after the
        # command name); the last two hold the children it has waited for: PostgreSQL's backends
        # and autovacuum workers that exit count in the postmaster's.
        processes[int(name)] = (group, sum(int(value) for value in fields[11:15]) / _CLOCK_TICKS)
    with open("/proc/stat") as stat:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in stat.readline().split()[1:9])
    return {"processes": processes, "machine_busy": (user + nice + system + irq + softirq) / _CLOCK_TICKS,
            "machine_interrupts": (irq + softirq) / _CLOCK_TICKS, "at": time.perf_counter()}


def cpu_used(before: dict, after: dict, items: int) -> dict:
    """CPU milliseconds per item between two snapshots, by process group, and
    how many of the machine's cores were busy on average."""
    by_group: dict[str, float] = {}
    for pid, (group, seconds) in after["processes"].items():
        start = before["processes"].get(pid)
        used = seconds - start[1] if start and start[0] == group else seconds
        by_group[group] = by_group.get(group, 0.0) + used
    for pid, (group, seconds) in before["processes"].items():
        if pid not in after["processes"]:
            # It exited in between: its parent's waited-for time now holds its whole life; only the part
            # after the first snapshot belongs here.
            by_group[group] = by_group.get(group, 0.0) - seconds
    busy = after["machine_busy"] - before["machine_busy"]
    interrupts = after["machine_interrupts"] - before["machine_interrupts"]
    wall = after["at"] - before["at"]
    per_item = {group: round(seconds * 1000 / items, 3) for group, seconds in sorted(by_group.items())
                if seconds * 1000 / items >= 0.001}
    # What no process accounts for: interrupt handling (loopback networking runs
    # largely in softirq), and processes that ended unwaited-for in between. The
    # machine's total is tick-sampled, the processes' times are not, so this can
    # come out slightly negative.
    per_item["interrupts"] = round(interrupts * 1000 / items, 3)
    per_item["unattributed"] = round((busy - interrupts - sum(by_group.values())) * 1000 / items, 3)
    return {"ms_per_item": per_item, "machine_ms_per_item": round(busy * 1000 / items, 3),
            "cores_busy": round(busy / wall, 2) if wall else None}


# Autovacuum's defaults: a table is analyzed once this many of its rows changed
# since its last ANALYZE, vacuumed once this many are dead.
ANALYZE_THRESHOLD, ANALYZE_SCALE = 50, 0.1
VACUUM_THRESHOLD, VACUUM_SCALE = 50, 0.2
STANDIN_NAPTIME = 5.0
_DUE_TABLES = """
SELECT s.relname,
       s.n_dead_tup > %(vacuum_threshold)s + %(vacuum_scale)s * GREATEST(c.reltuples, 0) AS vacuum
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.n_dead_tup > %(vacuum_threshold)s + %(vacuum_scale)s * GREATEST(c.reltuples, 0)
   OR s.n_mod_since_analyze > %(analyze_threshold)s + %(analyze_scale)s * GREATEST(c.reltuples, 0)
"""


@contextmanager
def autovacuum_standin():
    """Do autovacuum's work while a scenario runs, where the server runs
    without it (this machine's PostgreSQL ships with autovacuum off, which no
    production server does): every STANDIN_NAPTIME seconds, a table past
    autovacuum's default thresholds is vacuumed or analyzed. Without it, a
    table the scenario fills from empty keeps the statistics of an empty
    table, and at a million rows the planner scans it whole (the scheduler at
    full size fell from 5,000 to under 1,500 enrollments/s). Its cost counts
    under PostgreSQL, as autovacuum's would. Yields the counts of what it did."""
    import psycopg

    done = {"vacuum": 0, "analyze": 0}
    with psycopg.connect(BENCH_DATABASE_URL, autocommit=True) as conn:
        if conn.execute("SHOW autovacuum").fetchone()[0] == "on":
            yield done
            return
    thresholds = {"vacuum_threshold": VACUUM_THRESHOLD, "vacuum_scale": VACUUM_SCALE,
                  "analyze_threshold": ANALYZE_THRESHOLD, "analyze_scale": ANALYZE_SCALE}
    stop = threading.Event()

    def work() -> None:
        with psycopg.connect(BENCH_DATABASE_URL, autocommit=True) as conn:
            while not stop.wait(STANDIN_NAPTIME):
                for table, vacuum in conn.execute(_DUE_TABLES, thresholds).fetchall():
                    name = psycopg.sql.Identifier(table)
                    if vacuum:
                        conn.execute(psycopg.sql.SQL("VACUUM (ANALYZE) {}").format(name))
                        done["vacuum"] += 1
                    else:
                        conn.execute(psycopg.sql.SQL("ANALYZE {}").format(name))
                        done["analyze"] += 1

    thread = threading.Thread(target=work, name="autovacuum-standin", daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join()


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


def of_median_run(rates: list[float], results: list[dict], key: str) -> object:
    """`key` of the run whose rate is the median (the lower one of an even count)."""
    return results[rates.index(statistics.median_low(rates))][key]


def target(what: str, value: float | None, goal: float, *, below: bool = False, unit: str = "x",
           holds: bool = True) -> dict:
    """One of issue 23's targets: `value` at least `goal` (a ratio to a
    same-run baseline, by default) or, with `below`, under it. `holds` is
    False when the run did not do the whole job, which fails the target
    whatever the number."""
    met = holds and value is not None and (value < goal if below else value >= goal)
    return {"what": what, "value": value, "target": f"{'<' if below else '>='} {goal:g}{unit}", "met": met}


def emit(result: dict) -> None:
    result.setdefault("peak_rss_mb", peak_rss_mb())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
