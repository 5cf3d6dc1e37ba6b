"""Outbound webhooks without a worker: signatures checked by the independent
`standardwebhooks` verifier (rotation included), the retry schedule, the
failure run that disables an endpoint and the admin's alert, who gets which
event, rollback, validation, and the hot path with no subscriber."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from channels import outbound_webhooks
from channels.models import (
    MessageStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from consent import services as consent_services
from consent.models import Channel, ConsentSource, ConsentStatus
from tests.channels.fakes import FakeHttpService, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    settings.WEBHOOKS_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    outbound_webhooks.endpoints_cache_clear()
    yield
    outbound_webhooks.endpoints_cache_clear()


@pytest.fixture
def receiver():
    fake = FakeHttpService().start()
    yield fake
    fake.stop()


def endpoint_for(url: str, *event_types: str) -> WebhookEndpoint:
    return outbound_webhooks.endpoint_create(url=url, event_types=list(event_types or ["consent.changed"]))


def revoke_sms(contact) -> None:
    consent_services.consent_record(contact=contact, channel=Channel.SMS, purpose="marketing",
                                    status=ConsentStatus.REVOKED, source=ConsentSource.API, actor="crm")


def deliver_all() -> None:
    ids = list(WebhookDelivery.objects.values_list("pk", flat=True))
    outbound_webhooks.deliveries_attempt(delivery_ids=ids)


def verified(secret: str, request) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


def test_a_consent_change_reaches_the_endpoint_signed_and_the_independent_verifier_accepts_it(contact, receiver):
    endpoint = endpoint_for(receiver.url, "consent.changed", "contact.unsubscribed")
    revoke_sms(contact)
    deliver_all()

    assert len(receiver.requests) == 2
    payloads = [verified(endpoint.secret, r) for r in receiver.requests]
    assert {p["type"] for p in payloads} == {"consent.changed", "contact.unsubscribed"}
    data = payloads[0]["data"]
    assert data["contact_external_id"] == contact.external_id and data["status"] == "revoked"
    assert "address" not in str(payloads) and contact.email not in str(payloads)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == set(WebhookDelivery.objects.values_list("webhook_id", flat=True))
    assert all(i.startswith("msg_") for i in ids)


def test_a_wrong_secret_or_a_tampered_body_fails_verification(contact, receiver):
    endpoint_for(receiver.url)
    revoke_sms(contact)
    deliver_all()
    request = receiver.requests[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(outbound_webhooks.secret_generate()).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(WebhookEndpoint.objects.get().secret).verify(request.body + b" ", request.headers)


def test_during_rotation_both_secrets_verify_and_after_the_grace_period_only_the_new_one(contact, receiver):
    endpoint = endpoint_for(receiver.url)
    old_secret = endpoint.secret
    with time_machine.travel(T0):
        rotated = outbound_webhooks.endpoint_rotate_secret(endpoint=endpoint)
        revoke_sms(contact)
        deliver_all()
    during = receiver.requests[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    with time_machine.travel(T0):
        assert verified(old_secret, during)["type"] == "consent.changed"
        assert verified(rotated.secret, during)["type"] == "consent.changed"

    with time_machine.travel(T0 + dt.timedelta(hours=24, minutes=1)):
        revoke_sms(contact)
        deliver_all()
        after = receiver.requests[-1]
        assert len(receiver.requests) == 2
        assert verified(rotated.secret, after)["type"] == "consent.changed"
        with pytest.raises(WebhookVerificationError):
            verified(old_secret, after)


def test_non_2xx_and_connection_errors_retry_on_the_schedule_then_give_up(contact, receiver):
    dead_url = f"http://127.0.0.1:{free_port()}/hook"
    endpoint = endpoint_for(receiver.url)
    receiver.script.extend([(500, {"error": "boom"}), (404, {}), (302, {})])
    with time_machine.travel(T0, tick=True):
        revoke_sms(contact)
        delivery = WebhookDelivery.objects.get()
        deliver_all()
    expected_waits = [5, 300, 1800, 7200, 18000, 36000, 36000]
    at = T0
    for attempt, wait in enumerate(expected_waits, start=1):
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (WebhookDeliveryStatus.PENDING, attempt)
        assert abs((delivery.next_attempt_at - at).total_seconds() - wait) < 2
        at = delivery.next_attempt_at
        if attempt == 3:  # the rest fail to connect at all
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=dead_url)
        assert outbound_webhooks.deliveries_dispatch_due(now=at - dt.timedelta(seconds=1)) == 0
        assert outbound_webhooks.deliveries_dispatch_due(now=at) == 1
        with time_machine.travel(at, tick=True):
            outbound_webhooks.deliveries_attempt(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (WebhookDeliveryStatus.GIVEN_UP, 8)
    log = list(delivery.attempt_log.order_by("attempted_at"))
    assert [a.status_code for a in log[:3]] == [500, 404, 302]
    assert log[0].response_excerpt == '{"error": "boom"}'
    assert all(a.status_code is None and "ConnectionError" in a.error for a in log[3:])
    assert len(log) == 8 and not any(a.succeeded for a in log)


def test_a_failure_run_disables_the_endpoint_and_the_admin_and_dashboard_show_it(
    settings, contact, receiver, client, operator
):
    settings.WEBHOOKS_DISABLE_AFTER_FAILURES = 3
    endpoint = endpoint_for(receiver.url)
    receiver.script.extend([(503, {})] * 3)
    for _ in range(4):
        revoke_sms(contact)
    deliver_all()

    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.auto_disabled
    assert len(receiver.requests) == 3  # the fourth waits: the endpoint went off before its turn
    waiting = WebhookDelivery.objects.filter(attempts=0).get()
    assert waiting.status == WebhookDeliveryStatus.PENDING
    client.force_login(operator)
    endpoints_page = client.get(reverse("admin:channels_webhookendpoint_changelist")).content.decode()
    assert "Disabled after repeated failures" in endpoints_page and "FAILING: disabled" in endpoints_page
    dashboard = client.get(reverse("admin:index")).content.decode()
    assert 'id="webhook-alert"' in dashboard

    client.get(reverse("admin:channels_webhookendpoint_enable", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.consecutive_failures == 0
    outbound_webhooks.deliveries_attempt(delivery_ids=[waiting.pk])
    assert receiver.requests[-1].headers["webhook-id"] == waiting.webhook_id
    assert 'id="webhook-alert"' not in client.get(reverse("admin:index")).content.decode()


def test_the_dashboard_counts_failed_outbound_attempts_as_webhook_failures(contact, receiver, client, operator):
    endpoint_for(receiver.url)
    receiver.script.extend([(500, {}), (500, {})])
    revoke_sms(contact)
    revoke_sms(contact)
    deliver_all()
    from analytics.selectors import live_gauges

    today = timezone.localdate()
    assert live_gauges(today, today)["webhook_failures"] == 2


def test_unsubscribed_event_types_and_disabled_endpoints_get_nothing(contact, receiver):
    wanted = endpoint_for(receiver.url, "consent.changed")
    endpoint_for(receiver.url + "/other", "case.opened")
    off = endpoint_for(receiver.url + "/off", "consent.changed")
    outbound_webhooks.endpoint_disable(endpoint=off, reason="test")
    revoke_sms(contact)
    assert list(WebhookDelivery.objects.values_list("endpoint_id", "event_type")) == [(wanted.pk, "consent.changed")]


def test_a_double_opt_in_confirmation_is_a_consent_change_too(contact, receiver, settings):
    settings.CONSENT_DOUBLE_OPT_IN = ["email:marketing"]
    endpoint = endpoint_for(receiver.url, "consent.changed")
    pending = consent_services.consent_record(contact=contact, channel=Channel.EMAIL, purpose="marketing",
                                              status=ConsentStatus.GRANTED, source=ConsentSource.FORM, actor="web")
    consent_services.consent_confirm(pending=pending, evidence={"ip": "203.0.113.9"}, actor="double-opt-in")
    deliver_all()

    data = sorted((verified(endpoint.secret, r)["data"] for r in receiver.requests),
                  key=lambda d: d["consent_record_id"])
    assert [(d["status"], d["source"]) for d in data] == [("pending", "form"), ("granted", "confirmation")]


def test_after_erasure_stored_payloads_and_their_replays_no_longer_name_the_contact(contact, receiver):
    endpoint = endpoint_for(receiver.url, "consent.changed")
    other = type(contact).objects.create(external_id="cus_other", email="other@example.com")
    revoke_sms(contact)
    revoke_sms(other)
    former = contact.external_id
    consent_services.contact_erase(contact=contact, actor="dpo")

    ids = sorted(WebhookDelivery.objects.values_list("payload__data__contact_external_id", flat=True))
    assert ids == sorted([f"erased-{contact.pk}", "cus_other"])
    outbound_webhooks.deliveries_replay(deliveries=WebhookDelivery.objects.all(), actor="ops")
    deliver_all()
    bodies = [verified(endpoint.secret, r) for r in receiver.requests]
    assert bodies and all(former not in str(b) for b in bodies)


def test_finished_deliveries_are_forgotten_after_the_retention_and_the_rest_stay(contact, receiver, settings):
    settings.WEBHOOKS_RETENTION_DAYS = 30
    endpoint_for(receiver.url, "consent.changed")
    with time_machine.travel(T0, tick=True):
        for _ in range(4):
            revoke_sms(contact)
        deliver_all()
    succeeded, given_up, replayed, retrying = WebhookDelivery.objects.order_by("pk")
    WebhookDelivery.objects.filter(pk=given_up.pk).update(status=WebhookDeliveryStatus.GIVEN_UP)
    WebhookDelivery.objects.filter(pk=retrying.pk).update(status=WebhookDeliveryStatus.PENDING, finished_at=None)
    outbound_webhooks.deliveries_replay(deliveries=[replayed], actor="ops")
    with time_machine.travel(T0 + dt.timedelta(days=20), tick=True):
        revoke_sms(contact)
        recent = WebhookDelivery.objects.latest("pk")
        outbound_webhooks.deliveries_attempt(delivery_ids=[recent.pk])

    assert outbound_webhooks.deliveries_prune(now=T0 + dt.timedelta(days=30, minutes=1), chunk=1) == 2

    kept = set(WebhookDelivery.objects.values_list("pk", flat=True))
    assert kept == {replayed.pk, retrying.pk, recent.pk}
    assert not WebhookAttempt.objects.filter(delivery_id__in=[succeeded.pk, given_up.pk]).exists()
    assert WebhookAttempt.objects.filter(delivery_id=retrying.pk).exists(), "a row that stays keeps its log"
    assert outbound_webhooks.deliveries_prune(now=T0 + dt.timedelta(days=30, minutes=1)) == 0


def test_a_rolled_back_transaction_emits_nothing(contact, receiver):
    endpoint_for(receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        revoke_sms(contact)
        assert WebhookDelivery.objects.count() == 1
        raise RuntimeError("the change is undone")
    assert WebhookDelivery.objects.count() == 0


def test_a_delivery_claimed_once_is_not_sent_by_a_second_run(contact, receiver):
    endpoint_for(receiver.url)
    revoke_sms(contact)
    deliver_all()
    deliver_all()
    assert len(receiver.requests) == 1


def test_with_no_endpoint_the_status_hot_path_reads_no_table(contact, django_assert_num_queries):
    moves = [(type("M", (), {"pk": 1, "contact_id": contact.pk})(), MessageStatus.SENDING, MessageStatus.SENT, "")]
    outbound_webhooks.message_moves_emit(moves=moves, at=timezone.now())  # fills the per-process cache
    with django_assert_num_queries(0):
        for _ in range(100):
            outbound_webhooks.message_moves_emit(moves=moves, at=timezone.now())


@pytest.mark.parametrize(("url", "event_types", "field"), [
    ("http://example.com/hook", ["consent.changed"], "url"),
    ("ftp://example.com/hook", ["consent.changed"], "url"),
    ("https://example.com/hook", ["message.exploded"], "event_types"),
    ("https://example.com/hook", [], "event_types"),
])
def test_bad_endpoints_are_refused_with_a_clear_error(url, event_types, field):
    with pytest.raises(ValidationError) as refused:
        outbound_webhooks.endpoint_create(url=url, event_types=event_types)
    assert field in refused.value.message_dict
    assert WebhookEndpoint.objects.count() == 0


def test_the_change_page_masks_the_secret_and_outsiders_cannot_manage_webhooks(client, operator, outsider):
    endpoint = outbound_webhooks.endpoint_create(url="https://example.com/hook", event_types=["case.opened"])
    client.force_login(operator)
    page = client.get(reverse("admin:channels_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert f"{endpoint.secret[:8]}…{endpoint.secret[-4:]}</summary>" in page
    client.force_login(outsider)
    assert client.get(reverse("admin:channels_webhookendpoint_changelist")).status_code == 403
    client.get(reverse("admin:channels_webhookendpoint_rotate_secret", args=[endpoint.pk]))
    assert WebhookEndpoint.objects.get().secret == endpoint.secret
