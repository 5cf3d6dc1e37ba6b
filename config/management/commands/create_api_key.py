import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from config.models import ApiKey
from config.scopes import SCOPES


class Command(BaseCommand):
    help = "Create an API key for an integration and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who uses the key, e.g. 'billing-crm'")
        parser.add_argument(
            "--scope", action="append", default=[], dest="scopes", metavar="SCOPE",
            help=f"Repeat for each scope, or 'all'. One of: {', '.join(SCOPES)}",
        )
        parser.add_argument("--expires-in-days", type=int, help="The key stops working after this many days")
        parser.add_argument("--rate-limit", type=int, help="Requests per minute (default API_RATE_LIMIT_PER_MINUTE)")

    def handle(self, *args, name: str, scopes: list[str], expires_in_days: int | None, rate_limit: int | None,
               **options):
        name = name.strip()
        if not name:
            raise CommandError("Give the key a name, e.g. create_api_key billing-crm --scope events:write")
        if not scopes:
            raise CommandError(f"Give at least one --scope (or --scope all). Scopes: {', '.join(SCOPES)}")
        if "all" in scopes:
            scopes = list(SCOPES)
        unknown = [scope for scope in scopes if scope not in SCOPES]
        if unknown:
            raise CommandError(f"Unknown scope(s) {', '.join(unknown)}; use some of: {', '.join(SCOPES)}")
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be 1 or more")
        if rate_limit is not None and rate_limit < 1:
            raise CommandError("--rate-limit must be 1 or more")
        if ApiKey.objects.filter(name=name, revoked=False).exists():
            raise CommandError(f"An active key named {name!r} exists; revoke it in the admin or pick another name.")
        expiry = timezone.now() + dt.timedelta(days=expires_in_days) if expires_in_days else None
        _, key = ApiKey.objects.create_key(
            name=name, scopes=list(dict.fromkeys(scopes)), expiry_date=expiry, rate_limit_per_minute=rate_limit
        )
        self.stdout.write(f"API key for {name} (shown once, store it now):\n{key}")
        self.stdout.write(f"Scopes: {', '.join(dict.fromkeys(scopes))}")
        self.stdout.write("Use it as the header   Authorization: Api-Key <key>")
