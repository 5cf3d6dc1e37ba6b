"""The gate's rules, one behaviour per test (consent/policy.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from consent import policy, services
from consent.models import ConsentSource, ConsentStatus, PushDevice, SuppressionReason
from consent.policy import Outcome, Reason
from tests.consent.factories import ContactFactory

pytestmark = pytest.mark.django_db

# 12:00 UTC is 12:00 in Lisbon in winter: outside any quiet window.
NOON = dt.datetime(2026, 1, 14, 12, 0, tzinfo=dt.UTC)


def grant(contact, channel="email", purpose="marketing", status=ConsentStatus.GRANTED, at=None):
    return services.consent_record(
        contact=contact, channel=channel, purpose=purpose, status=status,
        source=ConsentSource.CONFIRMATION if status == ConsentStatus.GRANTED else ConsentSource.API,
        actor="test", at=at or NOON - dt.timedelta(days=1),
    )


def decide(contact, channel="email", message_class="marketing", at=NOON):
    return policy.decide(contact=contact, channel=channel, message_class=message_class, at=at)


def test_marketing_without_a_grant_is_suppressed_with_a_readable_reason():
    decision = decide(ContactFactory())
    assert decision.outcome == Outcome.SUPPRESS
    assert decision.reason == Reason.NO_MARKETING_CONSENT


def test_marketing_with_a_grant_on_that_channel_is_allowed_and_names_the_record():
    contact = ContactFactory()
    record = grant(contact)
    decision = decide(contact)
    assert decision.allowed
    assert decision.consent_record_id == record.pk
    assert decision.address == contact.email


def test_a_grant_on_another_channel_does_not_allow_marketing_here():
    contact = ContactFactory()
    grant(contact, channel="email")
    assert decide(contact, channel="sms").reason == Reason.NO_MARKETING_CONSENT


def test_the_latest_record_wins_so_a_revocation_after_a_grant_suppresses():
    contact = ContactFactory()
    grant(contact, at=NOON - dt.timedelta(days=2))
    revoked = grant(contact, status=ConsentStatus.REVOKED, at=NOON - dt.timedelta(days=1))
    decision = decide(contact)
    assert decision.reason == Reason.CONSENT_REVOKED
    assert decision.consent_record_id == revoked.pk


def test_a_pending_double_opt_in_grant_never_allows_a_send():
    contact = ContactFactory()
    record = services.consent_record(
        contact=contact, channel="email", purpose="marketing", status=ConsentStatus.GRANTED,
        source=ConsentSource.FORM, actor="test", at=NOON - dt.timedelta(hours=1),
    )
    assert record.status == ConsentStatus.PENDING
    assert decide(contact).reason == Reason.CONSENT_PENDING


def test_an_expired_pending_grant_reads_as_no_consent():
    contact = ContactFactory()
    services.consent_record(
        contact=contact, channel="email", purpose="marketing", status=ConsentStatus.GRANTED,
        source=ConsentSource.FORM, actor="test", at=NOON - dt.timedelta(days=10),
    )
    assert decide(contact).reason == Reason.NO_MARKETING_CONSENT


def test_operational_email_needs_no_grant():
    decision = decide(ContactFactory(), message_class="operational")
    assert decision.allowed
    assert decision.reason == Reason.NO_CONSENT_NEEDED


@pytest.mark.parametrize("message_class", ["transactional", "operational"])
def test_a_revocation_on_sms_stops_transactional_and_operational_sms(message_class):
    contact = ContactFactory()
    grant(contact, channel="sms", purpose=message_class, status=ConsentStatus.REVOKED)
    decision = decide(contact, channel="sms", message_class=message_class)
    assert decision.reason == Reason.CONSENT_REVOKED


def test_a_revoked_operational_email_opt_out_does_not_block_a_receipt():
    contact = ContactFactory()
    grant(contact, channel="email", purpose="operational", status=ConsentStatus.REVOKED)
    assert not decide(contact, message_class="operational").allowed
    assert decide(contact, message_class="transactional").allowed


@pytest.mark.parametrize(
    ("channel", "blank_fields"),
    [("email", {"email": ""}), ("sms", {"phone": ""}), ("whatsapp", {"phone": "", "whatsapp_id": ""}),
     ("rcs", {"phone": ""}), ("push", {})],
)
def test_a_contact_without_an_address_on_the_channel_is_suppressed_no_address(channel, blank_fields):
    contact = ContactFactory(**blank_fields)
    decision = decide(contact, channel=channel, message_class="transactional")
    assert decision.outcome == Outcome.SUPPRESS
    assert decision.reason == Reason.NO_ADDRESS


def test_push_uses_an_active_device_and_ignores_deactivated_ones():
    contact = ContactFactory()
    device = PushDevice.objects.create(contact=contact, platform="android", token="tok-1")
    assert decide(contact, channel="push", message_class="transactional").address == "tok-1"
    services.push_device_deactivate(device=device, reason="unregistered")
    assert decide(contact, channel="push", message_class="transactional").reason == Reason.NO_ADDRESS


def test_in_app_is_addressed_by_external_id():
    contact = ContactFactory()
    assert decide(contact, channel="in_app", message_class="transactional").address == contact.external_id


def test_a_contact_suppression_stops_every_class_even_transactional():
    contact = ContactFactory()
    services.suppression_create(contact=contact, reason=SuppressionReason.LEGAL_HOLD, actor="test")
    decision = decide(contact, message_class="transactional")
    assert decision.reason == Reason.SUPPRESSED
    assert "legal_hold" in decision.detail


def test_an_address_suppression_on_one_channel_leaves_the_others_open():
    contact = ContactFactory()
    services.suppression_create(address=contact.email.upper(), channel="email",
                                reason=SuppressionReason.HARD_BOUNCE, actor="test")
    assert decide(contact, message_class="transactional").reason == Reason.SUPPRESSED
    assert decide(contact, channel="sms", message_class="transactional").allowed


def test_an_expired_or_lifted_suppression_no_longer_holds():
    contact = ContactFactory()
    services.suppression_create(contact=contact, reason=SuppressionReason.MANUAL, actor="test",
                                expires_at=NOON - dt.timedelta(minutes=1))
    lifted = services.suppression_create(contact=contact, reason=SuppressionReason.MANUAL, actor="test")
    services.suppression_lift(suppression=lifted, actor="test")
    assert decide(contact, message_class="transactional").allowed


def test_an_erased_or_merged_contact_is_never_messaged():
    erased = services.contact_erase(contact=ContactFactory(), actor="test")
    assert decide(erased, message_class="transactional").reason == Reason.CONTACT_INACTIVE
    survivor, merged = ContactFactory(), ContactFactory()
    services.contact_merge(survivor=survivor, merged=merged, actor="test")
    merged.refresh_from_db()
    assert decide(merged, message_class="transactional").reason == Reason.CONTACT_INACTIVE


def test_an_erased_address_stays_suppressed_when_it_comes_back_on_a_new_contact():
    contact = ContactFactory(email="gone@example.com")
    services.suppression_create(address="gone@example.com", reason=SuppressionReason.LEGAL_HOLD, actor="test")
    services.contact_erase(contact=contact, actor="test")
    newcomer = ContactFactory(email="gone@example.com")
    assert decide(newcomer, message_class="transactional").reason == Reason.SUPPRESSED


def test_batch_facts_decide_exactly_as_single_calls(django_assert_max_num_queries):
    contacts = [ContactFactory() for _ in range(6)]
    grant(contacts[0])
    grant(contacts[1], status=ConsentStatus.REVOKED)
    services.suppression_create(contact=contacts[2], reason=SuppressionReason.MANUAL, actor="test")
    PushDevice.objects.create(contact=contacts[3], platform="ios", token="t3")
    with django_assert_max_num_queries(6):
        facts = policy.load_facts(contacts, NOON)
    for contact in contacts:
        for channel in ("email", "sms", "push"):
            for message_class in ("marketing", "operational", "transactional"):
                single = decide(contact, channel=channel, message_class=message_class)
                batched = policy.decide(contact=contact, channel=channel, message_class=message_class,
                                        at=NOON, facts=facts)
                assert batched == single
