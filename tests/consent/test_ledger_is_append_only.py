"""Consent is a ledger (DESIGN.md invariant 2): records are appended, never
updated or deleted, by the ORM or by raw SQL."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from consent import services
from consent.models import AppendOnlyError, ConsentRecord
from tests.consent.factories import ConsentRecordFactory, ContactFactory

pytestmark = pytest.mark.django_db


def test_saving_an_existing_record_is_refused():
    record = ConsentRecordFactory()
    record.status = "revoked"
    with pytest.raises(AppendOnlyError):
        record.save()


def test_deleting_a_record_is_refused():
    record = ConsentRecordFactory()
    with pytest.raises(AppendOnlyError):
        record.delete()
    with pytest.raises(AppendOnlyError):
        ConsentRecord.objects.filter(pk=record.pk).delete()


def test_queryset_update_is_refused():
    ConsentRecordFactory()
    with pytest.raises(AppendOnlyError):
        ConsentRecord.objects.update(status="revoked")


@pytest.mark.postgres
def test_the_database_refuses_a_raw_update_or_delete():
    record = ConsentRecordFactory()
    for sql in ("UPDATE consent_consentrecord SET status = 'revoked' WHERE id = %s",
                "DELETE FROM consent_consentrecord WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [record.pk])
    record.refresh_from_db()
    assert record.status == "granted"


@pytest.mark.postgres
def test_erasure_may_only_redact_the_evidence():
    contact = ContactFactory()
    record = ConsentRecordFactory(contact=contact, evidence={"ip": "203.0.113.9"})
    services.contact_erase(contact=contact, actor="test")
    record.refresh_from_db()
    assert record.evidence == {"redacted": True}
    assert record.status == "granted"


def test_a_change_of_mind_is_a_new_record_and_both_remain():
    contact = ContactFactory()
    for status in ("granted", "revoked", "granted"):
        services.consent_record(contact=contact, channel="sms", purpose="operational", status=status,
                                source="api", actor="test")
    assert list(contact.consent_records.order_by("id").values_list("status", flat=True)) == [
        "granted", "revoked", "granted"]
    assert all(r.wording_version == "2026-01" for r in contact.consent_records.all())
