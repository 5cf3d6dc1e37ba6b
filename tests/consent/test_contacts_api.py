"""The contacts and consent API: upsert, identity conflicts, consent, errors."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from config.models import ApiKey
from consent.models import ConsentRecord, Contact, PushDevice
from tests.consent.factories import ContactFactory

pytestmark = pytest.mark.django_db


def put(api, external_id, payload):
    return api.put(f"/api/v1/contacts/{external_id}/", payload, format="json")


def error_attrs(response) -> set[str]:
    return {error["attr"] for error in response.json()["errors"]}


def test_put_creates_a_contact_then_updates_only_the_fields_sent(api):
    created = put(api, "cus_1", {"email": "Ana@Example.com", "phone": "+351912345678",
                                 "timezone": "Europe/Lisbon", "attributes": {"plan": "pro"}})
    assert created.status_code == 201
    assert created.json()["email"] == "ana@example.com"
    updated = put(api, "cus_1", {"locale": "pt-PT"})
    assert updated.status_code == 200
    body = api.get("/api/v1/contacts/cus_1/").json()
    assert body["locale"] == "pt-PT"
    assert body["phone"] == "+351912345678"
    assert body["attributes"] == {"plan": "pro"}


def test_the_change_is_kept_in_history_with_the_api_key_as_author(api):
    put(api, "cus_1", {"email": "a@example.com"})
    put(api, "cus_1", {"email": "b@example.com"})
    contact = Contact.objects.get(external_id="cus_1")
    reasons = list(contact.history.order_by("history_date").values_list("history_change_reason", flat=True))
    assert reasons == ["created by api-key:test-integration", "updated by api-key:test-integration"]


def test_an_email_that_belongs_to_another_contact_answers_409_with_that_contact(api):
    other = ContactFactory(email="taken@example.com")
    response = put(api, "cus_new", {"email": "TAKEN@example.com"})
    assert response.status_code == 409
    body = response.json()
    assert body["conflicting_contact"] == {"id": other.pk, "external_id": other.external_id}
    assert body["errors"][0]["attr"] == "email"
    assert not Contact.objects.filter(external_id="cus_new").exists()


def test_a_phone_written_another_way_is_recognised_as_the_same_identity(api):
    owner = ContactFactory(phone="+14155550199")
    response = put(api, "cus_new", {"phone": "+1 (415) 555-0199"})
    assert response.status_code == 409
    assert response.json()["conflicting_contact"]["id"] == owner.pk


def test_a_phone_without_a_country_code_is_refused(api):
    response = put(api, "cus_new", {"phone": "415 555 0199"})
    assert response.status_code == 400
    assert "international format" in response.json()["errors"][0]["detail"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"phone": "+1555"}, "phone"),
        ({"phone": "+99912345678"}, "phone"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"email": "not-an-email"}, "email"),
        ({"lifecycle_stage": "zombie"}, "lifecycle_stage"),
        ({"attributes": ["not", "an", "object"]}, "attributes"),
        ({"push_devices": [{"token": "t", "platform": "blackberry"}]}, "push_devices.0.platform"),
    ],
)
def test_bad_contact_fields_answer_400_naming_the_field_and_write_nothing(api, payload, field):
    response = put(api, "cus_bad", payload)
    assert response.status_code == 400
    assert field in error_attrs(response)
    assert not Contact.objects.filter(external_id="cus_bad").exists()


def test_push_devices_are_registered_with_the_contact(api):
    put(api, "cus_1", {"push_devices": [{"token": "fcm-abc", "platform": "android"}]})
    assert PushDevice.objects.get(token="fcm-abc").contact.external_id == "cus_1"


def test_malformed_json_answers_400(api):
    response = api.generic("PUT", "/api/v1/contacts/cus_1/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["type"] == "client_error"


def test_an_oversize_body_answers_400(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = put(api, "cus_1", {"attributes": {"blob": "x" * 5000}})
    assert response.status_code == 400
    assert "too large" in response.json()["errors"][0]["detail"]
    assert not Contact.objects.exists()


def test_a_missing_or_wrong_key_answers_401():
    anonymous = APIClient()
    assert anonymous.get("/api/v1/contacts/x/").status_code == 401
    anonymous.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert anonymous.get("/api/v1/contacts/x/").status_code == 401
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer something")
    assert anonymous.get("/api/v1/contacts/x/").status_code == 401


def test_a_revoked_key_answers_401(api, api_key):
    key, _ = api_key
    ApiKey.objects.filter(pk=key.pk).update(revoked=True)
    assert api.get("/api/v1/contacts/x/").status_code == 401


def test_consent_is_appended_and_the_current_state_is_derived(api):
    contact = ContactFactory(external_id="cus_1")
    url = "/api/v1/contacts/cus_1/consent/"
    granted = api.post(url, {"channel": "sms", "purpose": "operational", "status": "granted",
                             "evidence": {"form_url": "https://shop.example/checkout", "ip": "198.51.100.4"}},
                       format="json")
    assert granted.status_code == 201
    api.post(url, {"channel": "sms", "purpose": "operational", "status": "revoked"}, format="json")
    body = api.get(url).json()
    cell = next(c for c in body["state"] if c["channel"] == "sms" and c["purpose"] == "operational")
    assert cell["state"] == "revoked"
    assert [r["status"] for r in body["ledger"]] == ["revoked", "granted"]
    assert body["ledger"][1]["evidence"]["ip"] == "198.51.100.4"
    assert body["ledger"][1]["recorded_by"] == "api-key:test-integration"
    assert contact.consent_records.count() == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"channel": "fax", "purpose": "marketing", "status": "granted"}, "channel"),
        ({"channel": "sms", "purpose": "spam", "status": "granted"}, "purpose"),
        ({"channel": "sms", "purpose": "marketing", "status": "pending"}, "status"),
        ({"purpose": "marketing", "status": "granted"}, "channel"),
    ],
)
def test_bad_consent_answers_400_naming_the_field(api, payload, field):
    ContactFactory(external_id="cus_1")
    response = api.post("/api/v1/contacts/cus_1/consent/", payload, format="json")
    assert response.status_code == 400
    assert field in error_attrs(response)
    assert not ConsentRecord.objects.exists()


def test_consent_for_an_unknown_contact_answers_404(api):
    response = api.post("/api/v1/contacts/ghost/consent/",
                        {"channel": "sms", "purpose": "marketing", "status": "granted"}, format="json")
    assert response.status_code == 404


def test_a_double_opt_in_grant_is_pending_until_the_link_is_confirmed(api, client):
    ContactFactory(external_id="cus_1")
    response = api.post("/api/v1/contacts/cus_1/consent/",
                        {"channel": "email", "purpose": "marketing", "status": "granted"}, format="json")
    assert response.json()["status"] == "pending"
    link = response.json()["confirmation_url"].split("127.0.0.1:8000", 1)[1]
    # A GET (as a mail scanner does) only shows the button.
    assert client.get(link).status_code == 200
    assert ConsentRecord.objects.filter(status="granted").count() == 0
    assert client.post(link).status_code == 200
    state = api.get("/api/v1/contacts/cus_1/consent/").json()["state"]
    assert next(c for c in state if (c["channel"], c["purpose"]) == ("email", "marketing"))["state"] == "granted"
    # A second click confirms nothing more.
    assert client.post(link).status_code == 400
    assert ConsentRecord.objects.filter(status="granted").count() == 1


def test_a_forged_confirmation_link_is_refused(client):
    assert client.post("/consent/confirm/forged-token/").status_code == 400


def test_erasure_through_the_api_anonymises_the_contact(api):
    put(api, "cus_1", {"email": "ana@example.com"})
    response = api.post("/api/v1/contacts/cus_1/erase/")
    assert response.status_code == 200
    assert response.json()["email"] == ""
    assert response.json()["erased_at"]


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/contacts/{external_id}/consent/" in schema.content
    assert b"ApiKeyAuth" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_delete_erases_the_contacts_personal_data_and_a_repeat_is_404(api):
    ContactFactory(external_id="cus_gone", email="gone@example.com", phone="+14155550199")
    response = api.delete("/api/v1/contacts/cus_gone/")
    assert response.status_code == 200
    body = response.json()
    assert body["erased_at"] and body["email"] == "" and body["phone"] == ""
    assert not Contact.objects.filter(email="gone@example.com").exists()
    assert api.delete("/api/v1/contacts/cus_gone/").status_code == 404
