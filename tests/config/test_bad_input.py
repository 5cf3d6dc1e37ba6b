"""Bad input answers a clear 400 in the API's error shape, never a 500:
bodies too large, JSON nested too deeply, bytes that are not UTF-8, batches
too big, and fields the endpoint does not know (DRF would drop them)."""

from __future__ import annotations

import pytest

from consent.models import Contact
from journeys.models import Event
from tests.consent.factories import ContactFactory

pytestmark = pytest.mark.django_db

WRITES = [("post", "/api/v1/events/"), ("put", "/api/v1/contacts/cus_1/"), ("post", "/api/v1/messages/"),
          ("post", "/api/v1/cases/"), ("post", "/api/v1/journeys/import/")]


def send(api, method: str, path: str, body: bytes):
    return getattr(api, method)(path, data=body, content_type="application/json")


def single_error(response) -> dict:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["type"] in {"validation_error", "client_error"}
    return body["errors"][0]


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_json_nested_ten_thousand_levels_deep_is_a_400(api, method, path):
    error = single_error(send(api, method, path, b"[" * 10_000 + b"]" * 10_000))
    assert error["code"] == "parse_error"
    assert "nested too deeply" in error["detail"]


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_body_that_is_not_utf8_is_a_400(api, method, path):
    error = single_error(send(api, method, path, b'{"email": "\xff\xfe@example.com"}'))
    assert error["code"] == "parse_error"


def test_a_body_over_the_size_limit_is_a_400_naming_the_limit(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    error = single_error(send(api, "put", "/api/v1/contacts/cus_1/", b'{"attributes": {"x": "' + b"a" * 2000 + b'"}}'))
    assert "limit is 1000" in error["detail"]
    assert not Contact.objects.exists()


def test_a_batch_over_the_limit_is_refused_whole(api, settings):
    events = [{"name": "user.signed_up", "idempotency_key": f"k{n}", "contact": {"external_id": "cus_1"}}
              for n in range(settings.JOURNEYS_EVENTS_PER_REQUEST + 1)]
    error = single_error(api.post("/api/v1/events/", {"events": events}, format="json"))
    assert error["attr"] == "events"
    assert not Event.objects.exists()


def test_an_unknown_contact_field_is_refused_by_name_and_nothing_is_written(api):
    error = single_error(api.put("/api/v1/contacts/cus_1/", {"emial": "ana@example.com"}, format="json"))
    assert "emial" in error["detail"]
    assert not Contact.objects.exists()


def test_an_unknown_field_of_a_nested_item_is_refused_with_its_location(api):
    ContactFactory(external_id="cus_1")
    response = api.put("/api/v1/contacts/cus_1/", {"push_devices": [
        {"token": "t", "platform": "android", "colour": "red"}]}, format="json")
    error = single_error(response)
    assert error["attr"] == "push_devices.0.non_field_errors"
    assert "colour" in error["detail"]


def test_an_unknown_key_of_an_event_or_its_contact_is_refused_on_the_fast_path_too(api):
    good = {"name": "user.signed_up", "idempotency_key": "k1", "contact": {"external_id": "cus_1"}}
    typo = {**good, "idempotency_key": "k2", "ocurred_at": "2026-01-01T00:00:00Z"}
    error = single_error(api.post("/api/v1/events/", {"events": [good, typo]}, format="json"))
    assert error["attr"] == "events.1.non_field_errors"
    assert "ocurred_at" in error["detail"]
    contact_typo = {**good, "contact": {"external_id": "cus_1", "emial": "a@example.com"}}
    error = single_error(api.post("/api/v1/events/", contact_typo, format="json"))
    assert error["attr"] == "events.0.contact.non_field_errors"
    assert not Event.objects.exists()


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("post", "/api/v1/messages/", {"contact": "cus_1", "template_key": "t", "priority": "high"}, "priority"),
    ("post", "/api/v1/cases/", {"subject": "Help", "contact": "cus_1", "severity": 1}, "severity"),
    ("post", "/api/v1/journeys/import/", {"yaml": "key: x", "force": True}, "force"),
    ("post", "/api/v1/contacts/cus_1/consent/", {"channel": "email", "granted": True, "source": "x"}, "granted"),
])
def test_every_write_endpoint_names_the_unknown_field_it_refuses(api, method, path, body, field):
    ContactFactory(external_id="cus_1")
    response = getattr(api, method)(path, body, format="json")
    assert response.status_code == 400, response.content
    details = " ".join(error["detail"] for error in response.json()["errors"])
    assert f"Unknown field(s): {field}" in details
