"""Routing inbound replies (channels.signals.inbound_message_received).

In order: a reply that journeys claims (an answer such as "C" or "R" to a
journey message that waits for exactly that) is left to journeys; a reply
from a contact with an open case is threaded on it; keyword rules open a
case or raise the open one's priority and tell its agent; anything else
stays on the contact (channels already stored it there)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.db import transaction
from django.utils import timezone

from support import selectors, services
from support.models import PRIORITY_RANK, CaseEventKind, CaseSource, KeywordRule, SupportCase

logger = logging.getLogger(__name__)

SYSTEM = "support:routing"
REPLY_EVENT = "message.replied"
BODY_FIELD = "event.body"


class Route:
    JOURNEY = "journey"  # left to the journey that asked
    NO_CONTACT = "no_contact"
    ALREADY = "already_routed"
    THREADED = "threaded"  # on the open case, no keyword
    RAISED = "raised"  # on the open case, a keyword raised or flagged it
    OPENED = "opened"  # a keyword opened a case
    CONTACT = "contact"  # no case, no keyword: stays on the contact


def on_inbound(sender, inbound, **kwargs) -> None:
    """The signal receiver. Channels sends it after its transaction
    committed; a failure here is logged, never undoes the stored reply."""
    try:
        inbound_route(inbound=inbound)
    except Exception:
        logger.exception("support could not route inbound message %s", inbound.pk)


def inbound_route(*, inbound, now: dt.datetime | None = None) -> str:
    now = now or timezone.now()
    if inbound.contact_id is None:
        return Route.NO_CONTACT
    if inbound.support_events.filter(kind=CaseEventKind.CUSTOMER_REPLY).exists():
        return Route.ALREADY
    if journey_claims(inbound):
        return Route.JOURNEY
    rules = matching_rules(inbound.body, KeywordRule.objects.filter(active=True))
    with transaction.atomic():
        case = selectors.active_case_for(inbound.contact_id)
        if case is None and not rules:
            return Route.CONTACT
        if case is None:
            case = _open_from_reply(inbound, rules, now)
            services.case_customer_replied(case=case, inbound_id=inbound.pk, now=now)
            return Route.OPENED
        services.case_customer_replied(case=case, inbound_id=inbound.pk, now=now)
        if not rules:
            return Route.THREADED
        _flag(case, rules, now)
        return Route.RAISED


# --- Keyword rules ------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _pattern(phrase: str) -> re.Pattern:
    words = [re.escape(word) for word in phrase.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def matching_rules(body: str, rules: Iterable[KeywordRule]) -> list[KeywordRule]:
    """Rules whose phrase appears in the body as whole words, any case, the
    most urgent first."""
    found = [rule for rule in rules if rule.phrase.strip() and _pattern(rule.phrase.strip()).search(body or "")]
    return sorted(found, key=lambda rule: (-PRIORITY_RANK[rule.priority], rule.phrase))


def _phrases(rules: list[KeywordRule]) -> str:
    return ", ".join(f'"{rule.phrase}"' for rule in rules)


def _open_from_reply(inbound, rules: list[KeywordRule], now: dt.datetime) -> SupportCase:
    top = rules[0]
    subject = f"{inbound.get_channel_display()} reply ({_phrases(rules)}): {inbound.body.strip()}"
    case = services.case_open(
        contact=inbound.contact, subject=subject[:200], category=top.category, priority=top.priority,
        source=CaseSource.INBOUND_REPLY, actor=SYSTEM, now=now,
    )
    services.event_add(case=case, kind=CaseEventKind.KEYWORD, actor=SYSTEM, now=now, new=top.priority,
                       detail=f"opened by keyword {_phrases(rules)}", inbound_message_id=inbound.pk)
    if case.assigned_agent is None:
        services.notify_case_owner(case=case, text=f"New {case.priority} case {case.number} from a reply: "
                                   f"{_phrases(rules)}", now=now)
    return case


def _flag(case: SupportCase, rules: list[KeywordRule], now: dt.datetime) -> None:
    top = rules[0]
    raised = services.case_raise_priority(case=case, priority=top.priority, actor=SYSTEM, now=now,
                                          reason=f"keyword {_phrases(rules)} in a reply")
    services.event_add(case=case, kind=CaseEventKind.KEYWORD, actor=SYSTEM, now=now, new=case.priority,
                       detail=f"keyword {_phrases(rules)}" + (f"; priority raised to {top.priority}" if raised else ""))
    services.notify_case_owner(
        case=case, now=now,
        text=f"{case.number}: the customer wrote {_phrases(rules)}" + (f" (now {case.priority})" if raised else ""),
    )


# --- Replies journeys claims --------------------------------------------------------------


def journey_claims(inbound) -> bool:
    """The agreed rule: support skips an inbound whose in_reply_to message
    was sent by a journey and whose body (trimmed, any case) is one of that
    journey version's reply keywords (see `journey_reply_keywords`)."""
    from journeys.models import JourneyVersion

    message = inbound.in_reply_to
    if message is None or message.origin_kind != "journey" or not message.origin_journey_version_id:
        return False
    version = JourneyVersion.objects.filter(pk=message.origin_journey_version_id).only("definition").first()
    if version is None:
        return False
    return normalise(inbound.body) in journey_reply_keywords(version.definition)


def normalise(text: str) -> str:
    return " ".join((text or "").split()).upper()


def journey_reply_keywords(definition: dict) -> frozenset[str]:
    """The replies a journey version waits for: an explicit top-level
    `reply_keywords` list, plus every value an `event.body` condition on a
    `message.replied` wait (or a branch) compares with (equals / in)."""
    keywords = {normalise(str(k)) for k in definition.get("reply_keywords", []) or []}
    for step in definition.get("steps", []):
        conditions: list[Any] = []
        if step.get("type") == "wait_for_event" and step.get("event") == REPLY_EVENT:
            conditions += step.get("conditions", [])
        if step.get("type") == "branch":
            for branch in step.get("branches", []):
                conditions += branch.get("when", [])
        for condition in conditions:
            keywords |= _condition_values(condition)
    return frozenset(k for k in keywords if k)


def _condition_values(condition: Any) -> set[str]:
    if not isinstance(condition, dict) or condition.get("field") != BODY_FIELD:
        return set()
    value = condition.get("value")
    if condition.get("op") == "equals":
        return {normalise(str(value))}
    if condition.get("op") == "in" and isinstance(value, list):
        return {normalise(str(v)) for v in value}
    return set()
