"""Scenario 4, admin and agent pages on a big outbox: the message log
(changelist), the log searched by a provider's message id, a contact's page
and a support case's page, for a contact with 20,000 messages. Server time is the median of 20 requests through
Django's test client (in process: the view, its queries and the template,
no network), after one warm-up request; the query count of each page is
taken at a small size and again at the large one, to show it does not grow.
Contacts and messages are made with COPY.

Target (issue 7): each page under 200 ms with 5,000,000 messages and
1,000,000 contacts (--full); the default is 300,000 messages and 100,000 contacts."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench import fixtures
from bench.common import target

FULL = {"contacts": 1_000_000, "messages": 5_000_000}
DEFAULT = {"contacts": 100_000, "messages": 300_000}
SMALL_SHARE = 10  # the small size is a tenth of the large one
HEAVY_MESSAGES = 20_000
REQUESTS = 20
TARGET_MS = 200

MESSAGE_COLUMNS = ["contact_id", "channel", "address", "template_key", "locale", "content", "render_data",
                   "message_class", "origin_kind", "origin_step_key", "origin_label", "decision_reason",
                   "decision_detail", "idempotency_key", "status", "status_changed_at", "provider",
                   "provider_message_id", "attempts", "error", "is_test", "created_at"]
CONTENT = json.dumps({"body": "Hi Ana, your appointment is tomorrow at 10:00. Reply C to confirm.",
                      "encoding": "GSM-7", "segments": 1})
STATUSES = ["delivered"] * 7 + ["sent", "failed", "suppressed"]


def add_messages(contacts: tuple[int, int], n: int, *, tag: str, heavy: int | None = None) -> None:
    """n messages spread over the contacts, newest last; `heavy` gets
    HEAVY_MESSAGES of them spread through time."""
    from channels.models import OutboundMessage

    first, last = contacts
    span = last - first + 1
    now = dt.datetime.now(dt.UTC)
    every = max(1, n // HEAVY_MESSAGES) if heavy else 0

    def rows():
        for i in range(n):
            is_heavy = heavy and i % every == 0 and i < HEAVY_MESSAGES * every
            contact = heavy if is_heavy else first + (i * 7919) % span
            at = (now - dt.timedelta(seconds=(n - i) * 5)).isoformat()
            sms = i % 3 != 0
            yield (contact, "sms" if sms else "email", f"+1{4_150_000_000 + contact}" if sms else f"c{contact}@x.io",
                   "appointment-reminder-sms" if sms else "appointment-reminder-email", "en", CONTENT, "{}",
                   "operational", "journey", "sms-24h", "appointment-reminders v1 · step sms-24h", "no_consent_needed",
                   "", f"adm-{tag}-{i}", STATUSES[i % 10], at, "twilio", f"SM{tag}{i}", 1, "", "f", at)

    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    fixtures.copy_model_rows(OutboundMessage, MESSAGE_COLUMNS, rows(), chunk=50_000)


def heavy_count(contact_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_outboundmessage WHERE contact_id = %s", [contact_id])
        return cursor.fetchone()[0]


def pages(heavy: int, case_id: int, tag: str) -> dict[str, str]:
    return {
        "message_log": "/admin/channels/outboundmessage/",
        # An agent pastes a provider's message id: one row among all of them.
        "message_log_search": f"/admin/channels/outboundmessage/?q=SM{tag}s1",
        "contact_page": f"/admin/consent/contact/{heavy}/change/",
        "case_page": f"/admin/support/supportcase/{case_id}/change/",
    }


def measure(client: Client, url: str) -> dict:
    response = client.get(url, HTTP_HOST="127.0.0.1", secure=True)  # warm-up
    if response.status_code != 200:
        raise AssertionError(f"{url} answered {response.status_code}")
    with CaptureQueriesContext(connection) as ctx:
        client.get(url, HTTP_HOST="127.0.0.1", secure=True)
    queries = len(ctx.captured_queries)
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url, HTTP_HOST="127.0.0.1", secure=True)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1), "queries": queries,
            "runs_ms": [round(t, 1) for t in times]}


def measure_all(client: Client, urls: dict[str, str]) -> dict:
    return {name: measure(client, url) for name, url in urls.items()}


def open_case(heavy: int) -> int:
    from consent.models import Contact
    from support.services import case_open

    case = case_open(contact=Contact.objects.get(pk=heavy), subject="Where is my appointment?", category="other",
                     priority="normal", source="admin", actor="bench")
    return case.pk


def run(*, runs: int, scale: float, baselines: dict, full: bool = False) -> dict:
    sizes = FULL if full else DEFAULT
    contacts_n = max(1000, int(sizes["contacts"] * scale))
    messages_n = max(HEAVY_MESSAGES * 4, int(sizes["messages"] * scale))
    small_n = max(HEAVY_MESSAGES * 2, messages_n // SMALL_SHARE)
    tag = fixtures.unique_tag()
    fixtures.truncate("channels_deliveryevent", "channels_outboundmessage")
    small_contacts = fixtures.copy_contacts(contacts_n // SMALL_SHARE, prefix=f"adm{tag}s")
    heavy = small_contacts[0]
    started = time.perf_counter()
    add_messages(small_contacts, small_n, tag=f"{tag}s", heavy=heavy)
    fixtures.analyze("consent_contact", "channels_outboundmessage")
    case_id = open_case(heavy)
    client = Client()
    client.force_login(fixtures.superuser())
    urls = pages(heavy, case_id, tag)
    small = measure_all(client, urls)
    small_heavy = heavy_count(heavy)
    rest = fixtures.copy_contacts(contacts_n - contacts_n // SMALL_SHARE, prefix=f"adm{tag}l")
    add_messages(rest, messages_n - small_n, tag=f"{tag}l")
    fixtures.analyze("consent_contact", "channels_outboundmessage")
    generate_s = time.perf_counter() - started
    large = measure_all(client, urls)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_outboundmessage")
        total_messages = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM consent_contact")
        total_contacts = cursor.fetchone()[0]
    worst = max(page["median_ms"] for page in large.values())
    flat = all(large[name]["queries"] == small[name]["queries"] for name in urls)
    return {
        "scenario": "admin_pages",
        "size": {"messages": total_messages, "contacts": total_contacts, "heavy_contact_messages": heavy_count(heavy)},
        "small_size": {"messages": small_n, "heavy_contact_messages": small_heavy},
        "full_size": FULL,
        "rate": worst, "unit": "ms median server time of the slowest page (20 requests, test client)",
        "query_count_flat": flat,
        "targets": [target(f"admin: {name} at {total_messages:,} messages, median", large[name]["median_ms"],
                           TARGET_MS, below=True, unit=" ms", holds=flat) for name in urls],
        "pages": {name: {"median_ms": large[name]["median_ms"], "max_ms": large[name]["max_ms"],
                         "queries": large[name]["queries"], "small_median_ms": small[name]["median_ms"],
                         "small_queries": small[name]["queries"]} for name in urls},
        "runs": {name: large[name]["runs_ms"] for name in urls},
        "generate_s": round(generate_s, 1),
        "baseline": {"copy_rows_per_s": baselines.get("copy_rows_per_s")},
    }
