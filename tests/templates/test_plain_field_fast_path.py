"""Fields that are only text and `{{ a.b }}` outputs skip Jinja's generated
code (templates.engine.render_plain_field). Whatever the source and the
data, a render must come out exactly as Jinja renders it, or fail with
Jinja's own error."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from templates.engine import plain_field_plan, render_string, render_with_jinja

# Names that are keys of the data, dict methods (`items` is dict.items to Jinja), sandbox globals and absent names.
NAMES = st.sampled_from(["contact", "first_name", "event", "items", "keys", "range", "x", "missing"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(alphabet="ab <>&'\"{}%#\n", max_size=8),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(NAMES, inner, max_size=4)), max_leaves=12)
DATA = st.dictionaries(NAMES, VALUES, max_size=5)


def paths_in(data: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in data.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += paths_in(value, (*prefix, key))
    return paths


@st.composite
def dotted_output(draw, data: dict) -> str:
    # Mostly paths the data holds (the fast path's case), sometimes any path (Jinja's errors).
    known = paths_in(data)
    if known and draw(st.integers(0, 3)):
        path = draw(st.sampled_from(known))
    else:
        path = draw(st.lists(NAMES, min_size=1, max_size=3))
    left, right = draw(st.sampled_from(["{{", "{{-"])), draw(st.sampled_from(["}}", "-}}"]))
    return f"{left}{draw(st.sampled_from(['', ' ', '  ']))}{'.'.join(path)}{draw(st.sampled_from(['', ' ']))}{right}"


# Text with the characters Jinja treats specially: newlines (a trailing one is dropped, \r\n becomes \n),
# braces, and the starts of tags and comments (which send the field to Jinja).
TEXT = st.text(alphabet="Hi, \n\r\t{}%#<&-x", max_size=10)
OTHER = st.sampled_from(["{{ 'literal' }}", "{{ x|upper }}", "{% if x %}y{% endif %}", "{# note #}", "{{ x[0] }}",
                         "{{ contact.__class__ }}"])


@st.composite
def field(draw) -> tuple[str, dict]:
    data = draw(DATA)
    pieces = draw(st.lists(st.one_of(TEXT, dotted_output(data), dotted_output(data), OTHER), min_size=1, max_size=6))
    return "".join(pieces), data


def outcome(render, source: str, data: dict, html: bool):
    try:
        return "text", render(source, data, html=html)
    except Exception as error:  # Jinja's error is part of what must match
        return type(error).__name__, str(error)


@settings(max_examples=600, deadline=None)
@given(case=field(), html=st.booleans())
@example(case=("{{ contact.first_name.x }}", {"contact": {"first_name": "xa"}}), html=False)  # a path through text
def test_a_field_renders_exactly_as_jinja_renders_it(case, html):
    source, data = case
    assert outcome(render_string, source, data, html) == outcome(render_with_jinja, source, data, html)


@pytest.mark.parametrize("source", [
    "Hi {{ contact.first_name }}, your appointment is tomorrow.",
    "{{- contact.first_name -}}\n",
    "<p>Hello {{ contact.first_name }}</p>",
])
def test_a_field_of_text_and_dotted_outputs_takes_the_fast_path(source):
    assert plain_field_plan(source, html=True) is not None


@pytest.mark.parametrize("source", [
    "{{ contact.first_name|upper }}", "{% if x %}y{% endif %}", "{{ contact.items }}", "{{ 'a' }}", "{# c #}",
    "{{ x[0] }}",
])
def test_anything_else_is_left_to_jinja(source):
    assert plain_field_plan(source, html=False) is None


@pytest.mark.parametrize(("data", "html", "text"), [
    ({"contact": {"first_name": "Ana"}}, False, "Hi Ana <3"),
    ({"contact": {"first_name": "<b>Ana</b>"}}, True, "Hi &lt;b&gt;Ana&lt;/b&gt; <3"),
    ({"contact": {"first_name": None}}, False, "Hi None <3"),
])
def test_dotted_outputs_print_as_jinja_prints_them(data, html, text):
    assert render_string("Hi {{ contact.first_name }} <3", data, html=html) == text


def test_a_field_past_the_output_bound_is_refused_as_jinja_refuses_it(settings):
    settings.TEMPLATES_RENDER_MAX_CHARS = 10
    data = {"contact": {"first_name": "Anastasia"}}
    assert outcome(render_string, "Hi {{ contact.first_name }}", data, False) == (
        "RenderLimitExceeded", "the output is longer than 10 characters")
