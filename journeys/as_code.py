"""Journeys as code: export a journey to YAML and import it back, so journeys
can be reviewed in git and promoted between workspaces. Import validates
everything first and reports every problem with its location; nothing is
written unless there is none."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from django.db import transaction

from consent.models import MessageClass
from consent.services import Actor
from journeys import services
from journeys.definition import Problem, template_keys
from journeys.models import Journey, JourneyStatus, JourneyVersion

META_FIELDS = ("key", "name", "description", "message_class", "priority")
DEFINITION_FIELDS = (
    "trigger", "reentry", "exit_events", "goal_events", "holdout_percent", "on_cap", "on_conflict", "steps",
)


def export_yaml(journey: Journey, *, version: JourneyVersion | None = None) -> str:
    """The live version by default (what runs), else the draft."""
    version = version or journey.live_version
    definition = version.definition if version is not None else journey.definition
    document: dict[str, Any] = {
        "key": journey.key,
        "name": journey.name,
        "description": journey.description,
        "message_class": journey.message_class,
        "priority": journey.priority,
    }
    document.update({k: definition[k] for k in DEFINITION_FIELDS if k in definition})
    document["templates"] = template_keys(definition)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


@dataclass
class ImportResult:
    journey: Journey | None = None
    created: bool = False
    version: JourneyVersion | None = None
    problems: list[Problem] = field(default_factory=list)


def parse(text: str) -> tuple[dict | None, list[Problem]]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        return None, [Problem(where, f"not valid YAML: {getattr(error, 'problem', error)}")]
    if not isinstance(document, dict):
        return None, [Problem("(root)", "the document must be a mapping")]
    return document, []


def check(document: dict) -> list[Problem]:
    problems = []
    for name in ("key", "name"):
        if not isinstance(document.get(name), str) or not document.get(name):
            problems.append(Problem(name, "required"))
    if document.get("message_class") not in MessageClass.values:
        problems.append(Problem("message_class", f"one of {', '.join(MessageClass.values)}"))
    priority = document.get("priority", 50)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 1000:
        problems.append(Problem("priority", "a whole number from 0 to 1000"))
    unknown = set(document) - set(META_FIELDS) - set(DEFINITION_FIELDS) - {"templates"}
    for name in sorted(unknown):
        problems.append(Problem(name, "unknown field"))
    problems += services.validate_definition(definition_of(document), check_templates=True)
    return problems


def definition_of(document: dict) -> dict:
    return {k: document[k] for k in DEFINITION_FIELDS if k in document}


def import_yaml(*, text: str, actor: Actor, publish: bool = False, owner=None, team=None) -> ImportResult:
    """Create or update the journey's draft from YAML; with `publish`, freeze
    it as a version (which may wait for review)."""
    document, problems = parse(text)
    if document is None:
        return ImportResult(problems=problems)
    problems = check(document)
    if problems:
        return ImportResult(problems=problems)
    definition = definition_of(document)
    meta = {k: document[k] for k in ("name", "description", "message_class", "priority") if k in document}
    with transaction.atomic():
        journey = Journey.objects.filter(key=document["key"]).first()
        created = journey is None
        if created:
            journey = services.journey_create(
                key=document["key"], actor=actor, definition=definition, owner=owner, team=team, **meta
            )
        else:
            if journey.status == JourneyStatus.ARCHIVED:
                return ImportResult(journey, problems=[Problem("key", "this journey is archived")])
            journey = services.journey_update(journey=journey, actor=actor, definition=definition, **meta)
        version = services.journey_publish(journey=journey, actor=actor) if publish else None
    return ImportResult(journey=journey, created=created, version=version)
