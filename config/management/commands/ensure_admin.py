import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first superuser with a random password and print it once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        User = get_user_model()
        url = f"{settings.SITE_URL}/admin/"
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin: {url}  (user {username!r} exists; its password was printed when it was created)")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=f"{username}@example.com", password=password)
        self.stdout.write(self.style.SUCCESS(f"Admin: {url}  login: {username}  password: {password}"))
