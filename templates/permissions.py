"""Who may do what with templates. Role (model) permissions say what kind of
work a person does; guardian object permissions say which templates they may
edit (granted per template to a user or to a team, a Group); the four-eyes
rule says which versions they may approve."""

from __future__ import annotations

from django.conf import settings

from templates.models import Template, TemplateVersion

APPROVE_PERM = "templates.approve_templateversion"


def _is_user(actor) -> bool:
    return getattr(actor, "is_authenticated", False) and getattr(actor, "is_active", False)


def can_create(actor) -> bool:
    return _is_user(actor) and actor.has_perm("templates.add_template")


def can_view(actor, template: Template | None = None) -> bool:
    if not _is_user(actor):
        return False
    if actor.has_perm("templates.view_template"):
        return True
    return template is not None and actor.has_perm("templates.view_template", template)


def can_edit(actor, template: Template) -> bool:
    """The role's model permission AND this template granted (owner, user or team)."""
    if not _is_user(actor):
        return False
    if actor.is_superuser:
        return True
    if not actor.has_perm("templates.change_template"):
        return False
    return template.owner_id == actor.pk or actor.has_perm("templates.change_template", template)


def is_approver(actor) -> bool:
    return _is_user(actor) and actor.has_perm(APPROVE_PERM)


def can_set_live(actor, template: Template) -> bool:
    # Rollback puts other words in front of customers: a reviewer's decision.
    return is_approver(actor)


def approval_refusal(actor, version: TemplateVersion) -> str:
    """Why actor may not approve (or send back) this version; "" when they may."""
    if not is_approver(actor):
        return "only a compliance reviewer may approve or send back a template version"
    writers = {version.author_id, *version.editors.values_list("pk", flat=True)}
    if not four_eyes_ok(actor, writers):
        return f"four eyes: {actor.get_username()} wrote or edited {version} and may not review it"
    return ""


def four_eyes_ok(actor, writer_ids: set[int | None]) -> bool:
    """Nobody reviews what they wrote, superusers included unless the setting allows it."""
    if actor.pk not in writer_ids:
        return True
    return actor.is_superuser and settings.TEMPLATES_ALLOW_SELF_APPROVAL
