"""The sweeper's choices, without a worker: what it re-enqueues and what it gives up on."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from channels import services
from channels.delivery import messages_sweep_stuck
from channels.models import MessageStatus, OutboundMessage
from channels.services import _DeliveryFlush

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(contact, sms_template):
    return services.send(contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                         idempotency_key="sw", template_key=sms_template.key).messages[0]


def later(seconds: int = 601) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=seconds)


def test_fresh_rows_are_left_alone(queued):
    assert messages_sweep_stuck(now=later(10)) == 0


def test_a_lost_queued_row_is_published_again_once_per_threshold(queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        assert messages_sweep_stuck(now=later()) == 1
    assert [cb.ids for cb in callbacks if isinstance(cb, _DeliveryFlush)] == [[queued.pk]]
    assert messages_sweep_stuck(now=later(602)) == 0  # restamped: waits a full threshold again


def test_a_row_stuck_in_sending_goes_back_to_the_queue(queued):
    OutboundMessage.objects.filter(pk=queued.pk).update(status=MessageStatus.SENDING, sending_at=timezone.now(),
                                                        attempts=1)
    assert messages_sweep_stuck(now=later()) == 1
    queued.refresh_from_db()
    assert queued.status == MessageStatus.QUEUED


def test_a_row_that_killed_its_worker_every_time_fails_instead_of_looping(queued, settings):
    OutboundMessage.objects.filter(pk=queued.pk).update(
        status=MessageStatus.SENDING, sending_at=timezone.now(), attempts=settings.CHANNELS_MAX_ATTEMPTS
    )
    assert messages_sweep_stuck(now=later()) == 0
    queued.refresh_from_db()
    assert queued.status == MessageStatus.FAILED
    assert "worker lost mid-delivery" in queued.error
