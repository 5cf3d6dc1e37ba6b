"""Delivery is published on commit, batched per transaction, never for a
transaction that rolls back."""

from __future__ import annotations

import pytest
from django.db import transaction

from channels import services
from channels.delivery import deliver_batch
from channels.services import _DeliveryFlush
from channels.signals import message_status_changed
from tests.channels import factories

pytestmark = pytest.mark.django_db
DATA = {"event": {"code": "1"}}


def send(contact, template, key):
    return services.send(contact=contact, data=DATA, origin=services.Origin(kind="journey"), idempotency_key=key,
                         template_key=template.key)


def test_many_sends_in_one_transaction_publish_one_batch(sms_template, django_capture_on_commit_callbacks):
    contacts = [factories.contact_with_everything() for _ in range(5)]
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        ids = [send(c, sms_template, f"b{n}").messages[0].pk for n, c in enumerate(contacts)]
    flushes = [cb for cb in callbacks if isinstance(cb, _DeliveryFlush)]
    assert len(flushes) == 1
    assert flushes[0].ids == ids


def test_a_rolled_back_send_publishes_nothing_and_leaves_nothing(contact, sms_template,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                send(contact, sms_template, "rb")
                raise RuntimeError("the caller fails after sending")
        except RuntimeError:
            pass
    assert [cb for cb in callbacks if isinstance(cb, _DeliveryFlush)] == []
    assert not services.OutboundMessage.objects.exists()


def test_every_status_change_is_announced(contact, sms_template, console_accounts,
                                          django_capture_on_commit_callbacks):
    seen = []
    message_status_changed.connect(lambda sender, message, old_status, new_status, **kw:
                                   seen.append((old_status, new_status)), weak=False, dispatch_uid="seen")
    try:
        message = send(contact, sms_template, "sig").messages[0]
        with django_capture_on_commit_callbacks(execute=True):
            deliver_batch(message_ids=[message.pk])
    finally:
        message_status_changed.disconnect(dispatch_uid="seen")
    assert seen == [("queued", "sending"), ("sending", "sent"), ("sent", "delivered")]
