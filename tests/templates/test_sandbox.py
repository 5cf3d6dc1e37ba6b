"""Templates are written by people, so they run in a sandbox: no settings,
no Python internals, no endless loops, no giant output."""

from __future__ import annotations

import pytest

from templates import services
from templates.models import Template
from templates.services import RenderFailure
from tests.consent.factories import ContactFactory
from tests.templates.factories import draft_version, factory_author

pytestmark = pytest.mark.django_db


def _preview(body: str, **data):
    author = factory_author()
    template = Template.objects.filter(key="sandbox").first() or services.template_create(
        key="sandbox", name="Sandbox", channel="sms", message_class="operational", actor=author)
    version = draft_version(template, author=author, content={"body": body})
    contact = ContactFactory(attributes={"first_name": "Ana"})
    return services.render_version(version=version, contact=contact, preview=True,
                                   data=services.render_context(contact, data))


@pytest.mark.parametrize("body", [
    "{{ settings.SECRET_KEY }}",
    "{{ config }}",
    "{{ request }}",
])
def test_settings_and_django_objects_are_not_reachable(body):
    with pytest.raises(services.RenderError) as error:
        _preview(body)
    assert error.value.reason == RenderFailure.MISSING_VARIABLE
    assert "undefined" in error.value.detail


@pytest.mark.parametrize("body", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ contact.__class__ }}",
    "{{ contact.get.__self__ }}",
    "{{ range.__globals__ }}",
    "{{ self._TemplateReference__context }}",
])
def test_python_internals_are_refused(body):
    with pytest.raises(services.RenderError) as error:
        _preview(body)
    assert error.value.reason == RenderFailure.RENDER_FAILED
    assert "sandbox" in error.value.detail


@pytest.mark.parametrize("body", [
    "{{ 'x'.center(1000000000) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ lipsum(1000000) }}",
])
def test_methods_and_helpers_that_build_huge_strings_are_not_available(body):
    with pytest.raises(services.RenderError) as error:
        _preview(body)
    assert error.value.reason in (RenderFailure.RENDER_FAILED, RenderFailure.MISSING_VARIABLE)


@pytest.mark.parametrize("body", [
    "{% for i in range(100000000) %}{% endfor %}",
    "{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}",
    "{% for c in contact.first_name * 20000 %}{% for d in contact.first_name * 20000 %}{% endfor %}{% endfor %}",
    "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}",
])
def test_huge_loops_and_endless_recursion_are_stopped(body):
    with pytest.raises(services.RenderError) as error:
        _preview(body)
    assert error.value.reason == RenderFailure.RENDER_FAILED


@pytest.mark.parametrize("body", [
    "{{ 'x' * 1000000000 }}",
    "{{ [1] * 1000000000 }}",
    "{% macro dbl(s, n) %}{% if n %}{{ dbl(s ~ s, n - 1) }}{% else %}{{ s }}{% endif %}{% endmacro %}"
    "{{ dbl('x', 60) }}",
    "{{ 'ab'|replace('a', 'x' * 60000)|replace('x', 'yy') }}",
    "{{ 9 ** 999 }}",
    "{% for i in range(9000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
])
def test_huge_output_is_refused(body):
    with pytest.raises(services.RenderError) as error:
        _preview(body)
    assert error.value.reason == RenderFailure.OUTPUT_TOO_LARGE


def test_output_up_to_the_bound_renders(settings):
    settings.TEMPLATES_RENDER_MAX_CHARS = 500
    assert len(_preview("{{ 'x' * 500 }}").content["body"]) == 500
    with pytest.raises(services.RenderError, match="output_too_large"):
        _preview("{{ 'x' * 501 }}")


def test_ordinary_template_features_still_work():
    body = ("{% if contact.first_name %}Hi {{ contact.first_name|upper }}{% endif %}, "
            "{% for item in event['items'] %}{{ loop.index }}:{{ item }} {% endfor %}{{ event.total|round(1) }}")
    assert _preview(body, items=["a", "b"], total=3.14159).content["body"] == "Hi ANA, 1:a 2:b 3.1"


def test_dates_are_shown_in_the_contacts_time_zone():
    body = "{{ event.at|localdatetime }} / {{ event.at|localdate }} / {{ event.at|localtime('%I:%M %p') }}"
    assert _preview(body, at="2026-07-01T09:30:00Z").content["body"] == "2026-07-01 10:30 / 2026-07-01 / 10:30 AM"
