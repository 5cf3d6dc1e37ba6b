"""Identity merge and erasure."""

from __future__ import annotations

import pytest

from consent import policy, services
from consent.models import ContactMerge, PushDevice
from tests.consent.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_merging_copies_consent_moves_devices_and_records_the_merge():
    survivor = ContactFactory(phone="")
    merged = ContactFactory(email="", phone="+351912345670")
    services.consent_record(contact=merged, channel="sms", purpose="marketing", status="granted",
                            source="confirmation", actor="test")
    PushDevice.objects.create(contact=merged, platform="ios", token="tok")
    merge = services.contact_merge(survivor=survivor, merged=merged, actor="alice")
    survivor.refresh_from_db()
    merged.refresh_from_db()
    assert merged.merged_into == survivor
    assert survivor.phone == "+351912345670" and merged.phone == ""
    assert PushDevice.objects.get(token="tok").contact == survivor
    decision = policy.decide(contact=survivor, channel="sms", message_class="marketing",
                             at=survivor.consent_records.get().recorded_at)
    assert decision.allowed
    assert merge.moved["consent_records"] == 1
    assert merged.consent_records.count() == 1, "the merged contact's own ledger stays as it was"
    assert ContactMerge.objects.get().merged_by == "alice"


def test_merging_a_contact_into_itself_or_twice_is_refused():
    a, b = ContactFactory(), ContactFactory()
    with pytest.raises(services.ConsentError):
        services.contact_merge(survivor=a, merged=a, actor="t")
    services.contact_merge(survivor=a, merged=b, actor="t")
    with pytest.raises(services.ConsentError):
        services.contact_merge(survivor=a, merged=b, actor="t")


def test_higher_apps_move_their_rows_through_a_registered_handler():
    seen = []
    services.register_merge_handler("test-rows", lambda survivor, merged: seen.append((survivor, merged)) or 3)
    try:
        a, b = ContactFactory(), ContactFactory()
        merge = services.contact_merge(survivor=a, merged=b, actor="t")
    finally:
        services._merge_handlers.pop("test-rows")
    assert merge.moved["test-rows"] == 3 and seen == [(a, b)]


def test_erasure_anonymises_the_contact_and_every_history_row():
    contact = ContactFactory(email="ana@example.com", phone="+351912345678", attributes={"first_name": "Ana"})
    contact.email = "ana2@example.com"
    contact.save()
    services.contact_erase(contact=contact, actor="dpo")
    contact.refresh_from_db()
    assert contact.erased_at is not None
    assert (contact.email, contact.phone, contact.attributes) == ("", "", {})
    for row in contact.history.all():
        assert row.email == "" and row.phone == "" and row.attributes == {}
        assert "ana" not in row.external_id
    assert contact.history.first().history_change_reason == "erased by dpo"


def test_erasure_is_idempotent():
    contact = ContactFactory()
    first = services.contact_erase(contact=contact, actor="t").erased_at
    assert services.contact_erase(contact=contact, actor="t").erased_at == first
