"""Delivery through a real Celery worker, real Redis broker and PostgreSQL:
retries, permanent failures, duplicate tasks, a killed worker, the sweeper."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection

from channels import services
from channels.delivery import deliver_batch, messages_sweep_stuck
from channels.models import MessageStatus, OutboundMessage
from channels.tasks import deliver_messages
from consent.models import Channel
from tests.channels import factories
from tests.channels.fakes import FakeTwilio

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}
ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float = 20.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


def status_of(message) -> str:
    return OutboundMessage.objects.values_list("status", flat=True).get(pk=message.pk)


def queue_sms(contact, key: str = "k") -> OutboundMessage:
    template = factories.channel_template(Channel.SMS)
    result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"),
                           idempotency_key=key, template_key=template.key)
    return result.messages[0]


@pytest.fixture(autouse=True)
def _empty_broker():
    from config.celery import app

    app.control.purge()  # nothing left over from another test


@pytest.fixture
def fast_retries(settings):
    settings.CHANNELS_RETRY_BASE_SECONDS = 1
    settings.CHANNELS_RETRY_MAX_SECONDS = 2
    settings.CHANNELS_MAX_ATTEMPTS = 3


def test_transient_errors_retry_with_backoff_until_the_provider_accepts(
    fast_retries, contact, twilio_accounts, fake_twilio, celery_worker
):
    fake_twilio.script.extend([FakeTwilio.error(503, 20500, "Service unavailable"),
                               FakeTwilio.error(429, 20429, "Too many requests")])
    message = queue_sms(contact)
    wait_for(lambda: status_of(message) == MessageStatus.SENT, message="sent after retries")
    message.refresh_from_db()
    assert message.attempts == 3
    assert len(fake_twilio.requests) == 3
    transient = message.events.filter(status=MessageStatus.QUEUED, detail__startswith="transient")
    assert transient.count() == 2


def test_transient_errors_give_up_after_the_attempt_limit(fast_retries, contact, twilio_accounts, fake_twilio,
                                                          celery_worker):
    fake_twilio.script.extend([FakeTwilio.error(500, 20500, "Internal error")] * 3)
    message = queue_sms(contact)
    wait_for(lambda: status_of(message) == MessageStatus.FAILED, message="failed after the limit")
    message.refresh_from_db()
    assert message.attempts == 3
    assert "gave up after 3 attempts" in message.error
    assert len(fake_twilio.requests) == 3


def test_a_permanent_error_fails_at_once_without_retrying(contact, twilio_accounts, fake_twilio, celery_worker):
    fake_twilio.script.append(FakeTwilio.error(400, 21211, "The 'To' number is not a valid phone number."))
    message = queue_sms(contact)
    wait_for(lambda: status_of(message) == MessageStatus.FAILED, message="failed")
    message.refresh_from_db()
    assert message.attempts == 1
    assert message.error.startswith("21211")
    time.sleep(0.5)
    assert len(fake_twilio.requests) == 1


def test_a_task_delivered_several_times_sends_once(contact, twilio_accounts, fake_twilio, celery_worker):
    fake_twilio.hold = threading.Event()  # keep the first delivery inside the provider call
    message = queue_sms(contact)
    fake_twilio.arrived.wait(10)
    for _ in range(3):
        deliver_messages.delay([message.pk])
    time.sleep(1)
    fake_twilio.hold.set()
    wait_for(lambda: status_of(message) == MessageStatus.SENT, message="sent")
    for _ in range(2):
        deliver_messages.delay([message.pk])
    time.sleep(1)
    assert len(fake_twilio.requests) == 1


def test_two_workers_racing_for_one_batch_send_each_message_once(contact, twilio_accounts, fake_twilio):
    messages = [queue_sms(contact, key=f"race-{n}") for n in range(6)]
    ids = [m.pk for m in messages]
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(deliver_batch(message_ids=ids))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connection.close()
    assert sum(r.sent for r in reports) == 6
    assert len(fake_twilio.requests) == 6
    assert {r.form["Body"] for r in fake_twilio.requests} == {"Hi Ana, code 42"}


def test_the_sweeper_recovers_messages_the_broker_lost(settings, contact, twilio_accounts, fake_twilio, celery_app):
    settings.CHANNELS_STUCK_AFTER_SECONDS = 1
    message = queue_sms(contact)
    celery_app.control.purge()  # the broker loses the task
    time.sleep(1.2)
    assert status_of(message) == MessageStatus.QUEUED
    with start_worker(celery_app, perform_ping_check=False):
        assert messages_sweep_stuck() == 1
        wait_for(lambda: status_of(message) == MessageStatus.SENT, message="sent after the sweep")
    assert len(fake_twilio.requests) == 1


def _worker_process(name: str) -> subprocess.Popen:
    env = os.environ.copy()
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}"
    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork", "-c", "1", "-n", f"{name}@%h",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def test_a_worker_killed_mid_delivery_loses_nothing(settings, contact, twilio_accounts, fake_twilio):
    from config.celery import app

    app.control.purge()
    worker = _worker_process(f"kill-{uuid.uuid4().hex[:6]}")
    try:
        fake_twilio.hold = threading.Event()
        message = queue_sms(contact)
        assert fake_twilio.arrived.wait(30), "the worker never called the provider"
        assert status_of(message) == MessageStatus.SENDING
        pool = wait_for(lambda: _children(worker.pid), message="the pool process")
        os.kill(pool[0], signal.SIGKILL)  # dies inside the provider call
        fake_twilio.hold.set()
        fake_twilio.hold = None
        # The task comes back (acks late + reject on worker lost) but finds
        # the row past `queued` and sends nothing.
        time.sleep(3)
        assert len(fake_twilio.requests) == 1
        assert status_of(message) == MessageStatus.SENDING
        settings.CHANNELS_STUCK_AFTER_SECONDS = 1
        time.sleep(1.1)
        assert messages_sweep_stuck() == 1
        wait_for(lambda: status_of(message) == MessageStatus.SENT, timeout=30, message="sent after recovery")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
    message.refresh_from_db()
    assert len(fake_twilio.requests) == 2
    assert message.attempts == 2
    assert message.events.filter(detail__startswith="recovered by the sweeper").count() == 1


def _backends_other_than_ours() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return {row[0] for row in cursor.fetchall()}


def test_a_worker_keeps_its_database_connection_and_replaces_one_that_was_dropped(contact, twilio_accounts,
                                                                                     fake_twilio):
    """Celery's Django fixup would close the connection after every task (a
    new PostgreSQL backend each time); CELERY_DB_REUSE_MAX keeps it, and the
    health check replaces it when the database dropped it between tasks."""
    from config.celery import app

    app.control.purge()
    worker = _worker_process(f"conn-{uuid.uuid4().hex[:6]}")
    try:
        first = queue_sms(contact, key="first")
        wait_for(lambda: status_of(first) == MessageStatus.SENT, timeout=30, message="the first task")
        serving = _backends_other_than_ours()
        assert serving, "the worker's connection did not outlive its task"
        second = queue_sms(contact, key="second")
        wait_for(lambda: status_of(second) == MessageStatus.SENT, timeout=30, message="the second task")
        assert _backends_other_than_ours() == serving
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(serving)])
        third = queue_sms(contact, key="third")
        wait_for(lambda: status_of(third) == MessageStatus.SENT, timeout=30, message="a task after the drop")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
