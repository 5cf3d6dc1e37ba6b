"""Permission and role changes are logged with who made them."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse
from guardian.shortcuts import assign_perm, remove_perm

from analytics.models import PermissionChange
from config import roles

pytestmark = pytest.mark.django_db


def changes(**filters):
    return list(PermissionChange.objects.filter(**filters).order_by("id").values_list("action", "subject", "what"))


def test_memberships_permissions_grants_and_flags_are_logged():
    roles.sync_roles()
    PermissionChange.objects.all().delete()
    user = User.objects.create_user("pat", is_staff=True)
    group = Group.objects.get(name=roles.REVIEWER)
    user.groups.add(group)
    group.user_set.remove(user)
    perm = Permission.objects.get(codename="view_auditexport")
    user.user_permissions.add(perm)
    user.user_permissions.clear()
    user.is_superuser = True
    user.save()
    assign_perm("view_group", user, group)
    remove_perm("view_group", user, group)
    assert changes() == [
        ("changed", "user:pat", "is_staff=yes"),
        ("added", "user:pat", f"group:{roles.REVIEWER}"),
        ("removed", "user:pat", f"group:{roles.REVIEWER}"),
        ("added", "user:pat", "permission:analytics.view_auditexport"),
        ("cleared", "user:pat", "permission:analytics.view_auditexport"),
        ("changed", "user:pat", "is_superuser=yes"),
        ("added", "user:pat", f"object permission:view_group on auth.Group {group.pk} ({group})"),
        ("removed", "user:pat", f"object permission:view_group on auth.Group {group.pk} ({group})"),
    ]
    assert set(PermissionChange.objects.values_list("actor", flat=True)) == {"system"}


def test_a_change_made_in_the_admin_names_the_admin(admin_client, admin_user):
    user = User.objects.create_user("quinn", is_staff=True)
    group = Group.objects.create(name="Night shift")
    data = {"username": "quinn", "is_active": "on", "is_staff": "on", "groups": [group.pk],
            "date_joined_0": "2026-12-01", "date_joined_1": "10:00:00", "initial-date_joined_0": "2026-12-01",
            "initial-date_joined_1": "10:00:00"}
    response = admin_client.post(reverse("admin:auth_user_change", args=[user.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert changes(actor=admin_user.username) == [("added", "user:quinn", "group:Night shift")]
