import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from analytics import services


class Command(BaseCommand):
    help = "Rebuild the analytics rollups of some days (default: today and yesterday, workspace timezone)."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="first", help="First day, YYYY-MM-DD")
        parser.add_argument("--to", dest="last", help="Last day, YYYY-MM-DD (default today)")

    def handle(self, *args, first=None, last=None, **options):
        today = services.local_today()
        try:
            last_day = dt.date.fromisoformat(last) if last else today
            first_day = dt.date.fromisoformat(first) if first else last_day - dt.timedelta(days=1)
        except ValueError as error:
            raise CommandError(f"Dates are YYYY-MM-DD: {error}")
        if first_day > last_day:
            raise CommandError("--from is after --to")
        days = services.rollup_range(first_day, last_day)
        self.stdout.write(f"Rolled up {days} day(s), {first_day} to {last_day}.")
