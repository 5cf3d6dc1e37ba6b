from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from journeys.services import run_until_idle


class Command(BaseCommand):
    help = (
        "Process every event not yet processed, then run journey ticks as of NOW until nothing is due, "
        "in this process (no worker needed). For catch-up after an outage and for deterministic tests."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="ISO-8601 instant with an offset, e.g. 2026-03-29T09:00:00+00:00")

    def handle(self, *args, **options):
        now = timezone.now()
        if options["now"]:
            parsed = parse_datetime(options["now"])
            if parsed is None:
                raise CommandError(f"--now {options['now']!r} is not an ISO-8601 date and time")
            if parsed.tzinfo is None:
                raise CommandError("--now needs an offset or Z (e.g. 2026-03-29T09:00:00Z): times are never naive")
            now = parsed.astimezone(dt.UTC)
        counts = run_until_idle(now=now)
        self.stdout.write(f"as of {now.isoformat()}: {counts['events']} events processed, "
                          f"{counts['advanced']} enrollment runs")
