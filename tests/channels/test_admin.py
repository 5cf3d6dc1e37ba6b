"""The message log, the test-send page and provider accounts in admin, for
each role (allowed and denied)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from channels import services
from channels.models import OutboundMessage, ProviderAccount
from consent.models import Channel
from tests.channels import factories

pytestmark = pytest.mark.django_db
LOG = reverse("admin:channels_outboundmessage_changelist")
TEST_SEND = reverse("admin:channels_test_send")


def logged_in(client, user):
    client.force_login(user)
    return client


def some_messages(contact, template, n=3):
    return [services.send(contact=contact, data={"event": {"code": str(i)}}, origin=services.Origin(kind="api"),
                          idempotency_key=f"adm-{i}", template_key=template.key).messages[0] for i in range(n)]


def test_the_message_log_lists_with_a_bounded_number_of_queries(client, operator, contact, sms_template,
                                                                django_assert_max_num_queries):
    some_messages(contact, sms_template, 3)
    logged_in(client, operator)
    client.get(LOG)  # warm caches (content types, permissions)
    with django_assert_max_num_queries(20) as few:
        assert client.get(LOG).status_code == 200
    for i in range(3, 15):
        services.send(contact=contact, data={"event": {"code": str(i)}}, origin=services.Origin(kind="api"),
                      idempotency_key=f"more-{i}", template_key=sms_template.key)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LOG)
    assert response.status_code == 200
    counts = [q["sql"] for q in few.captured_queries if "COUNT(" in q["sql"] and "outboundmessage" in q["sql"]]
    assert counts, "the paginator counts something"
    assert all("LIMIT 10000" in sql for sql in counts), counts  # never the whole table


def test_the_log_finds_a_message_by_whole_identifier_and_only_by_it(client, operator, contact, sms_template):
    wanted, other = some_messages(contact, sms_template, 2)
    OutboundMessage.objects.filter(pk=wanted.pk).update(provider_message_id="SM0123abcd")
    logged_in(client, operator)

    def found(term: str) -> list[OutboundMessage]:
        page = client.get(LOG, {"q": term})
        assert page.status_code == 200
        return list(page.context["cl"].result_list)

    assert found("SM0123abcd") == [wanted]
    assert found(f" {wanted.idempotency_key} ") == [wanted]
    assert found(contact.external_id) == [other, wanted]
    assert found("SM0123") == []  # whole values only, as before
    assert found("sm0123ABCD") == []  # identifiers as stored


@pytest.mark.parametrize("query", ["channel=sms", "status=queued", "message_class=operational", "origin_kind=api",
                                   "created_at__gte=2026-01-01+00%3A00%3A00%2B00%3A00"])
def test_the_log_filters_by_channel_status_class_origin_and_date(client, operator, contact, sms_template, query):
    some_messages(contact, sms_template, 1)
    assert logged_in(client, operator).get(f"{LOG}?{query}").status_code == 200


def test_a_message_page_shows_content_reason_ladder_and_timeline(client, reviewer, contact, sms_template,
                                                                 email_template):
    result = services.send(contact=contact, data={"event": {"code": "77"}}, origin=services.Origin(kind="api"),
                           idempotency_key="page", ladder=[services.Rung(Channel.SMS, sms_template.key),
                                                           services.Rung(Channel.EMAIL, email_template.key)])
    page = logged_in(client, reviewer).get(reverse("admin:channels_outboundmessage_change",
                                                args=[result.messages[0].pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "code 77" in text
    assert "no_consent_needed" in text
    assert "Ladder #" in text and email_template.key in text
    assert "Timeline" in text


def test_an_outsider_cannot_see_the_message_log(client, outsider):
    assert logged_in(client, outsider).get(LOG).status_code == 403


INBOUND = reverse("admin:channels_inboundmessage_changelist")


def test_an_agent_cannot_browse_the_message_log_or_the_inbound_replies(client, agent, contact, sms_template):
    message = some_messages(contact, sms_template, 1)[0]
    logged_in(client, agent)
    assert client.get(LOG).status_code == 403
    assert client.get(INBOUND).status_code == 403
    assert client.get(reverse("admin:channels_outboundmessage_change", args=[message.pk])).status_code == 403


def test_an_operator_browses_the_message_log_and_the_inbound_replies(client, operator, contact, sms_template):
    message = some_messages(contact, sms_template, 1)[0]
    logged_in(client, operator)
    assert client.get(LOG).status_code == 200
    assert client.get(INBOUND).status_code == 200
    assert client.get(reverse("admin:channels_outboundmessage_change", args=[message.pk])).status_code == 200


def test_an_operator_can_cancel_a_queued_message_and_an_agent_cannot(client, operator, agent, contact,
                                                                     sms_template):
    message = some_messages(contact, sms_template, 1)[0]
    url = reverse("admin:channels_outboundmessage_cancel_message", args=[message.pk])
    logged_in(client, agent).get(url)
    message.refresh_from_db()
    assert message.status == "queued"
    logged_in(client, operator).get(url)
    message.refresh_from_db()
    assert message.status == "cancelled"


@pytest.fixture
def seed_address(settings):
    settings.TEMPLATES_INTERNAL_SEED_ADDRESSES = ["qa@example.com"]
    return "qa@example.com"


def test_a_marketer_test_sends_a_draft_to_a_seed_address(client, marketer, seed_address):
    from tests.templates.factories import draft_version, factory_author

    template = factories.channel_template(Channel.EMAIL)
    draft = draft_version(template, author=factory_author(), content={"subject": "Draft {{ event.code }}",
                                                                       "html": "<p>new</p>"})
    response = logged_in(client, marketer).post(TEST_SEND, {"version": draft.pk, "address": seed_address,
                                                             "data": '{"event": {"code": "9"}}'})
    assert response.status_code == 302
    message = OutboundMessage.objects.get(is_test=True)
    assert message.status == "queued"
    assert message.origin_kind == "test"
    assert message.template_version == draft
    assert message.address == seed_address
    assert "9" in message.content["subject"]


def test_a_test_send_refuses_an_address_outside_the_seed_list(client, marketer, seed_address):
    template = factories.channel_template(Channel.EMAIL)
    response = logged_in(client, marketer).post(TEST_SEND, {"version": template.live_version_id,
                                                             "address": "ceo@customer.com"})
    assert response.status_code == 200
    assert "ceo@customer.com is not one of the available choices" in response.content.decode()
    assert not OutboundMessage.objects.exists()


def test_an_agent_may_not_test_send(client, agent, seed_address):
    assert logged_in(client, agent).get(TEST_SEND).status_code == 403


def test_provider_accounts_are_managed_by_operators_only(client, operator, marketer):
    url = reverse("admin:channels_provideraccount_add")
    form = {"name": "Twilio main", "channel": "sms", "adapter": "twilio", "sender": "+14155550000",
            "env_prefix": "TWILIO", "options": "{}", "rate_limit_per_second": 10, "priority": 1, "active": "on"}
    assert logged_in(client, marketer).post(url, form).status_code == 403
    assert logged_in(client, operator).post(url, form).status_code == 302
    assert ProviderAccount.objects.get().sender == "+14155550000"


def test_an_account_whose_adapter_cannot_send_its_channel_is_a_form_error(client, operator):
    form = {"name": "Postmark for SMS", "channel": "sms", "adapter": "postmark", "sender": "a@example.com",
            "env_prefix": "", "options": "{}", "rate_limit_per_second": 0, "priority": 1, "active": "on"}
    response = logged_in(client, operator).post(reverse("admin:channels_provideraccount_add"), form)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["adapter"] == [
        "Postmark (batch API) cannot send SMS (it sends Email)."]
    assert not ProviderAccount.objects.exists()


def test_the_test_send_page_offers_only_seed_addresses_and_visible_versions(client, marketer, seed_address):
    factories.channel_template(Channel.SMS)
    page = logged_in(client, marketer).get(TEST_SEND)
    assert page.status_code == 200
    assert [choice[0] for choice in page.context["form"].fields["address"].choices] == [seed_address]


@pytest.mark.parametrize("name", ["inboundmessage", "sendintent", "provideraccount"])
def test_the_other_channel_pages_render_for_an_operator(client, operator, name):
    assert logged_in(client, operator).get(reverse(f"admin:channels_{name}_changelist")).status_code == 200


def test_a_test_send_of_a_marketing_template_reaches_a_new_seed_contact(client, marketer, seed_address):
    from consent.models import ConsentRecord

    template = factories.channel_template(Channel.EMAIL, message_class="marketing")
    response = logged_in(client, marketer).post(TEST_SEND, {"version": template.live_version_id,
                                                             "address": seed_address,
                                                             "data": '{"event": {"code": "3"}}'})
    assert response.status_code == 302
    message = OutboundMessage.objects.get(is_test=True)
    assert (message.status, message.decision_reason) == ("queued", "consent_granted")
    grant = ConsentRecord.objects.get(pk=message.consent_record_id)
    assert (grant.channel, grant.purpose, grant.status) == ("email", "marketing", "granted")
    assert grant.evidence["note"] == "internal seed list"
    assert (grant.confirms or grant).source == "admin"  # confirmed at once on a double opt-in channel


def test_a_test_send_merges_the_form_data_into_the_seed_contact_context(client, marketer, seed_address):
    factories.contact_with_everything(email=seed_address, attributes={"first_name": "Quinn"})
    template = factories.channel_template(Channel.EMAIL)
    logged_in(client, marketer).post(TEST_SEND, {"version": template.live_version_id, "address": seed_address,
                                                 "data": '{"event": {"code": "9"}}'})
    message = OutboundMessage.objects.get(is_test=True)
    assert message.status == "queued"
    assert "Hi Quinn" in message.content["subject"]
    assert "Your code is 9" in message.content["html"]


def test_a_seed_address_the_contact_book_rejects_is_a_form_error(client, marketer, settings):
    settings.TEMPLATES_INTERNAL_SEED_ADDRESSES = ["+1555"]
    template = factories.channel_template(Channel.SMS)
    response = logged_in(client, marketer).post(TEST_SEND, {"version": template.live_version_id,
                                                             "address": "+1555", "data": '{"event": {"code": "1"}}'})
    assert response.status_code == 200
    assert "seed address &#x27;+1555&#x27; cannot be used on sms" in response.content.decode()
    assert not OutboundMessage.objects.exists()
