from __future__ import annotations

import pytest

from templates import services
from templates.models import Template
from templates.services import RenderFailure
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template, draft_version, factory_author

pytestmark = pytest.mark.django_db

CONTENT = {
    "email": {"subject": "S", "html": "<p>H</p>", "sender_profile": {"from_email": "a@example.com"}},
    "sms": {"body": "B"},
    "push": {"title": "T", "body": "B", "deep_link": "app://x", "data": {"k": "{{ contact.external_id }}"}},
    "whatsapp": {"template_name": "t", "parameters": ["contact.external_id"], "body": "B"},
    "rcs": {"title": "T", "description": "D", "media_url": "https://x/y.png", "fallback_text": "F",
            "suggestions": [{"type": "reply", "text": "Yes", "value": "YES"}]},
    "in_app": {"title": "T", "body": "B", "cta_label": "Go", "cta_url": "app://go"},
}
KEYS = {
    "email": {"subject", "preheader", "html", "text", "sender_profile"},
    "sms": {"body", "encoding", "segments"},
    "push": {"title", "body", "deep_link", "data"},
    "whatsapp": {"template_name", "content_sid", "language", "parameters", "body", "provider_status"},
    "rcs": {"title", "description", "media_url", "suggestions", "fallback_text"},
    "in_app": {"title", "body", "cta_label", "cta_url"},
}


@pytest.mark.parametrize("channel", list(CONTENT))
def test_each_channel_renders_exactly_the_contract_keys(channel):
    approved_template(f"t-{channel}", channel, "marketing", content=CONTENT[channel])
    contact = ContactFactory(external_id="cus_1")
    rendered = services.render_for_send(template_key=f"t-{channel}", contact=contact,
                                        data=services.render_context(contact))
    assert set(rendered.content) == KEYS[channel]
    assert (rendered.channel, rendered.message_class, rendered.preview) == (channel, "marketing", False)
    if channel == "push":
        assert rendered.content["data"] == {"k": "cus_1"}
    if channel == "whatsapp":
        assert rendered.content["parameters"] == ["cus_1"]
        assert rendered.content["provider_status"] == "approved"
    if channel == "rcs":
        assert rendered.content["suggestions"] == [{"type": "reply", "text": "Yes", "value": "YES"}]


def test_email_html_is_escaped_sanitised_and_gets_a_text_part(db):
    html = ('<p onclick="x()">Hi {{ contact.first_name }}</p><script>alert(1)</script>'
            '<a href="javascript:alert(1)">bad</a><a href="https://example.com/a">Go</a>')
    approved_template("html", "email", content={"subject": "{{ contact.first_name }} & co", "html": html},
                      variables=[{"path": "contact.first_name", "fallback": "there"}])
    contact = ContactFactory(attributes={"first_name": "<b>Eve</b>"})
    content = services.render_for_send(template_key="html", contact=contact,
                                       data=services.render_context(contact)).content
    assert content["subject"] == "<b>Eve</b> & co"  # not HTML: not escaped
    assert "&lt;b&gt;Eve&lt;/b&gt;" in content["html"]
    assert "<script" not in content["html"] and "onclick" not in content["html"]
    assert "javascript:" not in content["html"]
    assert content["text"] == "Hi <b>Eve</b>\nbadGo (https://example.com/a)"


def test_an_unknown_key_fails_with_unknown_template(db):
    with pytest.raises(services.RenderError) as error:
        services.render_for_send(template_key="nope", contact=ContactFactory(), data={})
    assert error.value.reason == RenderFailure.UNKNOWN_TEMPLATE


def test_a_template_with_only_a_draft_has_no_live_version(draft):
    with pytest.raises(services.RenderError) as error:
        services.render_for_send(template_key=draft.template.key, contact=ContactFactory(), data={})
    assert error.value.reason == RenderFailure.NO_LIVE_VERSION
    assert not services.template_has_approved_version(draft.template.key)


@pytest.mark.parametrize("state", ["draft", "in_review"])
def test_render_version_for_sending_refuses_anything_not_approved(request, state):
    version = request.getfixturevalue(state)
    with pytest.raises(services.RenderError) as error:
        services.render_version(version=version, contact=ContactFactory(), data={}, preview=False)
    assert error.value.reason == RenderFailure.NOT_APPROVED


def test_a_preview_of_a_draft_renders_and_is_marked(draft):
    rendered = services.render_version(version=draft, contact=ContactFactory(), data={}, preview=True)
    assert rendered.preview is True
    assert rendered.content["subject"] == "Hi there"


