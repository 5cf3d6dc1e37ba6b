"""The four role groups and their model permissions. Object-level grants
(which journeys, templates and cases) are made with django-guardian on top.

Each app lists its own grants in `<app>/roles.py` as ROLE_PERMISSIONS
{role: ["app_label.codename", ...]}; a permission whose model does not exist
yet is skipped, so `setup_roles` can run at any migration state."""

from __future__ import annotations

import importlib

from django.apps import apps as global_apps

MARKETER = "Marketer"
REVIEWER = "Compliance reviewer"
AGENT = "Support agent"
OPERATOR = "Operator"
ROLES = [MARKETER, REVIEWER, AGENT, OPERATOR]

PROJECT_PERMISSIONS: dict[str, list[str]] = {
    OPERATOR: [
        "django_celery_beat.view_periodictask", "django_celery_beat.change_periodictask",
        # Integrations' API keys: create (the key is shown once), change scopes, revoke.
        "project.view_apikey", "project.add_apikey", "project.change_apikey",
    ],
}


def role_permissions() -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {role: list(PROJECT_PERMISSIONS.get(role, [])) for role in ROLES}
    for app_config in global_apps.get_app_configs():
        try:
            module = importlib.import_module(f"{app_config.name}.roles")
        except ModuleNotFoundError as error:
            if error.name != f"{app_config.name}.roles":
                raise
            continue
        if module.__name__ == __name__:
            continue
        for role, perms in module.ROLE_PERMISSIONS.items():
            merged[role].extend(perms)
    return merged


def sync_roles(apps=global_apps) -> dict[str, int]:
    """Create the groups and set exactly these model permissions. Idempotent."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    counts = {}
    for name, perms in role_permissions().items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.extend(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)
        counts[name] = len(wanted)
    return counts
