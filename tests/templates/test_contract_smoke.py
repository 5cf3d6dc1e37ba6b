from __future__ import annotations

import pytest

from templates import services
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template

pytestmark = pytest.mark.django_db


def test_an_approved_email_template_renders_for_send_with_the_contract_keys():
    approved_template(
        "welcome", "email", "operational",
        content={"subject": "Hi {{ contact.first_name }}", "html": "<p>Hello {{ contact.first_name }} & co</p>",
                 "sender_profile": {"from_email": "hello@example.com"}},
        locales=("en", "pt"), variables=[{"path": "contact.first_name", "fallback": "there"}],
    )
    contact = ContactFactory(locale="pt-BR", attributes={"first_name": "<Ana>"})
    rendered = services.render_for_send(template_key="welcome", contact=contact,
                                        data=services.render_context(contact))
    assert rendered.locale == "pt"
    assert rendered.preview is False
    assert set(rendered.content) == {"subject", "preheader", "html", "text", "sender_profile"}
    assert rendered.content["subject"] == "Hi <Ana>"
    assert rendered.content["html"] == "<p>Hello &lt;Ana&gt; &amp; co</p>"
    assert rendered.content["text"] == "Hello <Ana> & co"
    assert rendered.content["sender_profile"] == {"from_email": "hello@example.com"}
    assert services.template_has_approved_version("welcome")
    assert not services.template_has_approved_version("nope")
