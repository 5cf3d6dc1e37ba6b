"""The sandboxed Jinja2 engine for user-authored templates.

Django's template engine is not a sandbox, so templates run in Jinja2's
ImmutableSandboxedEnvironment with StrictUndefined, tightened further:
- no globals but a capped `range`, no `namespace`/`lipsum`/`cycler`;
- attribute access to methods only from a short allowlist (no `str.format`,
  `center`, `ljust`: each can build a gigabyte string from one call);
- `*`, `**`, `%`, `+` and `~` refuse results past the value bound, so doubling
  a string in a recursive macro stops at the bound, not at the machine's memory;
- every `{% for %}` iteration and every call (macros, `caller()`, methods,
  `range`) draws on one per-field step budget, so huge loops and exponential
  macro recursion stop even when they print nothing;
- recursive for-loops (`{% for ... recursive %}` / `loop(...)`) are refused when
  the template is parsed: their inner iterations would bypass the loop guard;
- an optional wall-clock deadline (previews) is checked at every step;
- the output is streamed and cut off at the output bound.
Templates receive plain dicts only (render_context), never model instances."""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import math
import operator
import time
import zoneinfo
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from jinja2 import StrictUndefined, Template, nodes, pass_context
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import escape


class RenderLimitExceeded(SecurityError):
    """A template tried to produce or iterate more than the bounds allow."""

    def __init__(self, message: str, *, kind: str):
        super().__init__(message)
        self.kind = kind  # "output", "loop" (step budget) or "time" (deadline)


def max_value_chars() -> int:
    return settings.TEMPLATES_RENDER_MAX_CHARS


def max_iterations() -> int:
    return settings.TEMPLATES_RENDER_MAX_ITERATIONS


_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("template_loop_budget", default=None)
# time.monotonic() value after which a render stops (set by `deadline()`, used for previews).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("template_deadline", default=None)

SAFE_METHODS = frozenset({
    "upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith", "endswith", "split",
    "get", "items", "keys", "values", "isdigit",
})
ALLOWED_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "int", "join", "last", "length",
    "list", "lower", "max", "min", "reverse", "round", "sort", "string", "striptags", "sum", "title", "tojson",
    "trim", "truncate", "unique", "upper", "urlencode", "wordcount", "batch", "slice", "dictsort", "map", "select",
    "reject", "selectattr", "rejectattr", "attr", "groupby", "items",
)


def _size(value: Any) -> int:
    if isinstance(value, str | bytes | list | tuple | dict | set):
        return len(value)
    return 0


def check_size(value: Any) -> Any:
    if _size(value) > max_value_chars():
        raise RenderLimitExceeded(f"a value in the template grew past {max_value_chars()} characters", kind="output")
    return value


def _bounded_filter(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return check_size(func(*args, **kwargs))

    for attr in ("jinja_pass_arg",):  # keeps pass_context / pass_eval_context working
        if hasattr(func, attr):
            setattr(wrapper, attr, getattr(func, attr))
    return wrapper


def _charge(budget: list[int] | None) -> None:
    """One step of work: a loop iteration or a call."""
    if budget is None:
        return
    budget[0] -= 1
    if budget[0] < 0:
        raise RenderLimitExceeded(
            f"the template takes more than {max_iterations()} steps (loop iterations and calls)", kind="loop"
        )
    limit = _deadline.get()
    if limit is not None and time.monotonic() >= limit:
        raise RenderLimitExceeded("the template took too long to render", kind="time")


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget.get()
    for item in iterable:
        _charge(budget)
        yield item


@contextmanager
def deadline(seconds: float):
    """Renders inside this block stop with RenderLimitExceeded(kind="time") once
    `seconds` have passed (checked at every step). Used for previews, which run
    in a web request; sends are bounded by the step budget and the task limit."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _capped_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > max_iterations():
        raise RenderLimitExceeded(f"range() of more than {max_iterations()} items", kind="loop")
    return rng


class _GuardLoops(NodeTransformer):
    """Rewrites `{% for x in it %}` to `{% for x in _loop_guard(it) %}`, and
    refuses recursive loops: `loop(items)` iterates `items` outside the guard."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        if node.recursive:
            raise TemplateSyntaxError("recursive for-loops are not available in message templates", node.lineno)
        node = self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name("loop_guard_", "load"), [node.iter], [], None, None, lineno=node.lineno)
        return node


