"""Channels fixtures: a contact reachable everywhere, approved templates per
channel, console accounts, and the
soft time limit raised at a chosen moment."""

from __future__ import annotations

import signal
import threading

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from consent.models import Channel
from tests.channels import factories


@pytest.fixture
def contact(db):
    return factories.contact_with_everything()


@pytest.fixture
def sms_template(db):
    return factories.channel_template(Channel.SMS)


@pytest.fixture
def email_template(db):
    return factories.channel_template(Channel.EMAIL)


@pytest.fixture
def push_template(db):
    return factories.channel_template(Channel.PUSH)


@pytest.fixture
def console_accounts(db):
    return {channel: factories.account(channel) for channel in Channel.values}


@pytest.fixture(scope="session")
def celery_includes():
    return ["channels.tasks"]


TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "test-auth-token-not-a-secret"


@pytest.fixture
def twilio_env(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", TWILIO_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)


@pytest.fixture
def fake_twilio():
    from tests.channels.fakes import FakeTwilio

    fake = FakeTwilio().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_fcm():
    from tests.channels.fakes import FakeFcm

    fake = FakeFcm().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_smtp():
    from tests.channels.fakes import FakeSmtp

    fake = FakeSmtp(refuse={"gone@example.com"}).start()
    yield fake
    fake.stop()


@pytest.fixture
def twilio_accounts(db, twilio_env, fake_twilio):
    from channels.models import Adapter

    options = {"base_url": fake_twilio.url, "content_sids": {"code-rcs-operational": "HXrcs"}}
    return {
        channel: factories.account(channel, Adapter.TWILIO, sender=sender, options=options)
        for channel, sender in ((Channel.SMS, "+14155550000"), (Channel.WHATSAPP, "whatsapp:+14155550000"),
                                (Channel.RCS, "MG" + "1" * 32))
    }


@pytest.fixture
def soft_time_limit_when():
    """Raise SoftTimeLimitExceeded on the test's thread, as Celery's pool does
    at a task's soft time limit (SIGUSR1), as soon as `ready` holds."""
    from tests.channels.test_delivery_worker import wait_for

    def out_of_time(signum, frame):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGUSR1, out_of_time)
    target = threading.main_thread().ident
    helpers = []

    def arm(ready, then=lambda: None) -> None:
        def fire():
            wait_for(ready, message="the moment to stop")
            signal.pthread_kill(target, signal.SIGUSR1)
            then()

        helper = threading.Thread(target=fire, daemon=True)
        helpers.append(helper)
        helper.start()

    yield arm
    for helper in helpers:
        helper.join(30)
    signal.signal(signal.SIGUSR1, previous)

