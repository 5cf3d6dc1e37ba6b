from __future__ import annotations

import pytest

from templates import services
from templates.services import RenderFailure
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template

pytestmark = pytest.mark.django_db

VARIABLES = [
    {"path": "contact.first_name", "fallback": "there"},
    {"path": "event.appointment_at", "type": "datetime", "required": True},
    {"path": "event.note"},
]
BODY = ("Hi {{ contact.first_name }}, see you {{ event.appointment_at|localdate }}"
        "{% if event.note %} ({{ event.note }}){% endif %}")


@pytest.fixture
def reminder(db):
    return approved_template("reminder", "sms", content={"body": BODY}, variables=VARIABLES)


def _send(contact, **event):
    return services.render_for_send(template_key="reminder", contact=contact,
                                    data=services.render_context(contact, event))


def test_a_missing_first_name_uses_the_fallback(reminder):
    contact = ContactFactory(attributes={})
    assert _send(contact, appointment_at="2026-05-01T10:00:00Z").content["body"] == "Hi there, see you 2026-05-01"


def test_an_empty_first_name_uses_the_fallback_too(reminder):
    contact = ContactFactory(attributes={"first_name": ""})
    assert _send(contact, appointment_at="2026-05-01T10:00:00Z").content["body"].startswith("Hi there,")


def test_a_present_value_wins_over_the_fallback(reminder):
    contact = ContactFactory(attributes={"first_name": "Ana"})
    body = _send(contact, appointment_at="2026-05-01T10:00:00Z", note="room 4").content["body"]
    assert body == "Hi Ana, see you 2026-05-01 (room 4)"


def test_a_missing_required_variable_fails_with_a_reason_and_no_text(reminder):
    contact = ContactFactory(attributes={"first_name": "Ana"})
    with pytest.raises(services.RenderError) as error:
        _send(contact)
    assert error.value.reason == RenderFailure.MISSING_VARIABLE
    assert error.value.detail == "missing required variable event.appointment_at"


def test_a_value_of_the_wrong_type_fails_with_a_reason(reminder):
    with pytest.raises(services.RenderError) as error:
        _send(ContactFactory(), appointment_at="next tuesday")
    assert error.value.reason == RenderFailure.RENDER_FAILED
    assert "event.appointment_at must be an ISO-8601 date" in error.value.detail


def test_an_undeclared_missing_variable_fails_rather_than_rendering_blank(db):
    approved_template("undeclared", "sms", content={"body": "Code {{ event.offer_code }}"})
    contact = ContactFactory()
    with pytest.raises(services.RenderError) as error:
        services.render_for_send(template_key="undeclared", contact=contact, data=services.render_context(contact))
    assert error.value.reason == RenderFailure.MISSING_VARIABLE
    assert "offer_code" in error.value.detail


def test_a_variable_path_must_be_dotted(draft, marketer):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="dotted path"):
        services.variable_save(version=draft, actor=marketer, path="first name")


def test_template_syntax_errors_are_refused_when_saving(draft, marketer):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        services.variant_save(version=draft, actor=marketer, locale="en", subject="Hi {{ contact.first_name ")
    assert "subject" in error.value.message_dict


def test_contact_attributes_cannot_replace_the_contacts_own_fields(db):
    contact = ContactFactory(email="real@example.com", attributes={"email": "spoof@example.com", "plan": "pro"})
    data = services.render_context(contact, {"amount": 5}, order={"id": 1})
    assert data["contact"]["email"] == "real@example.com"
    assert data["contact"]["plan"] == "pro"
    assert data["event"] == {"amount": 5}
    assert data["order"] == {"id": 1}


def test_a_fallback_can_differ_per_locale_along_the_locale_chain(db):
    approved_template("hello", "sms", locales=("en", "pt"),
                      content_by_locale={"en": {"body": "Hi {{ contact.first_name }}"},
                                         "pt": {"body": "Olá {{ contact.first_name }}"}},
                      variables=[{"path": "contact.first_name", "fallback": "there",
                                  "locale_fallbacks": {"PT": "cliente"}}])
    bodies = {}
    for locale in ("en-GB", "pt-BR", "pt"):
        contact = ContactFactory(locale=locale, attributes={})
        bodies[locale] = services.render_for_send(template_key="hello", contact=contact,
                                                  data=services.render_context(contact)).content["body"]
    assert bodies == {"en-GB": "Hi there", "pt-BR": "Olá cliente", "pt": "Olá cliente"}


def test_locale_fallbacks_must_be_texts_by_locale(draft, marketer):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="locale: text"):
        services.variable_save(version=draft, actor=marketer, path="contact.first_name",
                               locale_fallbacks={"pt": ["x"]})
