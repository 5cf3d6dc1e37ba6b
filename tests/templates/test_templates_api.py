"""GET /api/v1/templates/: the approved templates an integration may send."""

from __future__ import annotations

import pytest

from templates.models import Template
from tests.templates.factories import approved_template

pytestmark = pytest.mark.django_db


def test_only_approved_templates_are_listed_with_their_locales_and_filters_apply(api):
    approved_template("receipt-email", "email", "transactional", content={
        "subject": "Your receipt", "html": "<p>Thanks</p>",
        "sender_profile": {"from_email": "shop@example.com", "from_name": "Shop"}})
    approved_template("code-sms", "sms", "transactional")
    Template.objects.create(key="draft-only", name="Draft", channel="sms", message_class="marketing")
    body = api.get("/api/v1/templates/").json()
    assert [t["key"] for t in body["results"]] == ["code-sms", "receipt-email"]
    assert body["results"][0]["approved_version"] == 1
    assert body["results"][0]["locales"]
    sms = api.get("/api/v1/templates/?channel=sms").json()["results"]
    assert [t["key"] for t in sms] == ["code-sms"]
    assert api.get("/api/v1/templates/?channel=fax").status_code == 400
