"""Email through Postmark's batch API: postmarker's real client against a
local server speaking /email/batch. Many messages go in one call, each is
answered and recorded on its own, and a batch decides for every message
what a call for that message alone would."""

from __future__ import annotations

import base64
import itertools
import json
import threading

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import services
from channels.delivery import deliver_batch
from channels.models import Adapter, MessageStatus, OutboundMessage
from consent.models import Channel, Suppression
from tests.channels import factories
from tests.channels.fakes import FakePostmark

pytestmark = pytest.mark.django_db
TOKEN = "server-token-test"
INACTIVE = (406, "You tried to send to recipient(s) that have been marked as inactive.")
INVALID_TO = (300, "Invalid 'To' address: 'x'.")


@pytest.fixture
def postmark(monkeypatch):
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", TOKEN)
    service = FakePostmark().start()
    yield service
    service.stop()


def postmark_account(service: FakePostmark, rate_limit_per_second=0, **options):
    return factories.account(Channel.EMAIL, Adapter.POSTMARK, sender="noreply@example.com",
                             rate_limit_per_second=rate_limit_per_second,
                             options={"api_url": f"{service.url}/", **options})


def queued_emails(n: int, tag: str = "pm") -> list[OutboundMessage]:
    template = factories.channel_template(Channel.EMAIL)
    messages = []
    for i in range(n):
        contact = factories.contact_with_everything(email=f"{tag}{i}@example.com")
        data = {"contact": {"first_name": "Ana"}, "event": {"code": str(i)}}
        result = services.send(contact=contact, data=data, origin=services.Origin(kind="api"),
                               idempotency_key=f"{tag}-{i}", template_key=template.key)
        assert result.status == services.SendStatus.QUEUED, result
        messages.append(result.messages[0])
    return messages


def delivered(messages: list[OutboundMessage]) -> dict[str, OutboundMessage]:
    deliver_batch(message_ids=[m.pk for m in messages])
    return {m.address: m for m in OutboundMessage.objects.filter(pk__in=[m.pk for m in messages])}


def test_many_emails_go_in_one_batch_call_each_with_its_own_id(postmark):
    postmark_account(postmark)
    messages = queued_emails(3)
    by_address = delivered(messages)
    assert len(postmark.requests) == 1
    request = postmark.requests[0]
    assert request.path == "/email/batch"
    assert request.headers["x-postmark-server-token"] == TOKEN
    sent = request.json
    assert [email["To"] for email in sent] == [m.address for m in messages]
    first = sent[0]
    assert first["From"] == "Example <hello@example.com>"
    assert first["Subject"] == "Hi Ana"
    assert first["HtmlBody"] == "<p>Your code is 0</p>"
    assert first["MessageStream"] == "outbound"
    assert first["Metadata"] == {"outbound_message_id": str(messages[0].pk)}
    assert first["Tag"] == messages[0].template_key
    assert {"Name": "Message-ID", "Value": f"<outbound-{messages[0].pk}@example.com>"} in first["Headers"]
    assert {m.status for m in by_address.values()} == {MessageStatus.SENT}
    assert len({m.provider_message_id for m in by_address.values()}) == 3
    assert all(m.provider == Adapter.POSTMARK for m in by_address.values())


def test_a_refused_recipient_fails_alone_and_an_inactive_one_is_suppressed(postmark):
    postmark_account(postmark)
    messages = queued_emails(3)
    postmark.refuse = {messages[0].address: INACTIVE, messages[1].address: INVALID_TO}
    by_address = delivered(messages)
    assert len(postmark.requests) == 1
    inactive, invalid, fine = (by_address[m.address] for m in messages)
    assert inactive.status == invalid.status == MessageStatus.FAILED
    assert "Postmark 406" in inactive.error and "Postmark 300" in invalid.error
    assert fine.status == MessageStatus.SENT
    assert Suppression.objects.get(address=inactive.address).reason == "hard_bounce"
    assert not Suppression.objects.filter(address=invalid.address).exists()


@pytest.mark.parametrize(("answer", "status"), [
    (FakePostmark.error(429, 429, "Rate limit exceeded"), MessageStatus.QUEUED),
    (FakePostmark.error(500, 500, "Internal server error"), MessageStatus.QUEUED),
    (FakePostmark.error(401, 10, "Bad or missing Server API token"), MessageStatus.QUEUED),
    (FakePostmark.error(422, 300, "Invalid email request"), MessageStatus.FAILED),
])
def test_a_refused_call_is_every_messages_answer(postmark, answer, status):
    postmark_account(postmark)
    postmark.script.append(answer)
    by_address = delivered(queued_emails(2))
    assert {m.status for m in by_address.values()} == {status}
    assert all(f"HTTP {answer[0]}" in m.error for m in by_address.values())
    if status == MessageStatus.QUEUED:
        assert all(m.next_attempt_at is not None and m.attempts == 1 for m in by_address.values())