def test_a_new_draft_does_not_change_what_is_sent(approved, template, marketer):
    draft = services.version_create_draft(template=template, actor=marketer)
    services.variant_save(version=draft, actor=marketer, locale="en", subject="Draft words")
    rendered = services.render_for_send(template_key=template.key, contact=ContactFactory(), data={})
    assert rendered.template_version_id == approved.pk
    assert rendered.content["subject"] == "Hi there"


@pytest.mark.parametrize("status", ["pending", "rejected", "paused", ""])
def test_a_whatsapp_template_the_provider_has_not_approved_is_refused(db, status):
    approved_template("wa", "whatsapp", content={"template_name": "reminder", "body": "Hi",
                                                 "provider_status": status or "pending"})
    variant = Template.objects.get(key="wa").live_version.variants.get()
    services.whatsapp_status_update(variant=variant, status=status)
    with pytest.raises(services.RenderError) as error:
        services.render_for_send(template_key="wa", contact=ContactFactory(), data={})
    assert error.value.reason == RenderFailure.WHATSAPP_NOT_APPROVED
    assert "'reminder'" in error.value.detail


def test_free_form_whatsapp_text_needs_no_provider_approval(db):
    approved_template("wa-free", "whatsapp", content={"body": "Thanks, we got it"})
    rendered = services.render_for_send(template_key="wa-free", contact=ContactFactory(), data={})
    assert rendered.content["template_name"] == ""
    assert rendered.content["body"] == "Thanks, we got it"


def test_a_preview_of_an_unapproved_whatsapp_template_is_allowed(db):
    author = factory_author()
    template = services.template_create(key="wa-draft", name="W", channel="whatsapp", message_class="marketing",
                                        actor=author)
    version = draft_version(template, author=author, content={"template_name": "x", "body": "Hi",
                                                              "provider_status": "pending"})
    rendered = services.render_version(version=version, contact=ContactFactory(), data={}, preview=True)
    assert rendered.content["provider_status"] == "pending"


WA_BY_LOCALE = {
    "en": {"template_name": "reminder", "content_sid": "HXen000000000000000000000000000000", "language": "en",
           "parameters": ["contact.external_id"], "body": "Reminder"},
    "pt": {"template_name": "reminder", "content_sid": "HXpt000000000000000000000000000000", "language": "pt_BR",
           "parameters": ["contact.external_id"], "body": "Lembrete"},
}


def test_each_locale_sends_its_own_whatsapp_content_sid(db):
    approved_template("wa-sid", "whatsapp", locales=("en", "pt"), content_by_locale=WA_BY_LOCALE)
    for locale, variant, language in (("pt-BR", "pt", "pt_BR"), ("en", "en", "en")):
        contact = ContactFactory(locale=locale)
        content = services.render_for_send(template_key="wa-sid", contact=contact,
                                           data=services.render_context(contact)).content
        assert content["content_sid"] == WA_BY_LOCALE[variant]["content_sid"]
        assert (content["language"], content["provider_status"]) == (language, "approved")


def test_the_whatsapp_approval_checked_is_that_of_the_locale_that_renders(db):
    template = approved_template("wa-pt-pending", "whatsapp", locales=("en", "pt"), content_by_locale={
        "en": WA_BY_LOCALE["en"], "pt": {**WA_BY_LOCALE["pt"], "provider_status": "pending"}})
    assert template.live_version.variants.get(locale="pt").wa_provider_status == "pending"
    portuguese, english = ContactFactory(locale="pt"), ContactFactory(locale="en")
    with pytest.raises(services.RenderError) as error:
        services.render_for_send(template_key="wa-pt-pending", contact=portuguese,
                                 data=services.render_context(portuguese))
    assert error.value.reason == RenderFailure.WHATSAPP_NOT_APPROVED
    assert "(pt) is pending" in error.value.detail
    english = services.render_for_send(template_key="wa-pt-pending", contact=english,
                                       data=services.render_context(english))
    assert english.content["content_sid"] == WA_BY_LOCALE["en"]["content_sid"]


def test_a_whatsapp_content_sid_without_a_template_name_still_needs_provider_approval(db):
    content = {"content_sid": "HXonly00000000000000000000000000000", "body": "Hi", "provider_status": "rejected"}
    approved_template("wa-sid-only", "whatsapp", content=content)
    with pytest.raises(services.RenderError) as error:
        services.render_for_send(template_key="wa-sid-only", contact=ContactFactory(), data={})
    assert error.value.reason == RenderFailure.WHATSAPP_NOT_APPROVED
    assert "'HXonly" in error.value.detail
