"""`make bench`: recreate the bench database, measure the baselines, then run
each scenario in its own process (so its peak memory is its own) and print
one JSON object per line, then a table of every target (issue 23): the
value, the target and whether it was met.

    python -m bench.run [--only NAME ...] [--runs 3] [--scale 1.0] [--full]

Each scenario has a default size meant to keep `make bench` under 10 minutes
on the 2-core machine, and the issue's full size
(`--full`); `--scale` multiplies either (0.05 for a quick look)."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import subprocess
import sys
from urllib.parse import urlparse

import psycopg

from bench.common import BENCH_DATABASE_URL, emit, median_rate

BASELINE_ROWS = 200_000
BASELINE_TASKS = 3_000  # one task each: on a loaded 2-core box the no-op round trip runs at 60-750/s


def recreate_database() -> None:
    parsed = urlparse(BENCH_DATABASE_URL)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env_python = [sys.executable, "-c",
                  "from bench.common import configure_django; configure_django(); "
                  "from django.core.management import call_command; call_command('migrate', verbosity=0)"]
    subprocess.run(env_python, check=True)


def measure_baselines(runs: int, scale: float) -> dict[str, float]:
    from bench import baselines
    from bench.common import configure_django

    configure_django()
    rows = max(1000, int(BASELINE_ROWS * scale))
    tasks = max(500, int(BASELINE_TASKS * scale))
    insert, insert_runs = median_rate(runs, lambda: baselines.insert_rate(rows))
    copy, copy_runs = median_rate(runs, lambda: baselines.copy_rate(rows))
    noop, noop_runs = median_rate(runs, lambda: baselines.celery_noop_rate(tasks))
    measured = {"insert_rows_per_s": round(insert), "copy_rows_per_s": round(copy),
                "celery_noop_tasks_per_s": round(noop)}
    emit({"scenario": "baseline.insert", "rate": round(insert), "unit": "rows/s", "size": rows, "runs": insert_runs})
    emit({"scenario": "baseline.copy", "rate": round(copy), "unit": "rows/s", "size": rows, "runs": copy_runs})
    emit({"scenario": "baseline.celery_noop", "rate": round(noop), "unit": "tasks/s", "size": tasks,
          "runs": noop_runs, "note": "2 prefork processes, one task per message, Redis broker"})
    return measured


def scenario_names() -> list[str]:
    import bench.scenarios

    return sorted(m.name for m in pkgutil.iter_modules(bench.scenarios.__path__))


def run_scenario(name: str, runs: int, scale: float, baselines: dict[str, float], full: bool = False) -> list[dict]:
    """Each scenario runs in a fresh process: `python -m bench.run --child NAME`.
    Its lines are passed on as they come; returns the targets it reported."""
    args = [sys.executable, "-m", "bench.run", "--child", name, "--runs", str(runs), "--scale", str(scale),
            "--baselines", json.dumps(baselines), *(["--full"] if full else [])]
    targets = []
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as child_process:
        for line in child_process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith("{"):
                result = json.loads(line)
                targets += [{**t, "peak_rss_mb": result.get("peak_rss_mb")} for t in result.get("targets", [])]
    if child_process.returncode:
        targets.append({"what": f"{name}: the scenario failed (exit {child_process.returncode})", "value": None,
                        "target": "", "met": False, "peak_rss_mb": None})
    return targets


def print_targets(targets: list[dict]) -> None:
    """The issue's targets as a table, after the JSON lines."""
    rows = [("target", "measured", "wanted", "met", "peak RSS MB")]
    rows += [(t["what"], "" if t["value"] is None else f"{t['value']:g}", t["target"], "yes" if t["met"] else "NO",
              "" if t["peak_rss_mb"] is None else f"{t['peak_rss_mb']:g}") for t in targets]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def child(name: str, runs: int, scale: float, baselines: dict[str, float], full: bool = False) -> None:
    from bench.common import configure_django

    configure_django()
    module = importlib.import_module(f"bench.scenarios.{name}")
    emit(module.run(runs=runs, scale=scale, baselines=baselines, full=full))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help=f"scenarios to run (default all): {', '.join(scenario_names())}")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--full", action="store_true", help="the issue's full sizes (longer than 10 minutes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--baselines", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.runs, args.scale, json.loads(args.baselines), args.full)
        return
    unknown = set(args.only or []) - set(scenario_names())
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    recreate_database()
    measured = measure_baselines(args.runs, args.scale)
    targets = []
    for name in args.only or scenario_names():
        targets += run_scenario(name, args.runs, args.scale, measured, args.full)
    print_targets(targets)


if __name__ == "__main__":
    main()
