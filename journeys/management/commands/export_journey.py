from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from journeys.as_code import export_yaml
from journeys.models import Journey


class Command(BaseCommand):
    help = "Write a journey (its live version, else its draft) as YAML to stdout or a file."

    def add_arguments(self, parser):
        parser.add_argument("key")
        parser.add_argument("--output", "-o", help="File to write (default: stdout)")
        parser.add_argument("--draft", action="store_true", help="Export the draft, not the live version")

    def handle(self, *args, **options):
        journey = Journey.objects.filter(key=options["key"]).first()
        if journey is None:
            raise CommandError(f"no journey with key {options['key']!r}")
        text = export_yaml(journey, version=None) if not options["draft"] else _draft(journey)
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stdout.write(f"wrote {options['output']}")
        else:
            self.stdout.write(text, ending="")


def _draft(journey: Journey) -> str:
    live = journey.live_version
    journey.live_version = None
    try:
        return export_yaml(journey)
    finally:
        journey.live_version = live