def test_a_batch_with_no_answer_in_time_is_left_for_the_status_callbacks(postmark):
    postmark_account(postmark, timeout=0.5)
    postmark.hold = threading.Event()
    by_address = delivered(queued_emails(2))
    assert len(postmark.requests) == 1
    for message in by_address.values():
        assert message.status == MessageStatus.SENDING
        assert "no answer from Postmark after sending" in message.error


def test_batch_size_splits_the_messages_into_calls(postmark):
    postmark_account(postmark, batch_size=2)
    by_address = delivered(queued_emails(5))
    assert sorted(len(request.json) for request in postmark.requests) == [1, 2, 2]
    assert {m.status for m in by_address.values()} == {MessageStatus.SENT}


def test_the_rate_limit_counts_messages_not_calls(postmark):
    postmark_account(postmark, rate_limit_per_second=3)
    by_address = delivered(queued_emails(5, tag="rl"))
    assert sum(len(request.json) for request in postmark.requests) == 3
    statuses = sorted(m.status for m in by_address.values())
    assert statuses == [MessageStatus.QUEUED] * 2 + [MessageStatus.SENT] * 3
    assert all(m.attempts == 0 for m in by_address.values() if m.status == MessageStatus.QUEUED)


def test_postmarks_delivery_webhook_finds_the_message_by_its_metadata(postmark, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:s3cret"}
    postmark_account(postmark)
    message = delivered(queued_emails(1))["pm0@example.com"]
    sent = postmark.requests[0].json[0]
    event = {"RecordType": "Delivery", "MessageID": message.provider_message_id, "Recipient": message.address,
             "DeliveredAt": "2026-11-26T12:00:01Z", "Metadata": sent["Metadata"]}
    auth = "Basic " + base64.b64encode(b"hook:s3cret").decode()
    response = Client().post("/webhooks/anymail/postmark/tracking/", json.dumps(event),
                             content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


@pytest.mark.postgres
def test_a_soft_time_limit_waits_for_the_batch_calls_under_way_and_puts_back_the_rest(
    postmark, soft_time_limit_when
):
    """Calls of 2, two in flight: [0, 1] alone, then [2, 3] and [4, 5], then
    [6, 7] and [8]. Time runs out while the second wave is at Postmark."""
    postmark_account(postmark, batch_size=2, calls_in_flight=2)
    messages = queued_emails(9, tag="soft")
    release = threading.Event()
    postmark.held = {m.address: release for m in messages[2:6]}
    soft_time_limit_when(lambda: all(postmark.received[m.address] for m in messages[2:6]),
                         then=lambda: threading.Timer(0.3, release.set).start())
    with pytest.raises(SoftTimeLimitExceeded):
        deliver_batch(message_ids=[m.pk for m in messages])
    by_pk = {m.pk: m for m in OutboundMessage.objects.filter(pk__in=[m.pk for m in messages])}
    assert [(by_pk[m.pk].status, by_pk[m.pk].attempts) for m in messages[:6]] == [(MessageStatus.SENT, 1)] * 6
    assert [(by_pk[m.pk].status, by_pk[m.pk].attempts) for m in messages[6:]] == [(MessageStatus.QUEUED, 0)] * 3
    assert sum(postmark.received[m.address] for m in messages[6:]) == 0


ANSWERS = st.sampled_from([None, INACTIVE, INVALID_TO])


_runs = itertools.count()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(ANSWERS, min_size=1, max_size=6), batch_size=st.integers(1, 4))
def test_a_batch_decides_for_each_message_what_a_call_for_it_alone_would(postmark, answers, batch_size):
    """The bulk path (calls of up to batch_size messages) against the
    per-message path (a delivery and a call for each message alone), for
    the same recipients and answers."""
    account = postmark_account(postmark, batch_size=batch_size)
    outcomes = []
    for bulk in (True, False):
        Suppression.objects.all().delete()
        messages = queued_emails(len(answers), tag=f"eq{next(_runs)}x")
        postmark.refuse = {m.address: a for m, a in zip(messages, answers, strict=True) if a}
        if bulk:
            deliver_batch(message_ids=[m.pk for m in messages])
        else:
            for message in messages:
                deliver_batch(message_ids=[message.pk])
        suppressed = set(Suppression.objects.values_list("address", flat=True))
        outcomes.append([(m.status, m.attempts, m.error, m.address in suppressed)
                         for m in OutboundMessage.objects.filter(pk__in=[m.pk for m in messages]).order_by("pk")])
    account.delete()
    assert outcomes[0] == outcomes[1]
