"""Scenario 3, delivery: N queued messages, half SMS and half email (made
with COPY), delivered by a 2-process Celery worker through the real adapters
to local fake providers in their own processes: the twilio SDK to an HTTP
server answering Twilio's Messages API, and email through Postmark's batch
API (postmarker, up to 500 messages a call) to a server answering
/email/batch, or with BENCH_EMAIL_ADAPTER=smtp through Django's SMTP
backend to aiosmtpd, one message a call. Ids
are published the production way (channels.services.enqueue_delivery: one
task per CHANNELS_DELIVERY_BATCH_SIZE ids).

The throughput runs give the SMS sender a limit far above what the machine
reaches (so the limit does not set the rate); one more run sets a limit
below it, so it binds, and the fake counts what it received per wall-clock
second: the check that the limit held is made where the provider makes it.

Before the runs, the adapters are measured alone (`adapters_alone`): the
CPU per message of the twilio SDK (its requests client, and its aiohttp
client as delivery uses it), of Django's SMTP backend and of postmarker's
batch call, calling the fakes from one process, with no database and no
Celery. It is the floor under
the workers' CPU per message.

Target (issue 23): 8x the Celery no-op baseline of the same run (one task
per message), with both cores busy."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench import fixtures
from bench.baselines import start_worker, stop_worker
from bench.common import autovacuum_standin, cpu_snapshot, cpu_used, of_median_run, target

SIZE = 200_000  # the size (--full)
DEFAULT_SIZE = 10_000  # keeps `make bench` under 10 minutes on the 2-core machine
CONTACTS = 5_000
TARGET_RATIO = 8  # of the Celery no-op baseline
# Per second, shared by all workers. The check run sets it below the SMS rate this
# machine reaches, so that it binds; the throughput runs set one that never binds.
SMS_RATE_LIMIT = int(os.environ.get("BENCH_SMS_RATE_LIMIT", "25"))
THROUGHPUT_RATE_LIMIT = 100_000
SMS_SENDER = "+14155550100"
EMAIL_SENDER = "bench@example.com"
# Which adapter sends the email half: "postmark" (batch API) or "smtp".
EMAIL_ADAPTER = os.environ.get("BENCH_EMAIL_ADAPTER", "postmark")
EMAIL_ACCOUNTS = {"smtp": "bench smtp email", "postmark": "bench postmark email"}
PROVIDER_ENV = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "bench-token-not-a-secret",
                "POSTMARK_SERVER_TOKEN": "bench-token-not-a-secret"}
DEADLINE_SECONDS = 1800
ADAPTER_MESSAGES = 2_000  # per adapter, for the adapters-alone measurement


def start_fake(kind: str) -> tuple[subprocess.Popen, int]:
    port = fixtures.free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.fakes", kind, str(port)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError(f"fake {kind} did not start")
    return process, port


def stop_fake(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(input="", timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def setup() -> dict:
    """The bench's accounts (their ports are set when the fakes start) and contacts."""
    from channels.models import Adapter, ProviderAccount

    if EMAIL_ADAPTER not in EMAIL_ACCOUNTS:
        raise SystemExit(f"BENCH_EMAIL_ADAPTER must be one of {sorted(EMAIL_ACCOUNTS)}, not {EMAIL_ADAPTER!r}")
    ProviderAccount.objects.update(active=False)
    ProviderAccount.objects.update_or_create(name="bench twilio sms", defaults={
        "channel": "sms", "adapter": Adapter.TWILIO, "sender": SMS_SENDER, "active": True, "priority": 1,
        "rate_limit_per_second": THROUGHPUT_RATE_LIMIT})
    for adapter, name in EMAIL_ACCOUNTS.items():
        ProviderAccount.objects.update_or_create(name=name, defaults={
            "channel": "email", "adapter": adapter, "sender": EMAIL_SENDER, "active": adapter == EMAIL_ADAPTER,
            "priority": 1})
    # Mid-afternoon where the contacts live, whenever the bench runs: quiet hours
    # would otherwise defer the SMS half at night (UTC).
    first, last = fixtures.copy_contacts(CONTACTS, prefix=f"dlv{fixtures.unique_tag()}",
                                         timezone=fixtures.zone_at_local_hour(14))
    return {"contacts": (first, last)}


