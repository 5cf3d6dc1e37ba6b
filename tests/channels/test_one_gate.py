"""Invariant 1: no path sends without consent.policy. Every way a message
can come to exist goes through the gate; a refused contact gets nothing
queued on any of them, and delivery only ever sends rows that were queued."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone

from channels import services
from channels.delivery import deliver_batch
from channels.inbound import inbound_receive
from channels.models import MessageStatus, OutboundMessage
from consent import services as consent_services
from consent.models import Channel, SuppressionReason
from consent.policy import Decision, Outcome
from tests.channels import factories

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
DATA = {"event": {"code": "1"}}


def _writes_outbound_rows(path: Path) -> bool:
    """True if the module constructs OutboundMessage rows (OutboundMessage(...),
    .objects.create / bulk_create / get_or_create / update_or_create)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "OutboundMessage":
                return True
            if isinstance(func, ast.Attribute) and func.attr in (
                "create", "bulk_create", "get_or_create", "update_or_create"
            ):
                chain = ast.unparse(func.value)
                if chain.startswith("OutboundMessage.objects"):
                    return True
    return False


def test_only_channels_services_creates_outbound_messages():
    writers = [
        str(path.relative_to(ROOT))
        for path in ROOT.glob("*/**/*.py")
        if ".venv" not in path.parts and "tests" not in path.parts and "migrations" not in path.parts
        and _writes_outbound_rows(path)
    ]
    assert writers == ["channels/services.py"]


def _raw_status_updates(path: Path) -> list[int]:
    """Lines where the module sets OutboundMessage.status with a queryset
    .update(status=...), bypassing channels' transition services."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"):
            continue
        sets_status = any(kw.arg == "status" or (kw.arg is None and "status" in ast.unparse(kw.value))
                          for kw in node.keywords)
        if sets_status and "OutboundMessage" in ast.unparse(node.func.value):
            lines.append(node.lineno)
    return lines


def test_the_raw_status_update_finder_sees_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("OutboundMessage.objects.filter(pk=1).update(attempts=2)\n"
                      "OutboundMessage.objects.filter(pk=1).update(status='sent')\n"
                      "Journey.objects.update(status='paused')\n")
    assert _raw_status_updates(sample) == [2]


def test_no_app_outside_channels_changes_a_message_status_with_a_raw_update():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(ROOT.glob("*/**/*.py"))
        if ".venv" not in path.parts and "tests" not in path.parts and "migrations" not in path.parts
        and path.relative_to(ROOT).parts[0] != "channels"
        for line in _raw_status_updates(path)
    ]
    assert offenders == [], "status changes must go through channels.services.message_transition"


@pytest.fixture
def suppressed(contact):
    consent_services.suppression_create(reason=SuppressionReason.LEGAL_HOLD, actor="test", contact=contact)
    return contact


def test_a_template_send_to_a_suppressed_contact_queues_nothing(suppressed, sms_template):
    result = services.send(contact=suppressed, data=DATA, origin=services.Origin(kind="journey"),
                           idempotency_key="a", template_key=sms_template.key)
    assert result.status == services.SendStatus.SUPPRESSED


def test_a_ladder_to_a_suppressed_contact_queues_nothing(suppressed, sms_template, email_template):
    result = services.send(contact=suppressed, data=DATA, origin=services.Origin(kind="case", case_id=1),
                           idempotency_key="b", ladder=[services.Rung("sms", sms_template.key),
                                                        services.Rung("email", email_template.key)])
    assert [m.status for m in result.messages] == [MessageStatus.SUPPRESSED] * 2


def test_a_keyword_answer_to_a_suppressed_contact_is_suppressed(suppressed):
    inbound_receive(provider="twilio", provider_message_id="SMh", from_address=suppressed.phone, to_address="",
                    body="HELP", payload={})
    assert OutboundMessage.objects.get(origin_kind="system").status == MessageStatus.SUPPRESSED


def test_a_test_send_to_a_suppressed_seed_address_is_suppressed(settings, sms_template):
    settings.TEMPLATES_INTERNAL_SEED_ADDRESSES = ["qa@example.com"]
    email = factories.channel_template(Channel.EMAIL)
    contact = factories.contact_with_everything(email="qa@example.com")
    consent_services.suppression_create(reason=SuppressionReason.MANUAL, actor="test", contact=contact)
    message = services.message_test_send(version=email.live_version, address="qa@example.com", data=None,
                                         actor="test")
    assert message.status == MessageStatus.SUPPRESSED and message.is_test


def test_a_deferred_message_is_checked_again_when_released(contact, sms_template):
    now = timezone.now()
    services.register_send_guard("hold", lambda **kw: Decision(Outcome.DEFER, "held", until=now))
    try:
        message = services.send(contact=contact, data=DATA, origin=services.Origin(kind="journey"),
                                idempotency_key="d", template_key=sms_template.key, now=now).messages[0]
    finally:
        services._send_guards.pop("hold")
    consent_services.suppression_create(reason=SuppressionReason.MANUAL, actor="test", contact=contact)
    assert services.messages_release_deferred(now=now + dt.timedelta(seconds=1)) == 0
    message.refresh_from_db()
    assert message.status == MessageStatus.SUPPRESSED


def test_delivery_never_sends_a_row_that_is_not_queued(suppressed, sms_template, console_accounts):
    result = services.send(contact=suppressed, data=DATA, origin=services.Origin(kind="api"),
                           idempotency_key="e", template_key=sms_template.key)
    report = deliver_batch(message_ids=[m.pk for m in result.messages])
    assert report.claimed == 0
    assert OutboundMessage.objects.get().status == MessageStatus.SUPPRESSED
