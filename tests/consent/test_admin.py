"""The contact admin: search, consent at a glance, and the actions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from consent.admin import ContactForm
from consent.models import ConsentRecord, Contact, Suppression
from tests.consent.factories import ContactFactory

pytestmark = pytest.mark.django_db


def change_url(contact: Contact) -> str:
    return reverse("admin:consent_contact_change", args=[contact.pk])


def action_url(contact: Contact, name: str) -> str:
    return reverse(f"admin:consent_contact_{name}", args=[contact.pk])


def test_the_contact_list_finds_a_contact_by_email_or_phone(client, operator):
    wanted = ContactFactory(email="find.me@example.com", phone="+351912345600")
    ContactFactory()
    client.force_login(operator)
    for term in ("find.me@example.com", "Find.Me@Example.com", "+351912345600", wanted.external_id):
        page = client.get(reverse("admin:consent_contact_changelist"), {"q": term})
        assert page.status_code == 200
        assert list(page.context["cl"].result_list) == [wanted]
    page = client.get(reverse("admin:consent_contact_changelist"), {"q": "find.me"})
    assert list(page.context["cl"].result_list) == []


def test_identifiers_saved_in_admin_are_stored_as_the_api_stores_them(client, operator):
    contact = ContactFactory()
    form = ContactForm(instance=contact, data={
        **{name: getattr(contact, name) for name in ContactForm.Meta.fields if name != "attributes"},
        "attributes": "{}", "email": " Jane@Example.COM ", "phone": "+1 415 555 0100"})
    assert form.is_valid(), form.errors
    form.save()
    contact.refresh_from_db()
    assert (contact.email, contact.phone) == ("jane@example.com", "+14155550100")
    client.force_login(operator)
    found = client.get(reverse("admin:consent_contact_changelist"), {"q": "Jane@Example.com"})
    assert list(found.context["cl"].result_list) == [contact]
    assert not ContactForm(instance=contact, data={**form.data, "phone": "12"}).is_valid()


def test_the_contact_page_shows_consent_per_channel_and_purpose(client, agent):
    contact = ContactFactory()
    ConsentRecord.objects.create(contact=contact, channel="sms", purpose="marketing", status="revoked",
                                 source="keyword", evidence={"keyword": "STOP"})
    client.force_login(agent)
    page = client.get(change_url(contact))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Consent now" in html and "revoked" in html and "STOP" in html


def test_an_agent_records_consent_and_is_named_as_its_source(client, agent):
    contact = ContactFactory()
    client.force_login(agent)
    response = client.post(action_url(contact, "record_consent"), {
        "_form_submitted": "on", "channel": "sms", "purpose": "operational", "status": "granted",
        "evidence": "Customer asked on the phone",
    })
    assert response.status_code == 302
    record = contact.consent_records.get()
    assert record.source == "admin"
    assert record.recorded_by == "user:ada_agent"
    assert record.evidence["note"] == "Customer asked on the phone"


def test_an_incomplete_consent_form_is_shown_again_with_its_error(client, agent):
    contact = ContactFactory()
    client.force_login(agent)
    response = client.post(action_url(contact, "record_consent"), {"_form_submitted": "on", "channel": "fax"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not contact.consent_records.exists()


def test_a_marketer_cannot_record_consent_or_suppress(client, marketer):
    contact = ContactFactory()
    client.force_login(marketer)
    response = client.post(action_url(contact, "suppress_contact"), {"_form_submitted": "on", "reason": "manual"})
    assert response.status_code == 403
    assert not Suppression.objects.exists()


def test_an_operator_suppresses_a_contact_with_themself_as_author(client, operator):
    contact = ContactFactory()
    client.force_login(operator)
    client.post(action_url(contact, "suppress_contact"), {"_form_submitted": "on", "reason": "manual",
                                                          "channel": "sms", "note": "complaint by phone"})
    suppression = Suppression.objects.get()
    assert (suppression.contact, suppression.channel, suppression.created_by) == (contact, "sms",
                                                                                  "user:otto_operator")


def test_an_operator_merges_a_duplicate_into_the_contact(client, operator):
    survivor, duplicate = ContactFactory(), ContactFactory()
    client.force_login(operator)
    client.post(action_url(survivor, "merge_contact"),
                {"_form_submitted": "on", "other_external_id": duplicate.external_id})
    duplicate.refresh_from_db()
    assert duplicate.merged_into == survivor


def test_merging_an_unknown_contact_shows_a_form_error(client, operator):
    survivor = ContactFactory()
    client.force_login(operator)
    response = client.post(action_url(survivor, "merge_contact"),
                           {"_form_submitted": "on", "other_external_id": "ghost"})
    assert "No contact has the external id" in response.content.decode()


def test_someone_without_a_role_sees_no_contacts(client, outsider):
    contact = ContactFactory()
    client.force_login(outsider)
    assert client.get(reverse("admin:consent_contact_changelist")).status_code == 403
    assert client.get(change_url(contact)).status_code == 403


def test_the_ledger_cannot_be_edited_in_the_admin_even_by_a_superuser(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    record = ConsentRecord.objects.create(contact=ContactFactory(), channel="sms", purpose="marketing",
                                          status="granted", source="api")
    client.force_login(admin_user)
    url = reverse("admin:consent_consentrecord_change", args=[record.pk])
    page = client.get(url)
    assert page.status_code == 200
    client.post(url, {"status": "revoked"})
    record.refresh_from_db()
    assert record.status == "granted"
    assert client.get(reverse("admin:consent_consentrecord_add")).status_code == 403


def test_the_contact_list_query_count_does_not_grow_with_the_rows(client, operator, django_assert_max_num_queries):
    client.force_login(operator)
    ContactFactory.create_batch(3)
    with django_assert_max_num_queries(12) as small:
        client.get(reverse("admin:consent_contact_changelist"))
    ContactFactory.create_batch(40)
    with django_assert_max_num_queries(len(small.captured_queries)):
        client.get(reverse("admin:consent_contact_changelist"))


def test_nobody_deletes_a_contact_they_erase_it_instead(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    contact = ContactFactory()
    client.force_login(admin_user)
    assert client.get(reverse("admin:consent_contact_delete", args=[contact.pk])).status_code == 403
    response = client.post(action_url(contact, "erase_contact"), {"_form_submitted": "on", "confirm": "erase"})
    assert "Type ERASE in capitals" in response.content.decode()
    client.post(action_url(contact, "erase_contact"), {"_form_submitted": "on", "confirm": "ERASE"})
    contact.refresh_from_db()
    assert contact.erased_at is not None and contact.email == ""
