"""Delivery's Twilio calls go out on one event loop per worker process
through the SDK's aiohttp client (channels/delivery.py, `send_async`):
each message gets the answer to its own request, the account's timeout
holds (the SDK's async client sets none), and a provider that cannot be
reached is retried, not left ambiguous."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading

import pytest

from channels import services
from channels.delivery import deliver_batch
from channels.models import Adapter, MessageStatus, OutboundMessage
from channels.providers.twilio_messaging import TwilioProvider, _async_client_for
from consent.models import Channel
from tests.channels import factories
from tests.channels.conftest import TWILIO_SID, TWILIO_TOKEN
from tests.channels.fakes import KeyedTwilio

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db]
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}


@pytest.fixture
def keyed_twilio():
    fake = KeyedTwilio().start()
    yield fake
    fake.stop()


def sms_account(base_url: str, **options):
    return factories.account(Channel.SMS, Adapter.TWILIO, sender="+14155550000",
                             options={"base_url": base_url, **options})


def queue(template, key: str) -> OutboundMessage:
    return services.send(contact=factories.contact_with_everything(), data=DATA, origin=services.Origin(kind="api"),
                         idempotency_key=key, template_key=template.key).messages[0]


def test_each_message_of_a_wave_records_the_answer_to_its_own_request(twilio_env, keyed_twilio, sms_template):
    sms_account(keyed_twilio.url, calls_in_flight=8)
    messages = [queue(sms_template, f"own-{i}") for i in range(17)]  # waves of 1, 8 and 8
    for message in messages:
        keyed_twilio.answers[message.address] = (201, {"sid": f"SM{message.pk:032d}", "status": "queued"})
    report = deliver_batch(message_ids=[m.pk for m in messages])
    assert report.sent == 17
    for message in messages:
        message.refresh_from_db()
        assert (message.status, message.provider_message_id) == (MessageStatus.SENT, f"SM{message.pk:032d}")


def test_a_wave_on_the_loop_keeps_the_accounts_calls_in_flight(twilio_env, keyed_twilio, sms_template):
    # Waves of 1, then 3 at once: never more than 3 at the provider at once.
    sms_account(keyed_twilio.url, calls_in_flight=3)
    messages = [queue(sms_template, f"in-flight-{i}") for i in range(13)]
    keyed_twilio.slow, keyed_twilio.slow_seconds = {m.address for m in messages}, 0.2
    report = deliver_batch(message_ids=[m.pk for m in messages])
    assert report.sent == 13
    assert keyed_twilio.most_at_once == 3


def test_neither_of_the_sdks_clients_logs_each_request(twilio_env, keyed_twilio, sms_template, caplog):
    sms_account(keyed_twilio.url)
    messages = [queue(sms_template, f"quiet-{i}") for i in range(3)]  # the first alone, then on the loop
    with caplog.at_level(logging.INFO):
        assert deliver_batch(message_ids=[m.pk for m in messages]).sent == 3
    assert [r.getMessage() for r in caplog.records if r.name.startswith("twilio")] == []


def test_the_accounts_timeout_ends_a_call_whose_answer_does_not_come(twilio_env, keyed_twilio, sms_template):
    sms_account(keyed_twilio.url, timeout=0.5)
    message = queue(sms_template, "late")
    release = keyed_twilio.held[message.address] = threading.Event()
    try:
        report = deliver_batch(message_ids=[message.pk])
    finally:
        release.set()
    assert report.ambiguous == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.SENDING
    assert message.error.startswith("ambiguous, left for the status callback or the sweeper: no answer from Twilio")


def test_a_provider_that_refuses_the_connection_is_retried_with_backoff(twilio_env, sms_template):
    sms_account("http://127.0.0.1:1")  # nothing listens there: the request never went out
    message = queue(sms_template, "refused")
    report = deliver_batch(message_ids=[message.pk])
    assert (report.retried, report.ambiguous, report.failed) == (1, 0, 0)
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 1)
    assert message.error.startswith("Twilio unreachable")
    assert message.next_attempt_at is not None


def test_the_loop_sends_the_same_form_and_credentials_as_the_requests_client(twilio_env, fake_twilio, sms_template):
    """The async client's form is encoded and its credentials set by our
    session, not by aiohttp's FormData and BasicAuth: the provider must see
    what the SDK's requests client sends, byte for byte."""
    account = sms_account(fake_twilio.url)
    message = queue(sms_template, "same-form")
    message.content = {"body": "Olá Ana & co: 50% off = ✓ +1 [ok]?"}
    provider = TwilioProvider()

    async def send_on_a_loop():
        try:
            return await provider.send_async(message, account)
        finally:
            await _async_client_for(account).http_client.session.close()

    provider.send(message, account)
    asyncio.run(send_on_a_loop())
    by_requests, on_the_loop = fake_twilio.requests
    assert on_the_loop.body == by_requests.body
    assert on_the_loop.form["Body"] == "Olá Ana & co: 50% off = ✓ +1 [ok]?"
    assert on_the_loop.headers["content-type"] == "application/x-www-form-urlencoded"
    expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    assert on_the_loop.headers["authorization"] == by_requests.headers["authorization"] == expected
