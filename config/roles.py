"""The four role groups and their model permissions. Object-level grants
(which journeys, templates and cases) are made with django-guardian on top.

Each app owns its lines here; a permission whose model does not exist yet is
skipped, so `setup_roles` can run at any migration state and add the rest."""

from __future__ import annotations

from django.apps import apps as global_apps

MARKETER = "Marketer"
REVIEWER = "Compliance reviewer"
AGENT = "Support agent"
OPERATOR = "Operator"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    MARKETER: [
        "consent.view_contact", "consent.view_consentrecord", "consent.view_suppression",
        "consent.view_quiethoursrule", "consent.view_holiday",
    ],
    REVIEWER: [
        "consent.view_contact", "consent.view_consentrecord", "consent.view_suppression",
        "consent.add_suppression", "consent.view_contactmerge", "consent.view_quiethoursrule", "consent.view_holiday",
    ],
    AGENT: [
        "consent.view_contact", "consent.view_consentrecord", "consent.add_consentrecord",
        "consent.view_pushdevice",
    ],
    OPERATOR: [
        "consent.view_contact", "consent.change_contact", "consent.view_consentrecord",
        "consent.add_consentrecord", "consent.view_suppression", "consent.add_suppression",
        "consent.change_suppression", "consent.view_quiethoursrule", "consent.add_quiethoursrule",
        "consent.change_quiethoursrule", "consent.view_holiday", "consent.add_holiday", "consent.change_holiday",
        "consent.view_contactmerge", "consent.view_pushdevice", "consent.change_pushdevice",
        "django_celery_beat.view_periodictask", "django_celery_beat.change_periodictask",
    ],
}


def sync_roles(apps=global_apps) -> dict[str, int]:
    """Create the groups and set exactly these model permissions. Idempotent."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    counts = {}
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.extend(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)
        counts[name] = len(wanted)
    return counts
