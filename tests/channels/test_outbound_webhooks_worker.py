"""Outbound webhooks through a real Celery worker, real Redis and a local
HTTP receiver: a real status change arrives signed, a replay from the admin
sends again with the same webhook-id, and a task run twice sends once."""

from __future__ import annotations

import threading

import pytest
from django.urls import reverse
from standardwebhooks import Webhook

from channels import outbound_webhooks, services
from channels.models import WebhookDelivery, WebhookDeliveryStatus
from channels.tasks import deliver_webhooks
from tests.channels.fakes import FakeHttpService
from tests.channels.test_delivery_worker import DATA, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _clean(settings):
    from config.celery import app

    app.control.purge()
    settings.WEBHOOKS_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    outbound_webhooks.endpoints_cache_clear()
    yield
    outbound_webhooks.endpoints_cache_clear()


@pytest.fixture
def receiver():
    fake = FakeHttpService().start()
    yield fake
    fake.stop()


def send_sms(contact, template, key: str = "k"):
    return services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"), idempotency_key=key,
                         template_key=template.key).messages[0]


def test_a_real_delivery_arrives_signed_and_the_independent_verifier_accepts_it(
    contact, sms_template, console_accounts, receiver, celery_worker
):
    endpoint = outbound_webhooks.endpoint_create(url=receiver.url, event_types=["message.delivered"])
    message = send_sms(contact, sms_template)

    wait_for(lambda: len(receiver.requests) >= 1, message="the webhook to arrive")
    request = receiver.requests[0]
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["type"] == "message.delivered"
    assert payload["data"]["message_id"] == message.pk
    assert payload["data"]["contact_external_id"] == contact.external_id
    wait_for(lambda: WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.SUCCEEDED).exists(),
             message="the delivery recorded as succeeded")
    assert WebhookDelivery.objects.count() == 1  # message.sent was not subscribed


def test_a_replay_from_the_admin_sends_again_with_the_same_webhook_id(
    contact, sms_template, console_accounts, receiver, celery_worker, client, operator
):
    outbound_webhooks.endpoint_create(url=receiver.url, event_types=["message.sent"])
    send_sms(contact, sms_template)
    wait_for(lambda: WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.SUCCEEDED).exists(),
             message="the first delivery")
    delivery = WebhookDelivery.objects.get()

    client.force_login(operator)
    client.get(reverse("admin:channels_webhookdelivery_replay", args=[delivery.pk]))
    wait_for(lambda: len(receiver.requests) == 2, message="the replay")
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.webhook_id}
    wait_for(lambda: delivery.attempt_log.count() == 2, message="the replay logged")
    replayed = delivery.attempt_log.order_by("-attempted_at").first()
    assert replayed.trigger == f"replay by {operator.username}" and replayed.status_code == 200
    page = client.get(reverse("admin:channels_webhookdelivery_change", args=[delivery.pk])).content.decode()
    assert "replay by otto_operator" in page and "message.sent" in page


def test_a_delivery_task_run_twice_sends_once(contact, receiver, celery_worker):
    from consent import services as consent_services
    from consent.models import Channel, ConsentSource, ConsentStatus

    outbound_webhooks.endpoint_create(url=receiver.url, event_types=["consent.changed"])
    receiver.hold = threading.Event()  # the first request waits while the duplicate runs
    consent_services.consent_record(contact=contact, channel=Channel.SMS, purpose="marketing",
                                    status=ConsentStatus.REVOKED, source=ConsentSource.API, actor="crm")
    delivery = WebhookDelivery.objects.get()
    deliver_webhooks.delay([delivery.pk])
    deliver_webhooks.delay([delivery.pk])
    wait_for(lambda: receiver.requests, message="the first request")
    receiver.hold.set()
    wait_for(lambda: WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.SUCCEEDED).exists(),
             message="the delivery to succeed")
    assert len(receiver.requests) == 1
    assert delivery.attempt_log.count() == 1
