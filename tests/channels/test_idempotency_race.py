"""Two real connections send with the same idempotency key at once: one
message, one effect; the loser gets DUPLICATE with the winner's message."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from channels import services
from channels.models import OutboundMessage

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_concurrent_send_with_the_same_key_writes_one_message(contact, sms_template):
    first_inserted = threading.Event()
    results: dict[str, services.SendResult] = {}
    errors: list[BaseException] = []

    def send(name: str, hold: bool):
        try:
            with transaction.atomic():
                results[name] = services.send(
                    contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                    idempotency_key="same-key", template_key=sms_template.key,
                )
                if hold:
                    first_inserted.set()
                    # Hold the uncommitted row so the other insert must wait on it.
                    threading.Event().wait(1.0)
        except BaseException as error:  # reported below, not swallowed
            errors.append(error)
        finally:
            connection.close()

    winner = threading.Thread(target=send, args=("winner", True))
    winner.start()
    assert first_inserted.wait(10)
    loser = threading.Thread(target=send, args=("loser", False))
    loser.start()
    winner.join()
    loser.join()
    assert errors == []
    assert results["winner"].status == services.SendStatus.QUEUED
    assert results["loser"].status == services.SendStatus.DUPLICATE
    assert [m.pk for m in results["loser"].messages] == [m.pk for m in results["winner"].messages]
    assert OutboundMessage.objects.filter(idempotency_key="same-key").count() == 1


def test_the_loser_of_the_race_can_keep_using_its_transaction(contact, sms_template):
    """The savepoint inside send() keeps the caller's transaction usable."""
    services.send(contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                  idempotency_key="k", template_key=sms_template.key)
    with transaction.atomic():
        again = services.send(contact=contact, data={"event": {"code": "1"}}, origin=services.Origin(kind="api"),
                              idempotency_key="k", template_key=sms_template.key)
        assert again.status == services.SendStatus.DUPLICATE
        assert OutboundMessage.objects.count() == 1
