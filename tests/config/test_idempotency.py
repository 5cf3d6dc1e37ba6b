"""The Idempotency-Key header, as in Stripe's API: a repeat with the same key
and request returns the first response and has no second effect; the same key
with another request is a 409; keys are per credentials and expire."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import requests
import time_machine
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from channels.models import OutboundMessage
from config.models import ApiKey, IdempotencyRecord
from consent.models import ConsentRecord
from tests.channels import factories
from tests.consent.factories import ContactFactory

GRANT = {"channel": "sms", "purpose": "operational", "status": "granted"}


def consent_url(external_id: str = "cus_1") -> str:
    return f"/api/v1/contacts/{external_id}/consent/"


@pytest.mark.django_db
def test_a_repeat_returns_the_first_response_and_records_nothing_twice(api):
    ContactFactory(external_id="cus_1")
    first = api.post(consent_url(), GRANT, format="json", HTTP_IDEMPOTENCY_KEY="grant-1")
    again = api.post(consent_url(), GRANT, format="json", HTTP_IDEMPOTENCY_KEY="grant-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert ConsentRecord.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_a_different_body_is_a_409_and_changes_nothing(api):
    ContactFactory(external_id="cus_1")
    api.post(consent_url(), GRANT, format="json", HTTP_IDEMPOTENCY_KEY="grant-1")
    other = api.post(consent_url(), {**GRANT, "status": "revoked"}, format="json", HTTP_IDEMPOTENCY_KEY="grant-1")
    assert other.status_code == 409
    assert other.json()["errors"][0]["code"] == "idempotency_key_reused"
    assert ConsentRecord.objects.get().status == "granted"


@pytest.mark.django_db
def test_a_request_refused_as_invalid_is_not_kept_so_the_fixed_one_may_reuse_the_key(api):
    ContactFactory(external_id="cus_1")
    invalid = api.post(consent_url(), {**GRANT, "channel": "fax"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert invalid.status_code == 400
    fixed = api.post(consent_url(), GRANT, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert fixed.status_code == 201


@pytest.mark.django_db
def test_keys_belong_to_the_credentials_that_sent_them(api):
    ContactFactory(external_id="cus_1")
    _, secret = ApiKey.objects.create_key(name="other", scopes=["consent:write"])
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    api.post(consent_url(), GRANT, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    theirs = other.post(consent_url(), {**GRANT, "channel": "email"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert theirs.status_code == 201
    assert ConsentRecord.objects.count() == 2


@pytest.mark.django_db
def test_a_key_is_forgotten_after_a_day(api, settings):
    ContactFactory(external_id="cus_1")
    api.post(consent_url(), GRANT, format="json", HTTP_IDEMPOTENCY_KEY="daily")
    with time_machine.travel(timezone.now() + dt.timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS, minutes=1)):
        later = api.post(consent_url(), GRANT, format="json", HTTP_IDEMPOTENCY_KEY="daily")
    assert later.status_code == 201
    assert "Idempotent-Replayed" not in later
    assert ConsentRecord.objects.count() == 2


@pytest.mark.django_db
def test_an_unusable_key_is_a_400(api):
    response = api.post(consent_url(), GRANT, format="json", HTTP_IDEMPOTENCY_KEY="x" * 256)
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "Idempotency-Key"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_one_key_send_one_message(live_server, api_key):
    """Two connections race with the same key: one send runs; the other is
    told the key is in use (409) or, if it came second, gets the replay."""
    contact = factories.contact_with_everything()
    template = factories.channel_template("sms", "transactional")
    body = {"contact": contact.external_id, "template_key": template.key, "data": {"code": "1"}}
    headers = {"Authorization": f"Api-Key {api_key[1]}", "Idempotency-Key": "race-1"}
    barrier = threading.Barrier(2)
    results = []

    def send():
        barrier.wait()
        results.append(requests.post(f"{live_server.url}/api/v1/messages/", json=body, headers=headers, timeout=30))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(response.status_code for response in results)
    assert codes in ([202, 202], [202, 409])
    assert OutboundMessage.objects.count() == 1
    assert IdempotencyRecord.objects.get().status_code == 202
    connection.close()