class _BoundedCodeGenerator(CodeGenerator):
    """`~` joins strings outside the sandbox's operator hooks; bound it here."""

    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        self.write("environment.check_size(")
        super().visit_Concat(node, frame)
        self.write(")")


def _as_local(value: Any, tz_name: str) -> dt.datetime | dt.date:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        try:
            zone = zoneinfo.ZoneInfo(tz_name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = zoneinfo.ZoneInfo(settings.WORKSPACE_TIMEZONE)
        return value.astimezone(zone)
    if isinstance(value, dt.date):
        return value
    raise ValueError(f"{value!r} is not a date or an ISO-8601 date/time")


def _contact_zone(context) -> str:
    contact = context.get("contact")
    zone = contact.get("timezone") if isinstance(contact, dict) else ""
    return zone or settings.WORKSPACE_TIMEZONE


def _formatter(default_format: str):
    @pass_context
    def format_local(context, value: Any, fmt: str = default_format) -> str:
        if value in (None, ""):
            return ""
        local = _as_local(value, _contact_zone(context))
        return local.strftime(fmt[:64])

    return format_local


def _pow_too_large(base: Any, exponent: Any) -> bool:
    if not isinstance(base, int | float) or not isinstance(exponent, int | float):
        return False
    if abs(exponent) > 1000:
        return True
    # Digits of the result: exponent * log10(base); a template has no use for more than a few hundred.
    return abs(base) > 1 and exponent * math.log10(abs(base)) > 300


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """The sandbox every message template renders in."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, autoescape: bool):
        super().__init__(autoescape=autoescape, undefined=StrictUndefined, auto_reload=False, cache_size=400)
        self.globals.clear()
        self.globals.update({"range": _capped_range, "loop_guard_": _loop_guard})
        self.filters = {name: _bounded_filter(FILTERS[name]) for name in ALLOWED_FILTERS}
        self.filters["replace"] = _bounded_filter(self._replace)
        self.filters.update({
            "localdate": _formatter("%Y-%m-%d"),
            "localtime": _formatter("%H:%M"),
            "localdatetime": _formatter("%Y-%m-%d %H:%M"),
        })
        self.check_size = check_size

    @staticmethod
    def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
        text = str(value)
        occurrences = text.count(str(old)) if old else len(text) + 1
        if len(text) + occurrences * len(str(new)) > max_value_chars():
            raise RenderLimitExceeded("replace() would grow the text past the bound", kind="output")
        return text.replace(str(old), str(new), -1 if count is None else count)

    def _parse(self, source, name, filename):
        return _GuardLoops().visit(super()._parse(source, name, filename))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return not callable(value) or attr in SAFE_METHODS

    def wrap_str_format(self, value: Any):
        # str.format / format_map are refused outright (padding widths are unbounded).
        return None

    def call_binop(self, context, op: str, left: Any, right: Any) -> Any:
        limit = max_value_chars()
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                if _size(seq) and isinstance(times, int) and _size(seq) * times > limit:
                    raise RenderLimitExceeded(f"repeating a value past {limit} characters", kind="output")
        elif op == "**" and _pow_too_large(left, right):
            raise RenderLimitExceeded("the power is too large", kind="output")
        elif op == "%" and isinstance(left, str):
            raise SecurityError("%-formatting of strings is not available in templates")
        result = {"*": operator.mul, "**": operator.pow, "%": operator.mod, "+": operator.add}[op](left, right)
        return check_size(result)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's own signature)
        # Every call from template code (macros, caller(), methods, range) lands here: charging
        # each one bounds macro recursion that fans out without ever entering a {% for %}.
        _charge(_budget.get())
        return check_size(super().call(__context, __obj, *args, **kwargs))


_ENVIRONMENTS: dict[bool, TemplateSandbox] = {}


def environment(*, html: bool) -> TemplateSandbox:
    if html not in _ENVIRONMENTS:
        _ENVIRONMENTS[html] = TemplateSandbox(autoescape=html)
    return _ENVIRONMENTS[html]


@functools.lru_cache(maxsize=2048)
def compiled(source: str, *, html: bool) -> Template:
    """The compiled template of one field's source. Compiling costs far more
    than rendering, and a batch of sends renders the same few sources again
    and again. Keyed by the source text itself (approved versions are
    immutable, and an edited draft is another text), so no entry goes stale;
    a source that fails to compile raises and is not kept."""
    template = environment(html=html).from_string(source)
    # Jinja keeps a template's globals as a ChainMap over the environment's,
    # which every render copies key by key in Python (half the time of
    # rendering a short SMS); ours are set up once and never change.
    template.globals = dict(template.globals)
    return template


def render_string(source: str, context: dict[str, Any], *, html: bool = False) -> str:
    """Render one field. Raises jinja2 errors, RenderLimitExceeded on the bounds."""
    if not source:
        return ""
    plan = plain_field_plan(source, html=html)
    if plan is not None:
        text = render_plain_field(plan, context, html=html)
        if text is not None:
            return text
    return render_with_jinja(source, context, html=html)


def render_with_jinja(source: str, context: dict[str, Any], *, html: bool = False) -> str:
    template = compiled(source, html=html)
    token = _budget.set([max_iterations()])
    try:
        parts: list[str] = []
        total, limit = 0, max_value_chars()
        for chunk in template.generate(context):
            total += len(chunk)
            if total > limit:
                raise RenderLimitExceeded(f"the output is longer than {limit} characters", kind="output")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _budget.reset(token)


# Most fields (an SMS body, a subject) are text with a few `{{ contact.first_name }}`
# outputs. Jinja's generated code for them (a context, the sandbox's attribute
# checks, a generator) took 3.6 microseconds for the benchmark's SMS body;
# plain lookups take 0.8, so such a field is rendered here. Its text pieces come from
# Jinja's own parse, so whitespace control and newlines are what Jinja makes
# of them. Any lookup that Jinja would do differently (a missing key, a value
# that is not a dict, a name that is also a dict method) falls back to Jinja,
# which then gives its own result or error: property-tested against it in
# tests/templates/test_plain_field_fast_path.py.

DottedPath = tuple[str, ...]  # a dotted path: ("contact", "first_name")


@functools.lru_cache(maxsize=2048)
def plain_field_plan(source: str, *, html: bool) -> tuple[str | DottedPath, ...] | None:
    """The field as text pieces and dotted paths, or None if it holds
    anything else (a tag, a filter, a literal, a comment)."""
    try:
        body = environment(html=html).parse(source).body
    except TemplateSyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    plan: list[str | DottedPath] = []
    for node in body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            plan.append(node.data)
            continue
        path = _dotted_path(node)
        if path is None:
            return None
        plan.append(path)
    return tuple(plan)


def _dotted_path(node: nodes.Node) -> DottedPath | None:
    attributes = []
    while isinstance(node, nodes.Getattr):
        attributes.append(node.attr)
        node = node.node
    # `contact.items` is dict.items to Jinja, not the key "items".
    if not isinstance(node, nodes.Name) or any(hasattr(dict, name) for name in attributes):
        return None
    return (node.name, *reversed(attributes))


def render_plain_field(plan: tuple[str | DottedPath, ...], context: dict, *, html: bool) -> str | None:
    """The plan rendered as Jinja renders it, or None where only Jinja can
    say what happens (it is then asked)."""
    parts = []
    for piece in plan:
        if type(piece) is str:
            parts.append(piece)
            continue
        value: Any = context
        for name in piece:
            if type(value) is not dict or name not in value:
                return None
            value = value[name]
        parts.append(escape(value) if html else str(value))
    text = "".join(parts)
    return text if len(text) <= max_value_chars() else None
