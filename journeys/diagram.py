"""An SVG diagram of a journey's step graph with live counts per step,
drawn by hand (a layered layout: each step one row below the first step
that reaches it)."""

from __future__ import annotations

from collections import defaultdict, deque

from django.utils.html import escape

from journeys.definition import END, describe_at, first_step, steps_by_key, successors, trigger_at
from journeys.selectors import StepCounts

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 220, 62, 40, 46, 20
COLOURS = {
    "send": "#dbeafe", "wait": "#fef3c7", "wait_until": "#fef3c7", "wait_for_event": "#fef3c7",
    "branch": "#ede9fe", "split": "#ede9fe", "exit": "#fee2e2", "task": "#dcfce7", "webhook": "#dcfce7",
    "update_attribute": "#dcfce7", END: "#e5e7eb",
}


def _levels(definition: dict) -> dict[str, int]:
    """Breadth-first depth of every reachable step (END gets the deepest row)."""
    steps = steps_by_key(definition)
    start = first_step(definition)
    levels: dict[str, int] = {}
    queue = deque([(start, 0)])
    while queue:
        key, depth = queue.popleft()
        if key in levels or key == END:
            continue
        levels[key] = depth
        for target in successors(definition, steps[key]):
            queue.append((target, depth + 1))
    for index, key in enumerate(steps):
        levels.setdefault(key, index)  # unreachable steps still appear
    levels[END] = max(levels.values(), default=0) + 1
    return levels


def _label(step: dict) -> str:
    kind = step["type"]
    if kind == "send":
        if step.get("ladder"):
            return "send " + " → ".join(r.get("channel", "?") for r in step["ladder"])
        return f"send {step.get('template', '')}"
    if kind == "wait":
        return f"wait {step.get('duration', '')}"
    if kind == "wait_until":
        return f"until {step.get('local_time') or step.get('property', '')} {step.get('offset', '')}".strip()
    if kind == "wait_for_event":
        return f"wait for {step.get('event', '')} ≤ {step.get('timeout', '')}"
    return kind.replace("_", " ")


def trigger_label(definition: dict) -> str:
    """'on appointment.booked, first step at appointment_at -24h' above the first step."""
    trigger = definition.get("trigger")
    if not isinstance(trigger, dict) or not trigger.get("event"):
        return ""
    at = trigger_at(definition)
    return f"on {trigger['event']}" + (f", first step at {describe_at(at)}" if at else "")


def render_svg(definition: dict, counts: dict[str, StepCounts] | None = None) -> str:
    counts = counts or {}
    steps = steps_by_key(definition)
    if not steps:
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="240" height="40">'
                '<text x="10" y="24">No steps yet</text></svg>')
    levels = _levels(definition)
    rows: dict[int, list[str]] = defaultdict(list)
    for key in [*steps, END]:
        rows[levels[key]].append(key)
    positions = {}
    for level, keys in rows.items():
        for column, key in enumerate(keys):
            positions[key] = (MARGIN + column * (NODE_W + GAP_X), MARGIN + level * (NODE_H + GAP_Y))
    width = MARGIN * 2 + max(len(keys) for keys in rows.values()) * (NODE_W + GAP_X)
    height = MARGIN * 2 + (max(rows) + 1) * (NODE_H + GAP_Y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" role="img">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7280"/></marker></defs>',
    ]
    for key, step in steps.items():
        for target in dict.fromkeys(successors(definition, step)):
            parts.append(_edge(positions[key], positions[target]))
    for key, step in steps.items():
        parts.append(_node(key, step["type"], _label(step), positions[key], counts.get(key)))
    if trigger_label(definition):
        # In the top margin, above the first step's box.
        parts.append(f'<text x="{MARGIN}" y="{MARGIN - 6}" fill="#6b7280" font-size="11" data-trigger="">'
                     f'{escape(trigger_label(definition))}</text>')
    parts.append(_node(END, END, "enrollment completes", positions[END], None))
    parts.append("</svg>")
    return "".join(parts)


def _edge(source: tuple[int, int], target: tuple[int, int]) -> str:
    x1, y1 = source[0] + NODE_W / 2, source[1] + NODE_H
    x2, y2 = target[0] + NODE_W / 2, target[1]
    if y2 <= y1:
        # A loop back up: swing out to the right of the boxes.
        x1, y1, x2, y2 = source[0] + NODE_W, source[1] + NODE_H / 2, target[0] + NODE_W, target[1] + NODE_H / 2
        bend = max(x1, x2) + 40
        return (f'<path d="M {x1} {y1} C {bend} {y1}, {bend} {y2}, {x2} {y2}" fill="none" stroke="#6b7280" '
                f'stroke-dasharray="4 3" marker-end="url(#arrow)"/>')
    middle = (y1 + y2) / 2
    return (f'<path d="M {x1} {y1} C {x1} {middle}, {x2} {middle}, {x2} {y2}" fill="none" stroke="#6b7280" '
            f'marker-end="url(#arrow)"/>')


def _node(key: str, kind: str, label: str, position: tuple[int, int], counts: StepCounts | None) -> str:
    x, y = position
    fill = COLOURS.get(kind, "#f3f4f6")
    text = [
        f'<g data-step="{escape(key)}"><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8" '
        f'fill="{fill}" stroke="#9ca3af"/>',
        f'<text x="{x + 10}" y="{y + 18}" font-weight="bold">{escape(key[:30])}</text>',
        f'<text x="{x + 10}" y="{y + 34}" fill="#374151">{escape(label[:34])}</text>',
    ]
    if counts is not None:
        summary = f"waiting {counts.waiting} · done {counts.executed}"
        if kind == "send":
            summary += f" · sent {counts.sent}"
        summary += f" · converted {counts.converted}"
        text.append(f'<text x="{x + 10}" y="{y + 52}" fill="#1f2937" font-size="11">{escape(summary)}</text>')
    text.append("</g>")
    return "".join(text)
