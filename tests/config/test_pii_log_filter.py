"""No personal data in logs: lines go out through the handlers configured
in settings.LOGGING, and every email and E.164 phone in them is masked."""

from __future__ import annotations

import io
import logging

import pytest
from django.conf import settings

EMAIL = "jane.doe@example.com"
PHONE = "+447700900123"


@pytest.fixture
def console():
    """What the configured console handler writes, read back."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def test_a_logged_email_and_phone_come_out_masked(console):
    logging.getLogger("channels.delivery").warning("bounce for %s, sms to %s failed", EMAIL, PHONE)

    out = console.getvalue()
    assert "bounce for j***@example.com, sms to +44********23 failed" in out
    assert EMAIL not in out and PHONE not in out


def test_an_address_in_a_traceback_comes_out_masked(console):
    try:
        raise ValueError(f"{EMAIL!r} is not deliverable")
    except ValueError:
        logging.getLogger("support.routing").exception("support could not route inbound message %s", 7)

    out = console.getvalue()
    assert "support could not route inbound message 7" in out
    assert "ValueError: 'j***@example.com' is not deliverable" in out
    assert EMAIL not in out


def test_a_library_logger_is_masked_too(console):
    logging.getLogger("celery.app.trace").error("Task failed for %s", {"to": PHONE})

    out = console.getvalue()
    assert "+44********23" in out and PHONE not in out


def test_numbers_that_are_not_phones_stay_readable(console):
    logging.getLogger("channels.delivery").info("sweeper re-enqueued %d messages (+%d from sending)", 1500, 12)

    assert "sweeper re-enqueued 1500 messages (+12 from sending)" in console.getvalue()


def test_every_configured_handler_carries_the_filter():
    # A handler added later without it would write addresses unmasked.
    handlers = settings.LOGGING["handlers"]
    assert handlers
    assert all("mask_personal_data" in handler.get("filters", []) for handler in handlers.values())
