from __future__ import annotations

import pytest

from templates import services
from templates.services import locale_chain
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template

pytestmark = pytest.mark.django_db

BY_LOCALE = {
    "en": {"body": "Hello"},
    "pt": {"body": "Olá"},
    "pt-BR": {"body": "Oi"},
}


@pytest.fixture
def greeting(db):
    return approved_template("greeting", "sms", locales=("en", "pt", "pt-BR"), content_by_locale=BY_LOCALE)


def _render(locale: str):
    contact = ContactFactory(locale=locale)
    return services.render_for_send(template_key="greeting", contact=contact, data=services.render_context(contact))


def test_the_chain_goes_from_region_to_language_to_workspace_default(settings):
    settings.WORKSPACE_DEFAULT_LOCALE = "en"
    assert locale_chain("pt-BR") == ["pt-br", "pt", "en"]
    assert locale_chain("pt_PT") == ["pt-pt", "pt", "en"]
    assert locale_chain("") == ["en"]
    assert locale_chain("en-GB") == ["en-gb", "en"]


@pytest.mark.parametrize(("locale", "expected_locale", "body"), [
    ("pt-BR", "pt-BR", "Oi"),
    ("pt-br", "pt-BR", "Oi"),
    ("pt-PT", "pt", "Olá"),
    ("pt", "pt", "Olá"),
    ("de-AT", "en", "Hello"),
    ("", "en", "Hello"),
])
def test_the_contacts_locale_picks_the_closest_variant(greeting, locale, expected_locale, body):
    rendered = _render(locale)
    assert (rendered.locale, rendered.content["body"]) == (expected_locale, body)


def test_the_workspace_default_locale_is_a_setting(settings, db):
    approved_template("greeting-pt", "sms", locales=("pt", "en"), content_by_locale=BY_LOCALE)
    settings.WORKSPACE_DEFAULT_LOCALE = "pt"
    contact = ContactFactory(locale="fr")
    rendered = services.render_for_send(template_key="greeting-pt", contact=contact, data={})
    assert rendered.locale == "pt"
