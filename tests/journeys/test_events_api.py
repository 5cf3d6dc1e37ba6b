from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from consent.models import Contact
from journeys.models import Event
from tests.consent.factories import ContactFactory

URL = "/api/v1/events/"


def event(key: str, name: str = "user.signed_up", external_id: str = "cus_1", **extra) -> dict:
    return {"name": name, "contact": {"external_id": external_id}, "idempotency_key": key,
            "occurred_at": "2026-03-02T09:00:00Z", **extra}


@pytest.mark.django_db
def test_one_event_is_accepted_and_its_contact_created_from_the_payload(api):
    body = event("k1", properties={"plan": "pro"})
    body["contact"].update({"email": "New@Example.com", "attributes": {"first_name": "Nia"}})

    response = api.post(URL, body, format="json")

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0}
    contact = Contact.objects.get(external_id="cus_1")
    assert contact.email == "new@example.com"
    assert contact.attributes == {"first_name": "Nia"}
    stored = Event.objects.get()
    assert stored.properties == {"plan": "pro"}
    assert stored.processed_at is None


@pytest.mark.django_db
def test_event_attributes_merge_into_the_contact_rather_than_replace_them(api):
    ContactFactory(external_id="cus_1", attributes={"first_name": "Ana", "plan": "starter"})
    body = event("k1")
    body["contact"]["attributes"] = {"plan": "pro"}

    api.post(URL, body, format="json")

    assert Contact.objects.get(external_id="cus_1").attributes == {"first_name": "Ana", "plan": "pro"}


@pytest.mark.django_db
def test_a_batch_counts_accepted_and_duplicate_events(api):
    api.post(URL, event("a"), format="json")

    response = api.post(URL, {"events": [event("a"), event("b"), event("b"), event("c", external_id="cus_2")]},
                        format="json")

    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 2}
    assert Event.objects.count() == 3


@pytest.mark.django_db
def test_a_batch_with_one_invalid_item_is_rejected_whole_with_each_error_located(api):
    bad_name = event("b", name="has spaces")
    no_key = event("c")
    del no_key["idempotency_key"]
    bad_phone = event("d")
    bad_phone["contact"]["phone"] = "12"

    response = api.post(URL, {"events": [event("a"), bad_name, no_key, bad_phone]}, format="json")

    assert response.status_code == 400
    attrs = {error["attr"] for error in response.json()["errors"]}
    assert attrs == {"events.1.name", "events.2.idempotency_key", "events.3.contact.phone"}
    assert Event.objects.count() == 0
    assert not Contact.objects.exists()


@pytest.mark.django_db
def test_more_than_a_thousand_events_in_one_request_are_refused(api):
    response = api.post(URL, {"events": [event(f"k{i}") for i in range(1001)]}, format="json")

    assert response.status_code == 400
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_an_identifier_owned_by_another_contact_answers_409(api):
    ContactFactory(external_id="cus_other", email="taken@example.com")
    body = event("k1")
    body["contact"]["email"] = "taken@example.com"

    response = api.post(URL, body, format="json")

    assert response.status_code == 409
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_events_need_an_api_key():
    response = APIClient().post(URL, event("k1"), format="json")

    assert response.status_code == 401


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_racing_requests_with_the_same_key_store_one_event(api_key):
    ContactFactory(external_id="cus_1")
    barrier = threading.Barrier(2)
    answers = []

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key[1]}")
        barrier.wait()
        answers.append(client.post(URL, {"events": [event("same"), event(f"own-{threading.get_ident()}")]},
                                   format="json").json())
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Event.objects.filter(idempotency_key="same").count() == 1
    assert sorted(a["accepted"] for a in answers) == [1, 2]
    assert sum(a["duplicates"] for a in answers) == 1


@pytest.mark.django_db
def test_an_event_from_the_future_is_refused(api):
    response = api.post(URL, event("k1", occurred_at="2999-01-01T00:00:00Z"), format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "events.0.occurred_at"


@pytest.mark.django_db
def test_properties_and_keys_with_quotes_backslashes_and_non_ascii_text_are_stored_as_sent(api):
    properties = {"quote": "it's \"fine\"", "path": "C:\\temp\\{x}", "name": "Zoë 🚀", "nested": {"a": [1, None, True]},
                  "json": '{"not": "parsed"}', "percent": "100%s"}
    body = event("k'\"\\é-1", properties=properties)
    body["contact"]["attributes"] = {"note": "l'été \\ 🚀"}

    response = api.post(URL, body, format="json")

    assert response.status_code == 202
    stored = Event.objects.get()
    assert (stored.idempotency_key, stored.properties) == ("k'\"\\é-1", properties)
    assert Contact.objects.get(external_id="cus_1").attributes == {"note": "l'été \\ 🚀"}
