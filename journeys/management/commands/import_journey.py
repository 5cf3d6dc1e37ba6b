from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from journeys.as_code import import_yaml
from journeys.definition import DefinitionError
from journeys.services import JourneyError


class Command(BaseCommand):
    help = (
        "Create or update a journey's draft from YAML, validating first and listing every problem with its "
        "location. --publish freezes it as a version (which may wait for a reviewer)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--publish", action="store_true")
        parser.add_argument("--actor", default="import_journey", help="Recorded as the editor")

    def handle(self, *args, **options):
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        try:
            result = import_yaml(text=path.read_text(encoding="utf-8"), actor=options["actor"],
                                 publish=options["publish"])
        except (JourneyError, DefinitionError) as error:
            raise CommandError(str(error)) from None
        if result.problems:
            lines = "\n".join(f"  {p.location}: {p.message}" for p in result.problems)
            raise CommandError(f"{path}: {len(result.problems)} problem(s), nothing imported:\n{lines}")
        verb = "created" if result.created else "updated"
        message = f"{verb} journey {result.journey.key}"
        if result.version is not None:
            message += f"; version {result.version.number} is {result.version.status}"
        self.stdout.write(message)
