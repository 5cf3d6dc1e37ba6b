"""Each emit point writes its event for a subscribed endpoint, with ids and
statuses but no addresses or bodies: replies, journeys' conversions and
exits, support cases opened, escalated and resolved."""

from __future__ import annotations

import datetime as dt

import pytest

from channels import outbound_webhooks
from channels.inbound import inbound_receive
from channels.models import WebhookDelivery
from consent import services as consent_services
from journeys import services as journey_services
from journeys.models import Enrollment, EnrollmentStatus
from support import services as support_services
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey
from tests.support import factories as support_factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _every_event(db):
    outbound_webhooks.endpoints_cache_clear()
    outbound_webhooks.endpoint_create(url="https://receiver.example.com/hook",
                                      event_types=list(outbound_webhooks.E.values))
    yield
    outbound_webhooks.endpoints_cache_clear()


def events() -> list[tuple[str, dict]]:
    return [(d.event_type, d.payload["data"]) for d in WebhookDelivery.objects.order_by("pk")]


def test_a_reply_emits_message_replied_without_its_text(contact):
    inbound_receive(provider="twilio", provider_message_id="SMr", from_address=contact.phone, to_address="",
                    body="my parcel never came", payload={})
    [(event_type, data)] = [e for e in events() if e[0] == "message.replied"]
    assert data["contact_external_id"] == contact.external_id and data["channel"] == "sms"
    assert "parcel" not in str(events()) and contact.phone not in str(events())


def test_a_stop_reply_emits_contact_unsubscribed_for_each_purpose(contact):
    inbound_receive(provider="twilio", provider_message_id="SMs", from_address=contact.phone, to_address="",
                    body="STOP", payload={})
    unsubscribed = [data for event_type, data in events() if event_type == "contact.unsubscribed"]
    assert {d["purpose"] for d in unsubscribed} >= {"marketing", "operational"}
    assert all(d["channel"] == "sms" and d["source"] == "keyword" for d in unsubscribed)


def test_a_goal_converts_and_an_operator_exit_emit_their_enrollment_events():
    live_journey("onb", [{"key": "pause", "type": "wait", "duration": "1d"}], trigger={"event": "user.signed_up"},
                 goal_events=["user.activated"])
    converting, leaving = ContactFactory(), ContactFactory()
    emit(converting, "user.signed_up", T0)
    emit(leaving, "user.signed_up", T0)
    run(T0)
    emit(converting, "user.activated", T0 + dt.timedelta(hours=1))
    run(T0 + dt.timedelta(hours=1))
    journey_services.enrollment_exit(enrollment=Enrollment.objects.get(contact=leaving), actor="otto")

    ended = {data["contact_external_id"]: (event_type, data["status"]) for event_type, data in events()
             if event_type.startswith("enrollment.")}
    assert ended == {converting.external_id: ("enrollment.converted", "converted"),
                     leaving.external_id: ("enrollment.exited", "exited")}
    assert Enrollment.objects.get(contact=converting).status == EnrollmentStatus.CONVERTED


def test_a_case_opened_escalated_and_resolved_emits_each():
    case = support_factories.case()
    support_services.case_escalate(case=case, actor="test")
    support_services.case_resolve(case=case, actor="test")
    cases = [(event_type, data["status"], data["number"]) for event_type, data in events()
             if event_type.startswith("case.")]
    assert cases == [("case.opened", "open", case.number), ("case.escalated", "escalated", case.number),
                     ("case.resolved", "resolved", case.number)]


def test_a_merge_announces_each_copied_record_and_unsubscribes_only_where_the_copy_now_rules():
    survivor, merged = ContactFactory(), ContactFactory()
    consent_services.consent_record(contact=merged, channel="email", purpose="marketing", status="revoked",
                                    source="api", actor="t", at=T0)
    consent_services.consent_record(contact=merged, channel="sms", purpose="marketing", status="revoked",
                                    source="api", actor="t", at=T0)
    # The survivor's own grant is newer than the merged contact's SMS revocation: that copy changes nothing.
    consent_services.consent_record(contact=survivor, channel="sms", purpose="marketing", status="granted",
                                    source="confirmation", actor="t", at=T0 + dt.timedelta(days=1))
    WebhookDelivery.objects.all().delete()

    consent_services.contact_merge(survivor=survivor, merged=merged, actor="alice")

    changed = [(d["channel"], d["status"], d["source"], d["contact_external_id"]) for t, d in events()
               if t == "consent.changed"]
    assert sorted(changed) == [("email", "revoked", "merge", survivor.external_id),
                               ("sms", "revoked", "merge", survivor.external_id)]
    assert [d["channel"] for t, d in events() if t == "contact.unsubscribed"] == ["email"]

