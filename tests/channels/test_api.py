"""POST /api/v1/messages/, GET /api/v1/messages/{id}/, a contact's history."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from channels.models import MessageStatus, OutboundMessage
from consent import services as consent_services
from consent.models import Channel, SuppressionReason
from tests.channels import factories

pytestmark = pytest.mark.django_db


def send(api, **body):
    return api.post("/api/v1/messages/", body, format="json")


def test_a_transactional_send_answers_202_with_the_message(api, contact, sms_template):
    response = send(api, contact=contact.external_id, template_key=sms_template.key, data={"code": "9"})
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued"
    [message] = body["messages"]
    stored = OutboundMessage.objects.get(pk=message["id"])
    assert stored.content["body"] == "Hi Ana, code 9"
    assert stored.origin_kind == "api"
    assert "decision" not in body


def test_a_refused_send_carries_the_gates_decision(api, contact, sms_template):
    consent_services.suppression_create(reason=SuppressionReason.MANUAL, actor="test", contact=contact)
    body = send(api, contact=contact.external_id, template_key=sms_template.key, data={"code": "9"}).json()
    assert body["status"] == "suppressed"
    assert body["decision"] == {"outcome": "suppress", "reason": "suppressed", "until": None}
    assert body["messages"][0]["status"] == MessageStatus.SUPPRESSED


def test_a_missing_variable_is_reported_not_sent_blank(api, contact, sms_template):
    body = send(api, contact=contact.external_id, template_key=sms_template.key).json()
    assert body["status"] == "failed"
    assert body["decision"]["reason"] == "missing_variable"
    assert body["messages"][0]["status"] == MessageStatus.RENDER_FAILED


def test_the_same_idempotency_key_returns_the_first_messages(api, contact, sms_template):
    first = send(api, contact=contact.external_id, template_key=sms_template.key, data={"code": "1"},
                 idempotency_key="order-77").json()
    again = send(api, contact=contact.external_id, template_key=sms_template.key, data={"code": "1"},
                 idempotency_key="order-77").json()
    assert again["status"] == "duplicate"
    assert [m["id"] for m in again["messages"]] == [m["id"] for m in first["messages"]]
    assert OutboundMessage.objects.count() == 1


def test_a_ladder_send_returns_every_rung_tried(api, contact, sms_template, email_template):
    body = send(api, contact=contact.external_id, data={"code": "1"}, ladder=[
        {"channel": "sms", "template_key": sms_template.key, "timeout_seconds": 600},
        {"channel": "email", "template_key": email_template.key},
    ]).json()
    assert body["status"] == "queued"
    assert [m["channel"] for m in body["messages"]] == ["sms"]


def test_marketing_templates_are_refused_with_a_field_error(api, contact):
    template = factories.channel_template(Channel.EMAIL, "marketing")
    response = send(api, contact=contact.external_id, template_key=template.key)
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "template_key"


@pytest.mark.parametrize("body, attr", [
    ({"template_key": "nope"}, "template_key"),
    ({}, "non_field_errors"),
    ({"ladder": []}, "ladder"),
    ({"ladder": [{"channel": "fax", "template_key": "x"}]}, "ladder.0.channel"),
])
def test_bad_input_gets_a_field_error(api, contact, body, attr):
    response = send(api, contact=contact.external_id, **body)
    assert response.status_code == 400
    assert attr in [e["attr"] for e in response.json()["errors"]]


def test_a_ladder_rung_whose_template_is_another_channel_is_refused(api, contact, sms_template):
    response = send(api, contact=contact.external_id, ladder=[{"channel": "email", "template_key": sms_template.key}])
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"].startswith("ladder")


def test_an_unknown_contact_is_404(api, sms_template):
    assert send(api, contact="nobody", template_key=sms_template.key).status_code == 404


def test_without_a_key_nothing_is_sent(contact, sms_template):
    response = send(APIClient(), contact=contact.external_id, template_key=sms_template.key)
    assert response.status_code in (401, 403)
    assert not OutboundMessage.objects.exists()


def test_a_message_shows_its_timeline(api, contact, sms_template):
    message_id = send(api, contact=contact.external_id, template_key=sms_template.key,
                      data={"code": "1"}).json()["messages"][0]["id"]
    body = api.get(f"/api/v1/messages/{message_id}/").json()
    assert body["status"] == "queued"
    assert [e["status"] for e in body["timeline"]] == ["queued"]
    assert api.get("/api/v1/messages/999999/").status_code == 404


def test_a_contacts_history_lists_newest_first_in_constant_queries(api, contact, sms_template,
                                                                   django_assert_max_num_queries):
    for n in range(3):
        send(api, contact=contact.external_id, template_key=sms_template.key, data={"code": str(n)})
    with django_assert_max_num_queries(6):
        body = api.get(f"/api/v1/contacts/{contact.external_id}/messages/").json()
    assert [m["id"] for m in body["results"]] == sorted((m["id"] for m in body["results"]), reverse=True)
    assert len(body["results"]) == 3
    assert api.get("/api/v1/contacts/nobody/messages/").status_code == 404
