import importlib

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "Load demo data. Idempotent: a second run adds nothing. Each app seeds from its own demo.py."

    def handle(self, *args, **options):
        for app_config in apps.get_app_configs():
            try:
                module = importlib.import_module(f"{app_config.name}.demo")
            except ModuleNotFoundError as error:
                if error.name != f"{app_config.name}.demo":
                    raise
                continue
            with transaction.atomic():
                added = module.seed()
            self.stdout.write(f"{app_config.label}: {added} added")
