from django.core.management.base import BaseCommand

from config.roles import sync_roles


class Command(BaseCommand):
    help = "Create the role groups (Marketer, Compliance reviewer, Support agent, Operator) and their permissions."

    def handle(self, *args, **options):
        for name, count in sync_roles().items():
            self.stdout.write(f"{name}: {count} permissions")
