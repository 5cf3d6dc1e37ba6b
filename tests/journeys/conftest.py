from __future__ import annotations

import datetime as dt

import pytest

from journeys.events import EventIn, events_ingest
from journeys.services import run_until_idle
from tests.journeys import factories

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Monday, well before any DST change


@pytest.fixture
def t0() -> dt.datetime:
    return T0


@pytest.fixture
def email_template(db):
    return factories.template("welcome-email", "email")


@pytest.fixture
def sms_template(db):
    return factories.template("nudge-sms", "sms")


@pytest.fixture
def push_template(db):
    return factories.template("nudge-push", "push")


@pytest.fixture
def marketing_email(db):
    return factories.template("promo-email", "email", "marketing")


@pytest.fixture
def marketing_sms(db):
    return factories.template("promo-sms", "sms", "marketing")


def emit(contact, name: str, at: dt.datetime, key: str | None = None, **properties) -> int:
    """Store one event as the API would; returns how many were accepted."""
    result = events_ingest(
        events=[EventIn(name=name, external_id=contact.external_id, occurred_at=at, properties=properties,
                        idempotency_key=key or f"{contact.external_id}:{name}:{at.isoformat()}")],
        actor="test",
        now=at,
    )
    return result.accepted


def run(at: dt.datetime) -> dict:
    return run_until_idle(now=at)
