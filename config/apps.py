from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """Holds project-wide admin wiring (third-party admins in the Unfold theme)."""

    name = "config"
    label = "project"
    verbose_name = "Project"

    def ready(self) -> None:
        from config import db, lookups  # noqa: F401 - register the `__any` lookup and the connection set-up
