"""Who may edit which template: the Marketer role plus a grant on that
template (owner, user or team) — guardian object permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from guardian.shortcuts import assign_perm

from templates import permissions, selectors, services
from tests.templates.conftest import EMAIL
from tests.templates.factories import draft_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_marketer(marketer) -> User:
    user = User.objects.create_user("max_marketer", is_staff=True)
    user.groups.add(*marketer.groups.all())
    return User.objects.get(pk=user.pk)


def test_the_creator_may_edit_their_template(template, marketer):
    assert permissions.can_edit(marketer, template)
    assert marketer.has_perm("templates.change_template", template)


def test_another_marketer_may_not_edit_it_without_a_grant(template, other_marketer):
    assert not permissions.can_edit(other_marketer, template)
    with pytest.raises(services.NotAllowed):
        services.version_create_draft(template=template, actor=other_marketer)
    assert template not in selectors.templates_for_user(other_marketer, action="change")
    assert template in selectors.templates_for_user(other_marketer, action="view")


def test_a_grant_on_the_template_lets_another_marketer_edit(template, marketer, other_marketer):
    services.template_grant(template=template, actor=marketer, user=other_marketer)
    other_marketer = User.objects.get(pk=other_marketer.pk)
    assert permissions.can_edit(other_marketer, template)
    assert services.version_create_draft(template=template, actor=other_marketer).author == other_marketer


def test_a_grant_to_a_team_lets_its_members_edit(template, marketer, other_marketer):
    team = Group.objects.create(name="Team Lifecycle")
    other_marketer.groups.add(team)
    services.template_update(template=template, actor=marketer, team=team)
    other_marketer = User.objects.get(pk=other_marketer.pk)
    assert permissions.can_edit(other_marketer, template)
    assert template in selectors.templates_for_user(other_marketer, action="change")


def test_a_team_template_is_not_editable_by_other_teams(marketer, other_marketer):
    mine, theirs = Group.objects.create(name="Team A"), Group.objects.create(name="Team B")
    other_marketer.groups.add(theirs)
    template = services.template_create(key="team-a", name="A", channel="sms", message_class="marketing",
                                        actor=marketer, team=mine)
    assert not permissions.can_edit(User.objects.get(pk=other_marketer.pk), template)


def test_an_object_grant_without_the_marketer_role_is_not_enough(template, agent):
    assign_perm("templates.change_template", agent, template)
    agent = User.objects.get(pk=agent.pk)
    assert not permissions.can_edit(agent, template)


def test_an_ungranted_marketer_sees_the_draft_read_only_in_the_admin(client, other_marketer, template, marketer):
    version = draft_version(template, author=marketer, content=EMAIL)
    client.force_login(other_marketer)
    url = reverse("admin:templates_templateversion_change", args=[version.pk])
    page = client.get(url)
    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert client.post(url, {"sender_from_email": "x@example.com"}).status_code == 403
    redraft = reverse("admin:templates_templateversion_new_draft_from_this", args=[version.pk])
    assert client.get(redraft).status_code == 403


def test_only_the_owner_manages_who_may_edit(client, template, marketer, other_marketer, superuser):
    url = reverse("admin:templates_template_permissions", args=[template.pk])
    client.force_login(other_marketer)
    assert client.get(url).status_code == 403
    for person in (marketer, superuser):
        client.force_login(person)
        assert client.get(url).status_code == 200


def test_a_user_without_any_template_role_sees_no_templates(outsider, template):
    assert not selectors.templates_for_user(outsider).exists()
    assert not permissions.can_view(outsider, template)
