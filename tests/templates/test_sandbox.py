"""Templates are written by people, so they run in a sandbox: no settings,
no Python internals, no endless loops, no giant output."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from templates import services
from templates.models import Template, TemplateVariant, TemplateVersion
from templates.services import RenderFailure
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template, draft_version, factory_author

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


def test_jinja_globals_render_every_time_the_cached_template_is_used():
    # Compiled templates are cached with their globals flattened (templates/engine.py).
    body = "{% for i in range(3) %}{{ i }}{% endfor %}"
    assert _preview(body).content["body"] == "012"
    assert _preview(body).content["body"] == "012"


def test_dates_are_shown_in_the_contacts_time_zone():
    body = "{{ event.at|localdatetime }} / {{ event.at|localdate }} / {{ event.at|localtime('%I:%M %p') }}"
    assert _preview(body, at="2026-07-01T09:30:00Z").content["body"] == "2026-07-01 10:30 / 2026-07-01 / 10:30 AM"


@pytest.mark.parametrize("body", [
    # 2**31 calls, no {% for %} at all: only a budget charged per call stops it.
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(30) }}",
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(20) }}",
])
def test_macro_recursion_that_fans_out_runs_out_of_steps(body):
    with pytest.raises(services.RenderError) as error:
        _preview(body)
    assert error.value.reason == RenderFailure.RENDER_FAILED
    assert "more than 10000 steps" in error.value.detail


RECURSIVE = [
    "{% for x in range(10000) recursive %}{% if loop.depth < 4 %}{{ loop(range(10000)) }}{% endif %}{% endfor %}",
    "{% for x in [1] recursive %}{{ x }}{% endfor %}",
]


@pytest.mark.parametrize("body", RECURSIVE)
def test_a_recursive_loop_is_refused_when_the_draft_is_saved(body):
    with pytest.raises(ValidationError) as error:
        _preview(body)
    assert "recursive for-loops are not available" in str(error.value)


@pytest.mark.parametrize("body", RECURSIVE)
def test_a_recursive_loop_already_stored_is_refused_at_render(body):
    version = _preview("placeholder").template_version_id
    # Content saved before the rule existed: written past the service's syntax check.
    TemplateVariant.objects.filter(version_id=version).update(body=body)
    with pytest.raises(services.RenderError) as error:
        services.render_version(version=TemplateVersion.objects.get(pk=version), contact=ContactFactory(),
                                data={}, preview=True)
    assert error.value.reason == RenderFailure.RENDER_FAILED
    assert "recursive for-loops are not available" in error.value.detail


def test_calls_draw_on_the_step_budget_setting(settings):
    settings.TEMPLATES_RENDER_MAX_ITERATIONS = 50
    fan_out = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(DEPTH) }}"
    assert _preview(fan_out.replace("DEPTH", "4")).content["body"] == ""  # 31 calls
    with pytest.raises(services.RenderError, match="more than 50 steps"):
        _preview(fan_out.replace("DEPTH", "5"))  # 63 calls


def test_ordinary_macros_still_work():
    body = ("{% macro greet(name, punct='!') %}Hi {{ name|title }}{{ punct }}{% endmacro %}"
            "{{ greet(contact.first_name) }} {{ greet('bo', punct='?') }}")
    assert _preview(body).content["body"] == "Hi Ana! Hi Bo?"


def test_a_preview_past_its_time_limit_stops_but_a_send_is_not_clock_bound(settings):
    body = "{% for i in range(3) %}{{ i }}{% endfor %}"
    settings.TEMPLATES_PREVIEW_MAX_SECONDS = 0  # already past the deadline at the first step
    with pytest.raises(services.RenderError) as error:
        _preview(body)
    assert error.value.reason == RenderFailure.RENDER_FAILED
    assert "took too long" in error.value.detail
    template = approved_template("clock", "sms", content={"body": body})
    contact = ContactFactory()
    rendered = services.render_for_send(template_key=template.key, contact=contact,
                                        data=services.render_context(contact))
    assert rendered.content["body"] == "012"