MESSAGE_COLUMNS = ["contact_id", "channel", "address", "template_key", "locale", "content", "render_data",
                   "message_class", "origin_kind", "origin_step_key", "origin_label", "decision_reason",
                   "decision_detail", "idempotency_key", "status", "status_changed_at", "provider",
                   "provider_message_id", "attempts", "error", "is_test", "created_at"]
SMS = json.dumps({"body": "Hi Ana, your appointment is tomorrow at 10:00. Reply C to confirm.", "encoding": "GSM-7",
                  "segments": 1})
EMAIL = json.dumps({"subject": "Your appointment", "preheader": "", "text": "Hi Ana, see you tomorrow at 10:00.",
                    "html": "<p>Hi Ana,</p><p>See you tomorrow at 10:00.</p>", "sender_profile": {}})


def load_messages(state: dict, n: int) -> list[int]:
    from channels.models import OutboundMessage

    fixtures.truncate("channels_deliveryevent", "channels_outboundmessage")
    first, last = state["contacts"]
    span = last - first + 1
    now = dt.datetime.now(dt.UTC).isoformat()
    tag = fixtures.unique_tag()

    def rows():
        for i in range(n):
            contact = first + i % span
            sms = i % 2 == 0
            address = f"+1{4_150_000_000 + contact}" if sms else f"c{contact}@example.com"
            yield (contact, "sms" if sms else "email", address, "bench-delivery", "en", SMS if sms else EMAIL, "{}",
                   "operational", "api", "", "bench", "no_consent_needed", "", f"bench-{tag}-{i}", "queued", now,
                   "", "", 0, "", "f", now)

    fixtures.copy_model_rows(OutboundMessage, MESSAGE_COLUMNS, rows())
    fixtures.analyze("channels_outboundmessage")
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM channels_outboundmessage ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def remaining() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_outboundmessage WHERE status IN ('queued', 'sending')")
        return cursor.fetchone()[0]


def statuses() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT channel, status, count(*) FROM channels_outboundmessage GROUP BY 1, 2")
        return {f"{channel}:{status}": count for channel, status, count in cursor.fetchall()}


def rate_limited_requeues() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_deliveryevent WHERE detail LIKE 'rate limit of %%'")
        return cursor.fetchone()[0]


def one_run(state: dict, n: int, sms_limit: int = THROUGHPUT_RATE_LIMIT) -> dict:
    from channels.services import enqueue_delivery

    twilio, twilio_port = start_fake("twilio")
    email, email_port = start_fake(EMAIL_ADAPTER)
    try:
        setup_accounts(twilio_port, {EMAIL_ADAPTER: email_port}, sms_limit)
        ids = load_messages(state, n)
        worker = start_worker(concurrency=2, extra_env=PROVIDER_ENV)
        try:
            with autovacuum_standin() as maintenance:
                cpu_before = cpu_snapshot()
                start = time.perf_counter()
                enqueue_delivery(ids)  # outside a transaction: published at once, in batches
                published_s = time.perf_counter() - start
                deadline = time.monotonic() + DEADLINE_SECONDS
                while remaining() and time.monotonic() < deadline:
                    time.sleep(0.2)
                seconds = time.perf_counter() - start
                cpu_after = cpu_snapshot()
        finally:
            stop_worker(worker)
    finally:
        seen_twilio, seen_email = stop_fake(twilio), stop_fake(email)
    by_status = statuses()
    done = by_status.get("sms:sent", 0) + by_status.get("email:sent", 0)
    sms_seen = seen_twilio["senders"].get(SMS_SENDER, {})
    return {"delivered": done, "seconds": seconds, "published_s": published_s, "statuses": by_status,
            "sms_max_per_second_at_provider": sms_seen.get("max_per_second", 0),
            "sms_requests_at_provider": sms_seen.get("requests", 0),
            "emails_at_provider": sum(v["requests"] for v in seen_email["senders"].values()),
            "twilio_connections": seen_twilio["connections"], "email_connections": seen_email["connections"],
            "rate_limited_requeues": rate_limited_requeues(), "cpu": cpu_used(cpu_before, cpu_after, max(done, 1)),
            "autovacuum_standin": maintenance}


