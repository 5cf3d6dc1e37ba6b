"""SendBatch: many sends decided as `send` decides each, written together."""

from __future__ import annotations

import pytest
from django.utils import timezone

from channels import services
from channels.models import DeliveryEvent, MessageStatus, OutboundMessage
from consent.models import Suppression
from tests.channels import factories

pytestmark = pytest.mark.django_db

DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}


def api_origin():
    return services.Origin(kind=services.OriginKind.API, label="test")


def test_nothing_is_written_until_the_flush_and_then_every_row_with_its_event(contact, sms_template):
    batch = services.SendBatch(contacts=[contact], now=timezone.now())
    first = batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="k1",
                       template_key=sms_template.key)
    second = batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="k2",
                        template_key="no-such-template")
    assert (first.status, second.status) == (services.SendStatus.QUEUED, services.SendStatus.FAILED)
    assert not OutboundMessage.objects.exists()

    batch.flush()

    rows = {m.idempotency_key: m for m in OutboundMessage.objects.all()}
    assert (rows["k1"].status, rows["k1"].content["body"]) == (MessageStatus.QUEUED, "Hi Ana, code 42")
    assert (rows["k2"].status, rows["k2"].decision_reason) == (MessageStatus.RENDER_FAILED, "unknown_template")
    assert first.messages[0].pk == rows["k1"].pk
    assert sorted(DeliveryEvent.objects.values_list("message__idempotency_key", "status")) == [
        ("k1", "queued"), ("k2", "render_failed")]


def test_a_key_sent_twice_in_one_batch_is_a_duplicate_of_the_first(contact, sms_template):
    batch = services.SendBatch(contacts=[contact], now=timezone.now())
    batch.prepare(idempotency_keys=["k1"], template_keys=[sms_template.key])
    first = batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="k1",
                       template_key=sms_template.key)
    again = batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="k1",
                       template_key=sms_template.key)
    batch.flush()

    assert again.status == services.SendStatus.DUPLICATE
    assert again.messages == first.messages
    assert OutboundMessage.objects.count() == 1


def test_a_contact_the_batch_did_not_load_is_decided_on_its_own_facts(contact, sms_template):
    other = factories.contact_with_everything()
    Suppression.objects.create(contact=other, channel="sms", reason="manual")
    batch = services.SendBatch(contacts=[contact], now=timezone.now())

    result = batch.send(contact=other, data=DATA, origin=api_origin(), idempotency_key="k1",
                        template_key=sms_template.key)

    assert (result.status, result.reason) == (services.SendStatus.SUPPRESSED, "suppressed")


def test_sends_discarded_after_a_mark_are_never_written_and_their_keys_are_free(contact, sms_template):
    batch = services.SendBatch(contacts=[contact], now=timezone.now())
    batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="kept",
               template_key=sms_template.key)
    mark = batch.mark()
    batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="failed-step",
               template_key=sms_template.key)
    batch.discard_after(mark)
    retried = batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="failed-step",
                         template_key=sms_template.key)
    batch.flush()

    assert retried.status == services.SendStatus.QUEUED
    assert sorted(OutboundMessage.objects.values_list("idempotency_key", flat=True)) == ["failed-step", "kept"]


def test_a_row_the_batch_writes_reads_back_as_the_same_send_made_alone(contact, sms_template):
    now = timezone.now()
    services.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="alone",
                  template_key=sms_template.key, now=now)
    batch = services.SendBatch(contacts=[contact], now=now)
    batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="batched",
               template_key=sms_template.key)
    batch.flush()

    def row(key):
        values = OutboundMessage.objects.filter(idempotency_key=key).values().get()
        return {name: value for name, value in values.items() if name not in ("id", "idempotency_key")}

    assert row("batched") == row("alone")


def test_a_flush_whose_key_another_writer_took_raises_and_writes_nothing(contact, sms_template):
    from django.db import IntegrityError, transaction

    batch = services.SendBatch(contacts=[contact], now=timezone.now())
    batch.prepare(idempotency_keys=["k1", "k2"], template_keys=[sms_template.key])
    for key in ("k1", "k2"):
        batch.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key=key,
                   template_key=sms_template.key)
    services.send(contact=contact, data=DATA, origin=api_origin(), idempotency_key="k2",
                  template_key=sms_template.key)

    with pytest.raises(IntegrityError), transaction.atomic():
        batch.flush()

    assert list(OutboundMessage.objects.values_list("idempotency_key", flat=True)) == ["k2"]
    assert DeliveryEvent.objects.count() == 1
