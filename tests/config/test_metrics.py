"""/metrics exposes queue depth, sends by status, webhook failures and tick
lag computed from the database and the broker at scrape time, read back
with prometheus_client's own text parser; METRICS_TOKEN guards it."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import redis
import time_machine
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from analytics.models import ChannelDay
from channels.models import MessageStatus, OriginKind, OutboundMessage, WebhookDelivery
from channels.models import WebhookDeliveryStatus as DS
from channels.outbound_webhooks import endpoint_create
from consent.models import Channel
from journeys.models import Enrollment, EnrollmentStatus, WebhookCall, WebhookStatus
from tests.channels.factories import contact_with_everything
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

NOW = dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC)
_keys = itertools.count()


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    """{family name: {sorted label items: value}} of one scrape."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    return {
        family.name: {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}
        for family in text_string_to_metric_families(response.content.decode())
    }


def message(contact, channel: str, status: str) -> OutboundMessage:
    return OutboundMessage.objects.create(
        contact=contact, channel=channel, status=status, origin_kind=OriginKind.API,
        idempotency_key=f"metrics-{next(_keys)}", status_changed_at=timezone.now(), created_at=timezone.now(),
    )


@pytest.fixture
def contact(db):
    return contact_with_everything()


@pytest.fixture
def broker_queue():
    """The Celery default queue in the real Redis broker, emptied before and after."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("celery")
    yield client
    client.delete("celery")


@pytest.mark.redis
def test_queue_depth_counts_broker_messages_per_task_queue(client, broker_queue):
    from config.tasks import noop

    assert scrape(client)["backoffice_broker_queue_messages"] == {(("queue", "celery"),): 0}
    for _ in range(3):
        noop.delay()  # nobody consumes: the messages wait in Redis

    assert scrape(client)["backoffice_broker_queue_messages"] == {(("queue", "celery"),): 3}


def test_queue_depth_counts_outbox_rows_still_waiting_by_channel_and_status(client, contact):
    for channel, status in [(Channel.SMS, MessageStatus.QUEUED), (Channel.SMS, MessageStatus.QUEUED),
                            (Channel.EMAIL, MessageStatus.SENDING), (Channel.EMAIL, MessageStatus.DEFERRED),
                            (Channel.EMAIL, MessageStatus.DELIVERED), (Channel.SMS, MessageStatus.FAILED)]:
        message(contact, channel, status)

    assert scrape(client)["backoffice_outbox_messages"] == {
        (("channel", "sms"), ("status", "queued")): 2,
        (("channel", "email"), ("status", "sending")): 1,
        (("channel", "email"), ("status", "deferred")): 1,
    }


def test_sends_by_status_add_up_the_daily_rollups_per_channel(client):
    day = dt.date(2026, 12, 1)
    ChannelDay.objects.create(day=day, channel="sms", provider="twilio", sent=10, delivered=8, failed=2)
    ChannelDay.objects.create(day=day, channel="sms", provider="", suppressed=3)
    ChannelDay.objects.create(day=day + dt.timedelta(days=1), channel="sms", provider="twilio", sent=5, delivered=5)
    ChannelDay.objects.create(day=day, channel="email", provider="ses", sent=7, bounced=1, deferred=4)

    totals = scrape(client)["backoffice_messages"]

    assert totals[(("channel", "sms"), ("status", "sent"))] == 15
    assert totals[(("channel", "sms"), ("status", "delivered"))] == 13
    assert totals[(("channel", "sms"), ("status", "failed"))] == 2
    assert totals[(("channel", "sms"), ("status", "suppressed"))] == 3
    assert totals[(("channel", "email"), ("status", "bounced"))] == 1
    assert totals[(("channel", "email"), ("status", "deferred"))] == 4
    assert totals[(("channel", "email"), ("status", "delivered"))] == 0


def test_webhook_failures_count_failed_journey_webhook_calls_only(client):
    for status in (WebhookStatus.FAILED, WebhookStatus.FAILED, WebhookStatus.PENDING, WebhookStatus.DELIVERED):
        WebhookCall.objects.create(url="https://hooks.example.com/x", payload={}, status=status)

    assert scrape(client)["backoffice_webhook_failures"] == {(("source", "journeys"),): 2,
                                                             (("source", "integrations"),): 0}


def test_webhook_failures_count_integration_deliveries_whose_retries_ran_out(client):
    endpoint = endpoint_create(url="https://crm.example.com/hooks", event_types=["message.sent"])
    for n, status in enumerate([DS.GIVEN_UP, DS.GIVEN_UP, DS.GIVEN_UP, DS.PENDING, DS.SENDING, DS.SUCCEEDED]):
        WebhookDelivery.objects.create(endpoint=endpoint, webhook_id=f"msg_metrics_{n}", event_type="message.sent",
                                       payload={}, status=status, next_attempt_at=NOW, created_at=NOW)

    assert scrape(client)["backoffice_webhook_failures"] == {(("source", "journeys"),): 0,
                                                             (("source", "integrations"),): 3}


def test_tick_lag_is_now_minus_the_oldest_due_active_enrollment(client, contact):
    journey = live_journey("lag", [{"key": "pause", "type": "wait", "duration": "1d"}])
    other = contact_with_everything()
    third = contact_with_everything()
    for person, status, due in [(contact, EnrollmentStatus.ACTIVE, NOW - dt.timedelta(seconds=90)),
                                (other, EnrollmentStatus.PAUSED, NOW - dt.timedelta(hours=2)),
                                (third, EnrollmentStatus.ACTIVE, NOW + dt.timedelta(hours=1))]:
        Enrollment.objects.create(journey=journey, version=journey.live_version, contact=person, status=status,
                                  next_run_at=due, entered_at=NOW - dt.timedelta(days=1))

    with time_machine.travel(NOW, tick=False):
        assert scrape(client)["backoffice_tick_lag_seconds"] == {(): 90}
    with time_machine.travel(NOW - dt.timedelta(minutes=5), tick=False):
        assert scrape(client)["backoffice_tick_lag_seconds"] == {(): 0}


def test_it_is_open_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""

    assert "backoffice_tick_lag_seconds" in scrape(client)


def test_with_a_token_it_refuses_a_missing_or_wrong_bearer_and_serves_the_right_one(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    basic = client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-scrape-token")

    assert [missing.status_code, wrong.status_code, basic.status_code] == [401, 401, 401]
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert b"backoffice_" not in missing.content + wrong.content + basic.content
    assert "backoffice_tick_lag_seconds" in scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