def setup_accounts(twilio_port: int, email_ports: dict[str, int], sms_limit: int = THROUGHPUT_RATE_LIMIT) -> None:
    from channels.models import ProviderAccount

    ProviderAccount.objects.filter(name="bench twilio sms").update(
        options={"base_url": f"http://127.0.0.1:{twilio_port}"}, rate_limit_per_second=sms_limit)
    email_options = {"smtp": lambda port: {"host": "127.0.0.1", "port": port},
                     "postmark": lambda port: {"api_url": f"http://127.0.0.1:{port}/"}}
    for adapter, port in email_ports.items():
        ProviderAccount.objects.filter(name=EMAIL_ACCOUNTS[adapter]).update(options=email_options[adapter](port))


def query_counts(state: dict) -> dict:
    """Queries for one delivery task's batch, at two batch sizes, in process."""
    from channels.delivery import deliver_batch

    counts = {}
    try:
        with fakes_in_process():
            ids = load_messages(state, 120)
            for size, chunk in ((20, ids[:20]), (100, ids[20:120])):
                with CaptureQueriesContext(connection) as ctx:
                    started = time.perf_counter()
                    report = deliver_batch(message_ids=chunk)
                    seconds = time.perf_counter() - started
                counts[f"batch_{size}"] = {"queries": len(ctx.captured_queries), "sent": report.sent,
                                           "rate_limited": len(report.rate_limited),
                                           "ms_per_message": round(seconds * 1000 / size, 2)}
    finally:
        fixtures.purge_broker()
    return counts


@contextmanager
def fakes_in_process() -> Iterator[None]:
    """The fakes running, the bench's accounts pointed at them and their
    secrets in this process's environment, for adapters called from here."""
    os.environ.update(PROVIDER_ENV)
    fakes = {kind: start_fake(kind) for kind in ("twilio", *EMAIL_ACCOUNTS)}
    try:
        setup_accounts(fakes["twilio"][1], {adapter: fakes[adapter][1] for adapter in EMAIL_ACCOUNTS})
        yield
    finally:
        for process, _port in fakes.values():
            stop_fake(process)


def adapters_alone(state: dict, n: int) -> dict:
    """CPU milliseconds per message of the provider adapters alone (the
    twilio SDK over requests and over aiohttp; Django's SMTP backend
    building and sending the email; postmarker's batch call) calling the
    fakes one call after another from this process, for queued messages
    read beforehand: no database, no Celery, no rate limit on the clock.
    Delivery's workers cannot go below it."""
    from channels.models import OutboundMessage, ProviderAccount
    from channels.providers.registry import provider_for

    per_message = {}
    with fakes_in_process():
        load_messages(state, 2 * (n + 1))
        for label, account_name in (("sms", "bench twilio sms"), ("email_smtp", EMAIL_ACCOUNTS["smtp"]),
                                    ("email_postmark", EMAIL_ACCOUNTS["postmark"])):
            account = ProviderAccount.objects.get(name=account_name)
            provider = provider_for(account)
            messages = list(OutboundMessage.objects.filter(channel=account.channel))
            provider.send(messages.pop(), account)  # the connection or session is opened outside the clock
            per_call = provider.batch_size(account) if hasattr(provider, "send_batch") else 1
            started = time.process_time()
            for i in range(0, len(messages), per_call):
                if per_call > 1:
                    provider.send_batch(messages[i:i + per_call], account)
                else:
                    provider.send(messages[i], account)
            per_message[label] = round((time.process_time() - started) * 1000 / len(messages), 3)
            if hasattr(provider, "send_async"):
                per_message[f"{label}_async"] = asyncio.run(_async_cpu_ms(provider, account, messages))
    return {"cpu_ms_per_message": per_message, "messages_each": n,
            "note": "one process, one call after another (async: CALLS_IN_FLIGHT at once on one event loop, as "
                    "delivery makes them; postmark: its batch size a call); the fakes' CPU is not counted"}


