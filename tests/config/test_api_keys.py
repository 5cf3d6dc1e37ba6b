"""API keys as integrations hold them: scopes, expiry, revocation, last use,
and a per-key rate limit answered with 429 and Retry-After (in the shared
Redis cache, so it holds across web processes)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import caches
from django.utils import timezone
from rest_framework.test import APIClient

from config.models import ApiKey
from tests.consent.factories import ContactFactory


def client_for(**fields) -> tuple[APIClient, ApiKey]:
    key, secret = ApiKey.objects.create_key(name=fields.pop("name", "crm"), **fields)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client, key


@pytest.mark.django_db
def test_a_key_calls_only_what_its_scopes_allow():
    ContactFactory(external_id="cus_1")
    reader, _ = client_for(scopes=["contacts:read"])
    assert reader.get("/api/v1/contacts/cus_1/").status_code == 200
    refused = reader.put("/api/v1/contacts/cus_1/", {"locale": "de"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["detail"] == "This API key lacks the scope 'contacts:write'."


@pytest.mark.django_db
def test_an_expired_key_answers_401_and_a_revoked_one_too():
    expired, _ = client_for(scopes=["contacts:read"], expiry_date=timezone.now() - dt.timedelta(minutes=1))
    assert expired.get("/api/v1/contacts/x/").status_code == 401
    revoked, key = client_for(name="old", scopes=["contacts:read"])
    key.revoked = True
    key.save()
    response = revoked.get("/api/v1/contacts/x/")
    assert response.status_code == 401
    assert response.json()["errors"][0]["detail"] == "This API key is revoked or expired."


@pytest.mark.django_db
def test_the_key_shows_when_it_was_last_used():
    client, key = client_for(scopes=["contacts:read"])
    assert key.last_used_at is None
    client.get("/api/v1/contacts/x/")
    key.refresh_from_db()
    assert timezone.now() - key.last_used_at < dt.timedelta(seconds=5)


@pytest.mark.redis
@pytest.mark.django_db
def test_past_its_rate_limit_a_key_gets_429_with_retry_after_and_other_keys_go_on():
    assert "redis" in type(caches["default"]).__module__  # the limit is shared across processes
    limited, _ = client_for(scopes=["contacts:read"], rate_limit_per_minute=3)
    other, _ = client_for(name="other", scopes=["contacts:read"])
    statuses = [limited.get("/api/v1/contacts/x/").status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    refused = limited.get("/api/v1/contacts/x/")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["errors"][0]["code"] == "throttled"
    assert other.get("/api/v1/contacts/x/").status_code == 404


@pytest.mark.django_db
def test_an_operator_creates_a_scoped_key_in_the_admin_and_it_works_once_shown(client, operator, marketer):
    client.force_login(marketer)
    assert client.get("/admin/project/apikey/add/").status_code == 403
    client.force_login(operator)
    response = client.post("/admin/project/apikey/add/", {"name": "shop", "scopes": ["contacts:read"]}, follow=True)
    assert response.status_code == 200
    [notice] = [str(m) for m in response.context["messages"] if "The API key for" in str(m)]
    secret = notice.split("The API key for shop is: ")[1].split(". ")[0]
    key = ApiKey.objects.get(name="shop")
    assert key.scopes == ["contacts:read"]
    assert secret not in key.hashed_key
    ContactFactory(external_id="cus_1")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert api.get("/api/v1/contacts/cus_1/").status_code == 200
    assert api.put("/api/v1/contacts/cus_1/", {}, format="json").status_code == 403
    listing = client.get("/admin/project/apikey/")
    assert b"contacts:read" in listing.content


@pytest.mark.django_db
def test_the_admin_refuses_an_unknown_scope(client, operator):
    client.force_login(operator)
    response = client.post("/admin/project/apikey/add/", {"name": "shop", "scopes": ["events:delete"]})
    assert response.status_code == 200
    assert "events:delete is not one of the available choices" in response.content.decode()
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_an_unknown_api_url_answers_in_the_api_error_shape(api):
    response = api.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"type": "client_error", "errors": [
        {"code": "not_found", "detail": "No such endpoint; see /api/docs/.", "attr": None}]}
