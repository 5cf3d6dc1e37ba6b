"""Scenario 5, the weekly audit export of a big week: messages made with COPY
inside one ISO week, a third of them with a suppressed status event, then
`manage.py export_audit --week` in its own process, whose peak RSS is the
export's memory. The baseline is the same command on an empty week in the same
run (Django, the apps and openpyxl loaded, nothing streamed): the ratio says
what streaming a big week adds.

Target (issue 20, issue 23): under 250 MB peak RSS for 1,000,000 messages
(--full); the default is 200,000."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.db import connection

from bench import fixtures
from bench.common import BENCH_BROKER_URL, BENCH_DATABASE_URL, target
from bench.scenarios.admin_pages import CONTENT

FULL = 1_000_000
DEFAULT = 200_000
TARGET_MB = 250
EXPORT_ROOT = str(Path(tempfile.gettempdir()) / "bench-exports")
WEEK, EMPTY_WEEK = "2026-W10", "2026-W02"
MONDAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
COLUMNS = ["contact_id", "channel", "address", "template_key", "locale", "content", "render_data", "message_class",
           "origin_kind", "origin_step_key", "origin_label", "decision_reason", "decision_detail", "idempotency_key",
           "status", "status_changed_at", "provider", "provider_message_id", "attempts", "error", "is_test",
           "created_at"]


def add_week(n: int, contacts: tuple[int, int], tag: str) -> None:
    from channels.models import OutboundMessage

    first, last = contacts
    span, step = last - first + 1, 7 * 86400 / n

    def rows():
        for i in range(n):
            at = (MONDAY + dt.timedelta(seconds=i * step)).isoformat()
            contact = first + (i * 7919) % span
            status = "suppressed" if i % 3 == 0 else "delivered"
            yield (contact, "sms", f"+1{4_150_000_000 + contact}", "appointment-reminder-sms", "en", CONTENT, "{}",
                   "operational", "api", "", "api key bench", "consent_missing" if status == "suppressed" else
                   "no_consent_needed", "", f"exp-{tag}-{i}", status, at, "twilio", f"SM{tag}{i}", 1, "", "f", at)

    fixtures.copy_model_rows(OutboundMessage, COLUMNS, rows(), chunk=50_000)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO channels_deliveryevent (message_id, kind, old_status, status, detail, provider, payload, "
            "received_at) SELECT id, 'status', '', status, 'consent_missing: sms/marketing', '', '{}', created_at "
            "FROM channels_outboundmessage WHERE idempotency_key LIKE %s AND status = 'suppressed'", [f"exp-{tag}-%"])


def export(week: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one `export_audit` process: its VmHWM,
    since ru_maxrss survives exec and would report the parent's peak."""
    env = {**os.environ, "DATABASE_URL": BENCH_DATABASE_URL, "CELERY_BROKER_URL": BENCH_BROKER_URL,
           "AUDIT_EXPORT_ROOT": EXPORT_ROOT, "WORKSPACE_TIMEZONE": "UTC"}
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-c", (
        "import sys, django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
        "django.setup(); from django.core.management import call_command; "
        f"call_command('export_audit', '--week', '{week}'); "
        "print('PEAK', next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')), "
        "file=sys.stderr)")],
        env=env, capture_output=True, text=True, check=False)
    if process.returncode:
        raise RuntimeError(f"export_audit failed: {process.stderr[-2000:]}")
    seconds = time.perf_counter() - started
    peak = next(int(line.split()[1]) for line in process.stderr.splitlines() if line.startswith("PEAK"))
    return seconds, round(peak / 1024, 1)


def run(*, runs: int, scale: float, baselines: dict, full: bool = False) -> dict:
    n = max(1000, int((FULL if full else DEFAULT) * scale))
    fixtures.truncate("channels_outboundmessage", "consent_contact")
    tag = fixtures.unique_tag()
    contacts = fixtures.copy_contacts(max(100, n // 10), prefix=f"exp{tag}")
    add_week(n, contacts, tag)
    fixtures.analyze("consent_contact", "channels_outboundmessage", "channels_deliveryevent")
    results = []
    for _ in range(runs):
        empty_s, empty_mb = export(EMPTY_WEEK)
        seconds, peak_mb = export(WEEK)
        results.append((seconds, peak_mb, empty_mb))
    results.sort()
    seconds, peak_mb, empty_mb = results[len(results) // 2]
    rows = n + n // 3 + (1 if n % 3 else 0)
    return {
        "scenario": "audit_export", "size": {"messages": n, "decisions": rows - n}, "full_size": FULL,
        "rate": round(rows / seconds), "unit": "rows/s written (CSV and XLSX)",
        "peak_rss_mb": peak_mb, "baseline_peak_rss_mb": empty_mb, "rss_ratio": round(peak_mb / empty_mb, 2),
        "copy_ratio": round(rows / seconds / baselines["copy_rows_per_s"], 3) if baselines.get("copy_rows_per_s")
        else None,
        "targets": [target(f"audit export: peak RSS at {n:,} messages", peak_mb, TARGET_MB, below=True, unit=" MB")],
        "runs": [{"seconds": round(s, 1), "peak_rss_mb": p, "empty_week_rss_mb": e} for s, p, e in results],
    }
