from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """Holds project-wide admin wiring (third-party admins in the Unfold theme)."""

    name = "config"
    label = "project"
    verbose_name = "Project"
