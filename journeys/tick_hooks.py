"""Work of higher apps that runs on the journeys scheduler, so the codebase
has one scheduling mechanism: the Beat tick and `advance_journeys --now` both
run every registered hook with the tick's `now` (support's first-response
SLA check is one)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

TickHook = Callable[..., int]
_tick_hooks: dict[str, TickHook] = {}


def register_tick_hook(name: str, hook: TickHook) -> None:
    """hook(*, now) -> how many things it did. Registering a name again replaces it."""
    _tick_hooks[name] = hook


def run_tick_hooks(*, now: dt.datetime) -> dict[str, int]:
    return {name: hook(now=now) for name, hook in _tick_hooks.items()}
