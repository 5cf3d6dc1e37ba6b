from django.core.management.base import BaseCommand, CommandError
from rest_framework_api_key.models import APIKey


class Command(BaseCommand):
    help = "Create an API key for an integration and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who uses the key, e.g. 'billing-crm'")

    def handle(self, *args, name: str, **options):
        name = name.strip()
        if not name:
            raise CommandError("Give the key a name, e.g. create_api_key billing-crm")
        if APIKey.objects.filter(name=name, revoked=False).exists():
            raise CommandError(f"An active key named {name!r} exists; revoke it in the admin or pick another name.")
        _, key = APIKey.objects.create_key(name=name)
        self.stdout.write(f"API key for {name} (shown once, store it now):\n{key}")
        self.stdout.write("Use it as the header   Authorization: Api-Key <key>")
