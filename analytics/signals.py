"""Permission and role changes as they happen: group memberships, model
permissions of users and groups, object grants (django-guardian) and the
staff/superuser/active flags. Who did it comes from simple-history's request
context (the admin), else "system"."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission, User
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from analytics.services import record_permission_change

_ACTIONS = {"post_add": "added", "post_remove": "removed", "pre_clear": "cleared"}
_FLAGS = ("is_staff", "is_superuser", "is_active")


def _actor() -> str:
    request = getattr(HistoricalRecords.context, "request", None)
    user = getattr(request, "user", None)
    return user.get_username() if user is not None and user.is_authenticated else "system"


def _subject(obj) -> str:
    return f"user:{obj.get_username()}" if isinstance(obj, User) else f"group:{obj.name}"


def _what(obj) -> str:
    if isinstance(obj, Permission):
        return f"permission:{obj.content_type.app_label}.{obj.codename}"
    return f"group:{obj.name}" if isinstance(obj, Group) else f"user:{obj.get_username()}"


def _membership_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    if action not in _ACTIONS:
        return
    field = _field_name(sender)
    if action == "pre_clear":
        others = list(getattr(instance, field).all()) if not reverse else list(
            model.objects.filter(**{field: instance}))
    else:
        others = list(model.objects.filter(pk__in=pk_set or []))
    for other in others:
        # The user (or group) whose rights changed is the subject, whichever side was edited.
        subject, what = (instance, other) if not reverse else (other, instance)
        record_permission_change(actor=_actor(), action=_ACTIONS[action], subject=_subject(subject), what=_what(what))


def _field_name(through) -> str:
    return "groups" if through is User.groups.through else ("user_permissions" if through is
                                                             User.user_permissions.through else "permissions")


def _object_grant(sender, instance, created=True, **kwargs):
    if not isinstance(instance, UserObjectPermissionBase | GroupObjectPermissionBase):
        return
    if kwargs.get("signal") is post_save and not created:
        return
    holder = instance.user if isinstance(instance, UserObjectPermissionBase) else instance.group
    target = instance.content_object
    action = "added" if kwargs.get("signal") is post_save else "removed"
    record_permission_change(
        actor=_actor(), action=action, subject=_subject(holder),
        what=f"object permission:{instance.permission.codename} on {target._meta.label} {target.pk} ({target})")


def _flags_before(sender, instance: User, **kwargs):
    if instance.pk:
        instance._flags_before = User.objects.filter(pk=instance.pk).values(*_FLAGS).first()


def _flags_after(sender, instance: User, created, **kwargs):
    before = getattr(instance, "_flags_before", None) or {}
    for flag in _FLAGS:
        now = getattr(instance, flag)
        if (created and flag != "is_active" and now) or (before and before[flag] != now):
            record_permission_change(actor=_actor(), action="changed", subject=_subject(instance),
                                     what=f"{flag}={'yes' if now else 'no'}")


def connect() -> None:
    for through in (User.groups.through, User.user_permissions.through, Group.permissions.through):
        m2m_changed.connect(_membership_changed, sender=through, dispatch_uid=f"analytics-perm-{through.__name__}")
    post_save.connect(_object_grant, dispatch_uid="analytics-object-grant-added")
    post_delete.connect(_object_grant, dispatch_uid="analytics-object-grant-removed")
    pre_save.connect(_flags_before, sender=User, dispatch_uid="analytics-user-flags-before")
    post_save.connect(_flags_after, sender=User, dispatch_uid="analytics-user-flags-after")
