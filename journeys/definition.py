"""A journey's definition as data: the step graph, durations, conditions, and
the validation that reports every problem with its location.

Shape (YAML or JSON)::

    trigger: {event: user.signed_up, conditions: [{field: event.plan, op: equals, value: pro}]}
    trigger: {event: appointment.booked, at: {property: appointment_at, offset: -24h, local_time: "09:00"}}
    reentry: once | always | {cooldown: 30d}
    exit_events: [user.deleted]
    goal_events: [user.activated]
    holdout_percent: 0
    on_cap: defer | drop
    on_conflict: defer | drop
    steps:
      - {key: welcome, type: send, template: onboarding-welcome-email}
      - {key: wait-1d, type: wait, duration: 24h}
      ...

Each step goes on to `next`, or to the step listed after it; `next: end`
completes the enrollment.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consent.models import Channel, MessageClass

END = "end"
STEP_TYPES = (
    "send", "wait", "wait_until", "wait_for_event", "branch", "split", "update_attribute", "task", "webhook", "exit",
)
WAIT_TYPES = frozenset({"wait", "wait_until", "wait_for_event"})
OPERATORS = (
    "equals", "not_equals", "in", "not_in", "exists", "not_exists", "gt", "gte", "lt", "lte", "contains",
    "before", "after",
)
MESSAGE_OUTCOMES = ("delivered", "opened", "clicked", "replied", "failed", "sent")
REENTRY_MODES = ("once", "always")
TRIGGER_AT_FIELDS = ("property", "offset", "local_time", "grace")
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class DefinitionError(ValueError):
    """A definition the engine cannot run; `problems` lists each with its location."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Problem:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def parse_duration(value: Any) -> dt.timedelta:
    """'90s', '30m', '24h', '7d', '2w', or combinations such as '1d12h'; a
    leading '-' makes it negative (for offsets before a date)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    text = str(value).strip().replace(" ", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration such as 30m, 24h, 7d or 1d12h")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return sign * dt.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_hhmm(value: Any) -> dt.time:
    match = _HHMM.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a local time as HH:MM (24-hour)")
    return dt.time(int(match.group(1)), int(match.group(2)))


def trigger_at(definition: dict) -> dict | None:
    """The date trigger's `at` ({property, offset, local_time}), or None: the
    first step then runs as soon as the contact enters."""
    trigger = definition.get("trigger")
    at = trigger.get("at") if isinstance(trigger, dict) else None
    return at if isinstance(at, dict) and at.get("property") else None


def at_property(at: dict) -> str:
    """The event property path an `at` reads (`event.` may be written or not)."""
    return str(at["property"]).removeprefix("event.")


def describe_at(at: dict) -> str:
    """'appointment_at -24h', 'expires_at -14d at 09:00 local': how decisions,
    the simulation and the diagram name a date trigger."""
    text = at_property(at)
    if at.get("offset") is not None:
        offset = str(at["offset"]).strip()
        text += f" {offset if offset[:1] in '+-' else '+' + offset}"
    if at.get("local_time"):
        text += f" at {at['local_time']} local"
    return text


def steps_by_key(definition: dict) -> dict[str, dict]:
    return {step["key"]: step for step in definition.get("steps", [])}


def first_step(definition: dict) -> str:
    steps = definition.get("steps", [])
    return steps[0]["key"] if steps else END


def default_next(definition: dict, key: str) -> str:
    keys = [s["key"] for s in definition.get("steps", [])]
    index = keys.index(key)
    return keys[index + 1] if index + 1 < len(keys) else END


def successors(definition: dict, step: dict) -> list[str]:
    """Every step this one may lead to, in the order the diagram draws them."""
    kind = step.get("type")
    if kind == "exit":
        return []
    if kind == "branch":
        targets = [b.get("next") for b in step.get("branches", [])] + [step.get("else")]
    elif kind == "split":
        targets = [b.get("next") for b in step.get("branches", [])]
    elif kind == "wait_for_event":
        targets = [step.get("on_event"), step.get("on_timeout")]
    else:
        targets = [step.get("next")]
        if kind == "wait_until" and step.get("on_passed"):
            targets.append(step["on_passed"])
    fallback = default_next(definition, step["key"])
    return [t if t else fallback for t in targets]


# --- Validation --------------------------------------------------------------

TemplateCheck = Callable[[str], str]  # template key -> "" if usable, else the problem


def validate(definition: Any, *, template_check: TemplateCheck | None = None) -> list[Problem]:
    """Every problem with its location; an empty list means runnable."""
    if not isinstance(definition, dict):
        return [Problem("(root)", "the definition must be a mapping")]
    problems: list[Problem] = []
    problems += _validate_top(definition)
    steps = definition.get("steps")
    if not isinstance(steps, list) or not steps:
        problems.append(Problem("steps", "a journey needs at least one step"))
        return problems
    keys: set[str] = set()
    for index, step in enumerate(steps):
        where = f"steps[{index}]"
        if not isinstance(step, dict) or not isinstance(step.get("key"), str) or not step.get("key"):
            problems.append(Problem(where, "each step needs a key"))
            return problems
        if step["key"] in keys or step["key"] == END:
            problems.append(Problem(f"{where}.key", f"duplicate or reserved step key {step['key']!r}"))
        keys.add(step["key"])
    for index, step in enumerate(steps):
        problems += _validate_step(definition, step, f"steps[{index}] ({step['key']})", keys, template_check)
    if not problems:
        problems += _validate_graph(definition)
    return problems


def _validate_top(definition: dict) -> list[Problem]:
    problems = []
    trigger = definition.get("trigger")
    if trigger is not None:
        if not isinstance(trigger, dict) or not isinstance(trigger.get("event"), str) or not trigger.get("event"):
            problems.append(Problem("trigger.event", "name the event that starts the journey (or omit trigger)"))
        else:
            problems += _validate_conditions(trigger.get("conditions", []), "trigger.conditions", entry=True)
            if "at" in trigger:
                problems += _validate_trigger_at(trigger["at"])
    reentry = definition.get("reentry", "once")
    if isinstance(reentry, dict):
        try:
            parse_duration(reentry.get("cooldown"))
        except ValueError as error:
            problems.append(Problem("reentry.cooldown", str(error)))
    elif reentry not in REENTRY_MODES:
        problems.append(Problem("reentry", "use once, always, or {cooldown: <duration>}"))
    for field in ("exit_events", "goal_events"):
        value = definition.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problems.append(Problem(field, "a list of event names"))
    holdout = definition.get("holdout_percent", 0)
    if not isinstance(holdout, int | float) or isinstance(holdout, bool) or not 0 <= holdout < 100:
        problems.append(Problem("holdout_percent", "a number from 0 to 99"))
    for field in ("on_cap", "on_conflict"):
        if definition.get(field, "defer") not in ("defer", "drop"):
            problems.append(Problem(field, "defer or drop"))
    if definition.get("message_class", MessageClass.MARKETING) not in MessageClass.values:
        problems.append(Problem("message_class", f"one of {', '.join(MessageClass.values)}"))
    return problems


def _validate_trigger_at(at: Any) -> list[Problem]:
    if not isinstance(at, dict):
        return [Problem("trigger.at", "a mapping: {property: <event date property>, offset: -24h, local_time: HH:MM}")]
    problems = [Problem(f"trigger.at.{name}", "unknown field; use property, offset, local_time, grace")
                for name in sorted(set(at) - set(TRIGGER_AT_FIELDS))]
    prop = at.get("property")
    if not isinstance(prop, str) or not prop.removeprefix("event.").strip():
        problems.append(Problem("trigger.at.property", "name the event property that holds the date"))
    if at.get("offset") is not None:
        problems += _duration_problem("trigger.at.offset", at["offset"], positive=False)
    if at.get("grace") is not None:
        problems += _duration_problem("trigger.at.grace", at["grace"])
    if at.get("local_time") is not None:
        try:
            parse_hhmm(at["local_time"])
        except ValueError as error:
            # YAML reads an unquoted 09:00 as the number 540.
            hint = ' (quote it in YAML: "09:00")' if isinstance(at["local_time"], int) else ""
            problems.append(Problem("trigger.at.local_time", f"{error}{hint}"))
    return problems


def _target_problem(where: str, target: Any, keys: set[str]) -> list[Problem]:
    if target is None or target == END or target in keys:
        return []
    return [Problem(where, f"unknown step {target!r}")]


def _validate_step(
    definition: dict, step: dict, where: str, keys: set[str], template_check: TemplateCheck | None
) -> list[Problem]:
    kind = step.get("type")
    if kind not in STEP_TYPES:
        return [Problem(f"{where}.type", f"unknown step type {kind!r}; use one of {', '.join(STEP_TYPES)}")]
    problems = _target_problem(f"{where}.next", step.get("next"), keys)
    checker = _STEP_CHECKS.get(kind)
    if checker:
        problems += checker(step, where, keys, template_check)
    return problems


def _check_send(step: dict, where: str, keys: set[str], template_check: TemplateCheck | None) -> list[Problem]:
    problems = []
    template, ladder = step.get("template"), step.get("ladder")
    if bool(template) == bool(ladder):
        return [Problem(where, "a send step needs exactly one of template or ladder")]
    rungs = [{"template": template}] if template else ladder
    if not isinstance(rungs, list):
        return [Problem(f"{where}.ladder", "a list of {channel, template, timeout}")]
    for index, rung in enumerate(rungs):
        at = f"{where}.template" if template else f"{where}.ladder[{index}]"
        if not isinstance(rung, dict) or not rung.get("template"):
            problems.append(Problem(at, "name a template key"))
            continue
        if ladder and rung.get("channel") not in Channel.values:
            problems.append(Problem(f"{at}.channel", f"one of {', '.join(Channel.values)}"))
        if ladder and rung.get("timeout") is not None:
            problems += _duration_problem(f"{at}.timeout", rung["timeout"])
        if template_check:
            issue = template_check(rung["template"])
            if issue:
                problems.append(Problem(at, issue))
    return problems


def _duration_problem(where: str, value: Any, *, positive: bool = True) -> list[Problem]:
    try:
        duration = parse_duration(value)
    except ValueError as error:
        return [Problem(where, str(error))]
    if positive and duration <= dt.timedelta(0):
        return [Problem(where, "must be positive")]
    return []


def _check_wait(step: dict, where: str, keys: set[str], template_check: TemplateCheck | None) -> list[Problem]:
    return _duration_problem(f"{where}.duration", step.get("duration"))


def _check_wait_until(step: dict, where: str, keys: set[str], template_check: TemplateCheck | None) -> list[Problem]:
    problems = _target_problem(f"{where}.on_passed", step.get("on_passed"), keys)
    has_property, has_local = bool(step.get("property")), bool(step.get("local_time"))
    if has_property == has_local:
        return problems + [Problem(where, "give either property (an event date) or local_time (HH:MM)")]
    if has_local:
        try:
            parse_hhmm(step["local_time"])
        except ValueError as error:
            problems.append(Problem(f"{where}.local_time", str(error)))
    if step.get("offset") is not None:
        problems += _duration_problem(f"{where}.offset", step["offset"], positive=False)
    if step.get("grace") is not None:
        problems += _duration_problem(f"{where}.grace", step["grace"])
    return problems


def _check_wait_for_event(
    step: dict, where: str, keys: set[str], template_check: TemplateCheck | None
) -> list[Problem]:
    problems = []
    if not step.get("event"):
        problems.append(Problem(f"{where}.event", "name the event to wait for"))
    problems += _duration_problem(f"{where}.timeout", step.get("timeout"))
    problems += _validate_conditions(step.get("conditions", []), f"{where}.conditions", entry=True)
    for field in ("on_event", "on_timeout"):
        problems += _target_problem(f"{where}.{field}", step.get(field), keys)
    return problems


def _check_branch(step: dict, where: str, keys: set[str], template_check: TemplateCheck | None) -> list[Problem]:
    branches = step.get("branches")
    if not isinstance(branches, list) or not branches:
        return [Problem(f"{where}.branches", "a list of {when: [conditions], next: step}")]
    problems = _target_problem(f"{where}.else", step.get("else"), keys)
    for index, branch in enumerate(branches):
        at = f"{where}.branches[{index}]"
        if not isinstance(branch, dict):
            problems.append(Problem(at, "a mapping with when and next"))
            continue
        problems += _validate_conditions(branch.get("when", []), f"{at}.when", entry=False)
        problems += _target_problem(f"{at}.next", branch.get("next"), keys)
    return problems


def _check_split(step: dict, where: str, keys: set[str], template_check: TemplateCheck | None) -> list[Problem]:
    branches = step.get("branches")
    if not isinstance(branches, list) or len(branches) < 2:
        return [Problem(f"{where}.branches", "at least two {percent, next} branches")]
    problems = []
    total = 0
    for index, branch in enumerate(branches):
        percent = branch.get("percent") if isinstance(branch, dict) else None
        if not isinstance(percent, int) or isinstance(percent, bool) or percent < 0:
            problems.append(Problem(f"{where}.branches[{index}].percent", "a whole number of percent"))
            continue
        total += percent
        problems += _target_problem(f"{where}.branches[{index}].next", branch.get("next"), keys)
    if not problems and total != 100:
        problems.append(Problem(f"{where}.branches", f"percentages add up to {total}, not 100"))
    return problems


def _check_update(step: dict, where: str, keys: set[str], template_check: TemplateCheck | None) -> list[Problem]:
    if not isinstance(step.get("attribute"), str) or not step.get("attribute"):
        return [Problem(f"{where}.attribute", "name the contact attribute to set")]
    if "value" not in step:
        return [Problem(f"{where}.value", "give the value to set (null removes it)")]
    return []


def _check_task(step: dict, where: str, keys: set[str], template_check: TemplateCheck | None) -> list[Problem]:
    problems = [] if step.get("title") else [Problem(f"{where}.title", "a task needs a title")]
    if step.get("due_in") is not None:
        problems += _duration_problem(f"{where}.due_in", step["due_in"])
    return problems


def _check_webhook(step: dict, where: str, keys: set[str], template_check: TemplateCheck | None) -> list[Problem]:
    url = step.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
        return [Problem(f"{where}.url", "an http(s) URL")]
    return []


_STEP_CHECKS: dict[str, Callable[..., list[Problem]]] = {
    "send": _check_send,
    "wait": _check_wait,
    "wait_until": _check_wait_until,
    "wait_for_event": _check_wait_for_event,
    "branch": _check_branch,
    "split": _check_split,
    "update_attribute": _check_update,
    "task": _check_task,
    "webhook": _check_webhook,
}


def _validate_conditions(conditions: Any, where: str, *, entry: bool) -> list[Problem]:
    if not isinstance(conditions, list):
        return [Problem(where, "a list of conditions (all must hold)")]
    problems = []
    for index, condition in enumerate(conditions):
        at = f"{where}[{index}]"
        if not isinstance(condition, dict):
            problems.append(Problem(at, "a mapping"))
        elif {"seen", "message", "consent", "reachable"} & set(condition):
            if entry:
                problems.append(Problem(at, "seen/message/consent/reachable conditions only work in branch steps"))
            elif "message" in condition and condition.get("outcome") not in MESSAGE_OUTCOMES:
                problems.append(Problem(f"{at}.outcome", f"one of {', '.join(MESSAGE_OUTCOMES)}"))
            for kind in ("consent", "reachable"):
                if kind in condition and condition[kind] not in Channel.values:
                    problems.append(Problem(f"{at}.{kind}", f"one of {', '.join(Channel.values)}"))
        else:
            field = condition.get("field")
            if not isinstance(field, str) or not field.startswith(("event.", "contact.")):
                problems.append(Problem(f"{at}.field", "a path starting with event. or contact."))
            if condition.get("op") not in OPERATORS:
                problems.append(Problem(f"{at}.op", f"one of {', '.join(OPERATORS)}"))
            elif condition["op"] in ("in", "not_in") and not isinstance(condition.get("value"), list):
                problems.append(Problem(f"{at}.value", "a list for in / not_in"))
    return problems


def _validate_graph(definition: dict) -> list[Problem]:
    steps = steps_by_key(definition)
    edges = {key: [t for t in successors(definition, step) if t != END] for key, step in steps.items()}
    problems = []
    reachable: set[str] = set()
    stack = [first_step(definition)]
    while stack:
        key = stack.pop()
        if key in reachable:
            continue
        reachable.add(key)
        stack.extend(edges[key])
    for index, step in enumerate(definition["steps"]):
        if step["key"] not in reachable:
            problems.append(Problem(f"steps[{index}] ({step['key']})", "unreachable from the first step"))
    # A cycle made only of steps that do not wait would spin in one tick.
    instant = {key for key, step in steps.items() if step["type"] not in WAIT_TYPES}
    cycle = _find_cycle({k: [t for t in edges[k] if t in instant] for k in instant})
    if cycle:
        problems.append(Problem("steps", f"loop with no wait: {' -> '.join(cycle)}"))
    return problems


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    colour: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        colour[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        colour[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in colour:
            found = visit(node)
            if found:
                return found
    return []


def template_keys(definition: dict) -> list[str]:
    keys = []
    for step in definition.get("steps", []):
        if step.get("type") == "send":
            keys += [step["template"]] if step.get("template") else [r.get("template") for r in step.get("ladder", [])]
    return sorted({k for k in keys if k})
