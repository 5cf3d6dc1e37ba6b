"""Addresses in the admin: masked for roles without consent.view_personal_data
(marketer, reviewer), shown to the agent, the operator and superusers. Search
by a full address finds nothing for the former, so a masked row cannot be
tied to an address by typing it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from channels.inbound import inbound_receive
from channels.models import OutboundMessage
from consent import services
from consent.models import Contact, Suppression
from support import services as support_services

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"
MASKED_EMAIL = "j***@example.com"
PHONE = "+14155550142"
MASKED_PHONE = "+14*******42"


@pytest.fixture
def jane() -> Contact:
    contact, _ = services.contact_upsert(
        external_id="cus_jane", data={"email": "jane.old@example.com", "phone": PHONE}, actor="test"
    )
    contact, _ = services.contact_upsert(external_id="cus_jane", data={"email": EMAIL}, actor="test")
    return contact


def page(client, user: User, url: str, **params) -> str:
    client.force_login(user)
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def test_roles_that_work_with_customers_hold_the_permission(marketer, reviewer, agent, operator):
    holders = {user.username for user in (marketer, reviewer, agent, operator)
               if user.has_perm("consent.view_personal_data")}
    assert holders == {agent.username, operator.username}


def test_the_contact_list_masks_addresses_for_a_marketer(client, marketer, jane):
    html = page(client, marketer, reverse("admin:consent_contact_changelist"))
    assert "cus_jane" in html and MASKED_EMAIL in html and MASKED_PHONE in html
    assert EMAIL not in html and PHONE not in html


def test_the_contact_list_shows_addresses_to_an_operator(client, operator, jane):
    html = page(client, operator, reverse("admin:consent_contact_changelist"))
    assert EMAIL in html and PHONE in html


def test_a_reviewer_typing_a_full_address_finds_no_contact(client, reviewer, jane):
    client.force_login(reviewer)
    for term in (EMAIL, PHONE):
        response = client.get(reverse("admin:consent_contact_changelist"), {"q": term})
        assert list(response.context["cl"].result_list) == []
    response = client.get(reverse("admin:consent_contact_changelist"), {"q": "cus_jane"})
    assert list(response.context["cl"].result_list) == [jane]


def test_an_operator_finds_a_contact_by_its_address(client, operator, jane):
    client.force_login(operator)
    response = client.get(reverse("admin:consent_contact_changelist"), {"q": EMAIL})
    assert list(response.context["cl"].result_list) == [jane]


def test_the_contact_page_and_its_history_are_masked_for_a_reviewer(client, reviewer, jane):
    change = page(client, reviewer, reverse("admin:consent_contact_change", args=[jane.pk]))
    history = page(client, reviewer, reverse("admin:consent_contact_history", args=[jane.pk]))
    oldest = jane.history.earliest("history_date")
    version = page(client, reviewer, reverse("admin:consent_contact_simple_history", args=[jane.pk, oldest.pk]))

    assert MASKED_EMAIL in change and MASKED_PHONE in change
    assert "j***@example.com" in history  # the email change, old and new, masked
    for html in (change, history, version):
        assert EMAIL not in html and "jane.old@example.com" not in html and PHONE not in html


def test_the_contact_page_history_shows_the_change_to_an_agent(client, agent, jane):
    history = page(client, agent, reverse("admin:consent_contact_history", args=[jane.pk]))
    assert "jane.old@example.com" in history and EMAIL in history


def test_a_superuser_sees_every_address(client, jane):
    boss = User.objects.create_superuser("boss", password="pw-for-tests-only")
    html = page(client, boss, reverse("admin:consent_contact_change", args=[jane.pk]))
    assert EMAIL in html and PHONE in html


def test_suppressions_are_masked_in_the_list_yet_a_reviewer_can_suppress_an_address(client, reviewer):
    services.suppression_create(address=EMAIL, reason="manual", actor="test")
    html = page(client, reviewer, reverse("admin:consent_suppression_changelist"))
    assert MASKED_EMAIL in html and EMAIL not in html

    response = client.post(reverse("admin:consent_suppression_add"),
                           {"address": "other.person@example.com", "channel": "", "reason": "manual", "note": ""})
    assert response.status_code == 302
    assert Suppression.objects.filter(address="other.person@example.com").exists()


def test_the_message_log_and_replies_are_masked_for_a_marketer(client, marketer, jane):
    message = OutboundMessage.objects.create(
        contact=jane, channel="sms", address=PHONE, origin_kind="api", idempotency_key="m1",
        status="failed", status_changed_at=timezone.now(), created_at=timezone.now(),
        error=f"21211 invalid 'To' {PHONE}",
    )
    reply = inbound_receive(provider="twilio", provider_message_id="SMjane", from_address=PHONE, to_address="",
                            body=f"hello, it is {EMAIL}", payload={"From": PHONE})

    message_page = page(client, marketer, reverse("admin:channels_outboundmessage_change", args=[message.pk]))
    replies = page(client, marketer, reverse("admin:channels_inboundmessage_changelist"))
    reply_page = page(client, marketer, reverse("admin:channels_inboundmessage_change", args=[reply.pk]))
    found = page(client, marketer, reverse("admin:channels_inboundmessage_changelist"), q=PHONE)

    assert MASKED_PHONE in message_page and "hello, it is " + MASKED_EMAIL in replies
    assert MASKED_PHONE in reply_page and "hello, it is " + MASKED_EMAIL in reply_page
    for html in (message_page, replies, reply_page):
        assert PHONE not in html and EMAIL not in html
    assert "hello" not in found  # searching by the number finds no reply


def test_the_case_page_masks_addresses_for_a_case_viewer_without_the_permission(client, jane, operator):
    supervisor = User.objects.create_user("sam_supervisor", is_staff=True)
    supervisor.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_supportcase", "view_all_cases"], content_type__app_label="support"))
    case = support_services.case_open(contact=jane, subject="Help", category="other", priority="normal",
                                      source="api", actor="test", now=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC))
    inbound_receive(provider="twilio", provider_message_id="SMcase", from_address=PHONE, to_address="",
                    body=f"still waiting, mail me at {EMAIL}", payload={})
    support_services.case_note_add(case=case, author=operator, body=f"customer asked for {EMAIL}")
    url = reverse("admin:support_supportcase_change", args=[case.pk])

    masked = page(client, supervisor, url)
    shown = page(client, operator, url)

    # The sender's number, the reply's text, the note and its timeline entry.
    assert "still waiting, mail me at " + MASKED_EMAIL in masked and MASKED_PHONE in masked
    assert "customer asked for " + MASKED_EMAIL in masked
    assert PHONE not in masked and EMAIL not in masked
    assert PHONE in shown and EMAIL in shown