async def _async_cpu_ms(provider, account, messages: list) -> float:
    from channels.delivery import CALLS_IN_FLIGHT

    await provider.send_async(messages[0], account)  # the session is opened outside the clock
    started = time.process_time()
    for i in range(0, len(messages), CALLS_IN_FLIGHT):
        await asyncio.gather(*(provider.send_async(m, account) for m in messages[i:i + CALLS_IN_FLIGHT]))
    return round((time.process_time() - started) * 1000 / len(messages), 3)


def run(*, runs: int, scale: float, baselines: dict, full: bool = False) -> dict:
    from django.conf import settings

    size = max(200, int((SIZE if full else DEFAULT_SIZE) * scale))
    state = setup()
    queries = query_counts(state)
    adapters = adapters_alone(state, ADAPTER_MESSAGES)
    try:
        results = [one_run(state, size) for _ in range(runs)]
        check = one_run(state, max(200, size // 4), sms_limit=SMS_RATE_LIMIT)
    finally:
        fixtures.purge_broker()
    rates = [r["delivered"] / r["seconds"] for r in results]
    rate = statistics.median(rates)
    noop = baselines.get("celery_noop_tasks_per_s") or 0
    complete = all(r["delivered"] == size for r in results)
    sms_check_s = check["seconds"]
    held = check["sms_max_per_second_at_provider"] <= SMS_RATE_LIMIT
    ratio = round(rate / noop, 3) if noop else None
    return {
        "scenario": "delivery",
        "size": size, "full_size": SIZE, "celery_processes": 2, "ids_per_task": settings.CHANNELS_DELIVERY_BATCH_SIZE,
        "rate": round(rate),
        "unit": f"messages/s handed to the provider (half SMS via twilio, half email via {EMAIL_ADAPTER})",
        "baseline": {"celery_noop_tasks_per_s": noop}, "ratio_to_celery_noop": ratio,
        "targets": [target("delivery: messages handed over / Celery no-op tasks", ratio, TARGET_RATIO,
                           holds=complete and held),
                    target("delivery: cores busy, of 2", of_median_run(rates, results, "cpu")["cores_busy"], 1.9,
                           unit="")],
        "complete": complete,
        "cpu_of_median_run": of_median_run(rates, results, "cpu"),
        "adapters_alone": adapters,
        "rate_limit_check": {
            "sms_limit_per_s": SMS_RATE_LIMIT, "messages": max(200, size // 4),
            "held_at_provider": held,
            "sms_max_per_second_at_provider": check["sms_max_per_second_at_provider"],
            "sms_requests_at_provider": check["sms_requests_at_provider"],
            "rate_limited_requeues": check["rate_limited_requeues"], "seconds": round(sms_check_s, 2),
            "complete": check["delivered"] == max(200, size // 4),
        },
        "runs": [{"per_s": round(rate_), "seconds": round(r["seconds"], 2), "published_s": round(r["published_s"], 2),
                  "sms_max_per_second_at_provider": r["sms_max_per_second_at_provider"],
                  "sms_requests_at_provider": r["sms_requests_at_provider"],
                  "emails_at_provider": r["emails_at_provider"], "rate_limited_requeues": r["rate_limited_requeues"],
                  "twilio_connections": r["twilio_connections"], "email_connections": r["email_connections"],
                  "cpu": r["cpu"],
                  "autovacuum_standin": r["autovacuum_standin"],
                  "statuses": r["statuses"]}
                 for rate_, r in zip(rates, results, strict=True)],
        "queries": queries,
    }
