"""Writes of the templates app: templates, draft versions and their content,
the four-eyes approval workflow, making a version live (and rollback), the
WhatsApp provider status. Rendering lives in templates.rendering and is
re-exported here, the public entry point other apps call (CONTRACTS.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from guardian.shortcuts import assign_perm
from jinja2 import TemplateSyntaxError

from consent.models import Channel
from consent.services import actor_label
from templates import engine, permissions
from templates.models import (
    TRANSITIONS,
    LiveVersionChange,
    Template,
    TemplateVariable,
    TemplateVariant,
    TemplateVersion,
    VersionStatus,
    VersionTransition,
    WhatsAppStatus,
)
from templates.rendering import (  # noqa: F401  (public API, re-exported)
    RenderedMessage,
    RenderError,
    RenderFailure,
    locale_chain,
    render_context,
    render_for_send,
    render_live,
    render_version,
    template_has_approved_version,
)

OBJECT_PERMS = ("change_template", "view_template")
VARIABLE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
TEMPLATED_FIELDS = ("subject", "preheader", "html_body", "text_body", "title", "body", "deep_link", "description",
                    "media_url", "fallback_text", "cta_label", "cta_url")
SUGGESTION_TYPES = ("reply", "url", "dial")


def _audit(instance, actor, reason: str) -> None:
    """Name who changed it and why in simple-history (services run outside requests too)."""
    instance._change_reason = reason
    if getattr(actor, "pk", None):
        instance._history_user = actor


class WorkflowError(Exception):
    """A template operation that cannot be done as asked (API answers 409)."""


class NotAllowed(WorkflowError):
    """The person may not take this step (role, object permission, four eyes)."""


# ---------------------------------------------------------------- rendering a batch of sends


def templates_for_send(keys: Iterable[str]) -> dict[str, Template]:
    """The templates with these keys, each with its live version and that
    version's variants and variables, in a fixed number of queries whatever
    the count: what `render_live` needs to render many sends. Keys with no
    template are absent."""
    rows = (
        Template.objects.filter(key__in=set(keys)).select_related("live_version")
        .prefetch_related("live_version__variants", "live_version__variables")
    )
    found = {}
    for template in rows:
        if template.live_version is not None:
            template.live_version.template = template  # set once here, not at each of the batch's renders
        found[template.key] = template
    return found


# ---------------------------------------------------------------- templates


@transaction.atomic
def template_create(*, key: str, name: str, channel: str, message_class: str, actor, team: Group | None = None,
                    description: str = "") -> Template:
    """Create a template owned by actor; actor (and the team) may edit it."""
    if actor is not None and not permissions.can_create(actor):
        raise NotAllowed(f"{actor_label(actor)} may not create templates")
    if Template.objects.filter(key=key).exists():
        raise WorkflowError(f"a template with key {key!r} already exists")
    template = Template(key=key, name=name, channel=channel, message_class=message_class, team=team,
                        owner=actor if getattr(actor, "pk", None) else None, description=description)
    template.full_clean()
    _audit(template, actor, "created")
    template.save()
    if template.owner:
        for perm in OBJECT_PERMS:
            assign_perm(f"templates.{perm}", template.owner, template)
    if team is not None:
        template_grant(template=template, group=team, actor=None)
    return template


@transaction.atomic
def template_update(*, template: Template, actor, **fields: Any) -> Template:
    """Change a template's name, description or team (its key, channel and class are fixed)."""
    if not permissions.can_edit(actor, template):
        raise NotAllowed(f"{actor_label(actor)} may not edit {template}")
    unknown = set(fields) - {"name", "description", "team"}
    if unknown:
        raise WorkflowError(f"cannot change {', '.join(sorted(unknown))} of a template; create a new one")
    for field, value in fields.items():
        setattr(template, field, value)
    template.full_clean(exclude=["live_version", "owner"])
    _audit(template, actor, "edited")
    template.save(update_fields=[*fields, "updated_at"])
    if fields.get("team") is not None:
        template_grant(template=template, group=fields["team"], actor=None)
    return template


def template_grant(*, template: Template, actor, user=None, group: Group | None = None,
                   perms: tuple[str, ...] = OBJECT_PERMS) -> None:
    """Let one user or one team (a Group) edit and view this template."""
    if actor is not None and not permissions.can_edit(actor, template):
        raise NotAllowed(f"{actor_label(actor)} may not share {template}")
    for perm in perms:
        assign_perm(f"templates.{perm}", user if user is not None else group, template)


# ---------------------------------------------------------------- drafts


def content_snapshot(version: TemplateVersion) -> dict:
    """Everything a reviewer approves, in a canonical shape (hash and diff)."""
    variants = sorted(version.variants.all(), key=lambda v: v.locale)
    variables = sorted(version.variables.all(), key=lambda v: v.path)
    return {
        "sender": {field: getattr(version, field) for field in TemplateVersion.CONTENT_FIELDS},
        "variants": {v.locale: {f: getattr(v, f) for f in TemplateVariant.CONTENT_FIELDS} for v in variants},
        "variables": {v.path: {"type": v.type, "required": v.required, "fallback": v.fallback,
                               "locale_fallbacks": v.locale_fallbacks} for v in variables},
    }


def content_hash(version: TemplateVersion) -> str:
    canonical = json.dumps(content_snapshot(version), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@transaction.atomic
def version_create_draft(*, template: Template, actor, based_on: TemplateVersion | None = None) -> TemplateVersion:
    """A new draft: a copy of `based_on` (or of the newest version) to edit.
    This is how an approved version is "edited": it stays as it was."""
    if not permissions.can_edit(actor, template):
        raise NotAllowed(f"{actor_label(actor)} may not edit {template}")
    Template.objects.select_for_update().filter(pk=template.pk).first()  # serialise numbering
    source = based_on or template.versions.order_by("-number").first()
    if source is not None and source.template_id != template.pk:
        raise WorkflowError(f"{source} belongs to another template")
    number = (template.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    user = actor if getattr(actor, "pk", None) else None
    draft = TemplateVersion(template=template, number=number, author=user, based_on=source)
    if source is not None:
        for field in TemplateVersion.CONTENT_FIELDS:
            setattr(draft, field, getattr(source, field))
    _audit(draft, actor, f"draft created from v{source.number}" if source else "draft created")
    draft.save()
    if source is not None:
        for variant in source.variants.all():
            TemplateVariant.objects.create(
                version=draft, **{f: getattr(variant, f) for f in TemplateVariant.CONTENT_FIELDS}
            )
        for variable in source.variables.all():
            TemplateVariable.objects.create(version=draft, path=variable.path, type=variable.type,
                                            required=variable.required, fallback=variable.fallback,
                                            locale_fallbacks=variable.locale_fallbacks)
    if user:
        draft.editors.add(user)
    return draft


def _check_editable(version: TemplateVersion, actor) -> None:
    if not version.is_editable:
        raise WorkflowError(f"{version} is {version.get_status_display().lower()}: edit it as a new draft version")
    if not permissions.can_edit(actor, version.template):
        raise NotAllowed(f"{actor_label(actor)} may not edit {version.template}")


def version_touch(*, version: TemplateVersion, actor) -> None:
    """Record that actor changed this draft's content: they may no longer approve it."""
    if getattr(actor, "pk", None):
        version.editors.add(actor)


@transaction.atomic
def version_update(*, version: TemplateVersion, actor, **fields: Any) -> TemplateVersion:
    """Change the sender profile of a draft."""
    _check_editable(version, actor)
    unknown = set(fields) - set(TemplateVersion.CONTENT_FIELDS)
    if unknown:
        raise WorkflowError(f"not version content: {', '.join(sorted(unknown))}")
    for field, value in fields.items():
        setattr(version, field, value)
    version.full_clean(exclude=["template", "author", "based_on", "approved_by"])
    _audit(version, actor, "edited")
    version.save(update_fields=[*fields, "updated_at"])
    version_touch(version=version, actor=actor)
    return version


@transaction.atomic
def variant_save(*, version: TemplateVersion, actor, locale: str, variant: TemplateVariant | None = None,
                 **fields: Any) -> TemplateVariant:
    """Create or change the words of a draft in one locale (or re-label `variant` to `locale`)."""
    _check_editable(version, actor)
    unknown = set(fields) - set(TemplateVariant.CONTENT_FIELDS)
    if unknown:
        raise WorkflowError(f"not variant content: {', '.join(sorted(unknown))}")
    locale = locale.strip()
    if variant is None or variant.pk is None:
        variant = version.variants.filter(locale__iexact=locale).first() or TemplateVariant(version=version)
    elif variant.version_id != version.pk:
        raise WorkflowError(f"{variant} belongs to another version")
    variant.locale = locale
    for field, value in fields.items():
        setattr(variant, field, value)
    variant.full_clean(exclude=["version"])
    check_variant(variant)
    _audit(variant, actor, "edited")
    variant.save()
    version_touch(version=version, actor=actor)
    return variant


def check_variant(variant: TemplateVariant) -> None:
    """Refuse content that cannot render: syntax errors, malformed lists."""
    errors: dict[str, str] = {}
    for field in TEMPLATED_FIELDS:
        problem = syntax_problem(getattr(variant, field))
        if problem:
            errors[field] = problem
    if not isinstance(variant.wa_parameters, list) or not all(
        isinstance(p, str) and p.strip() and not syntax_problem("{{ " + p + " }}") for p in variant.wa_parameters
    ):
        errors["wa_parameters"] = 'a list of expressions, e.g. ["contact.first_name", "event.appointment_at"]'
    if not isinstance(variant.data, dict):
        errors["data"] = "an object of key: value pairs"
    suggestions = variant.suggestions
    if not isinstance(suggestions, list) or not all(
        isinstance(s, dict) and s.get("type") in SUGGESTION_TYPES and s.get("text") for s in suggestions
    ):
        errors["suggestions"] = 'a list of {"type": "reply|url|dial", "text": "...", "value": "..."}'
    if errors:
        raise ValidationError(errors)


def syntax_problem(source: str) -> str:
    if not source:
        return ""
    try:
        engine.environment(html=False).parse(source)
    except TemplateSyntaxError as error:
        return f"template syntax error on line {error.lineno}: {error.message}"
    return ""


@transaction.atomic
def variant_delete(*, variant: TemplateVariant, actor) -> None:
    _check_editable(variant.version, actor)
    variant.delete()
    version_touch(version=variant.version, actor=actor)


@transaction.atomic
def variable_save(*, version: TemplateVersion, actor, path: str, type: str = "string", required: bool = False,
                  fallback: str = "", locale_fallbacks: dict[str, str] | None = None,
                  variable: TemplateVariable | None = None) -> TemplateVariable:
    """Declare (or change) a variable of a draft."""
    _check_editable(version, actor)
    if variable is None or variable.pk is None:
        variable = version.variables.filter(path=path).first() or TemplateVariable(version=version)
    elif variable.version_id != version.pk:
        raise WorkflowError(f"{variable} belongs to another version")
    if not VARIABLE_PATH.fullmatch(path or ""):
        raise ValidationError({"path": f"{path!r} is not a dotted path such as contact.first_name"})
    locale_fallbacks = locale_fallbacks or {}
    if not isinstance(locale_fallbacks, dict) or not all(isinstance(v, str) for v in locale_fallbacks.values()):
        raise ValidationError({"locale_fallbacks": 'an object of locale: text, e.g. {"pt": "cliente"}'})
    variable.path, variable.type, variable.required, variable.fallback = path, type, required, fallback
    variable.locale_fallbacks = {str(k).lower(): v for k, v in locale_fallbacks.items()}
    variable.full_clean(exclude=["version"])
    variable.save()
    version_touch(version=version, actor=actor)
    return variable


@transaction.atomic
def variable_delete(*, variable: TemplateVariable, actor) -> None:
    _check_editable(variable.version, actor)
    variable.delete()
    version_touch(version=variable.version, actor=actor)


# ---------------------------------------------------------------- workflow


def validate_for_review(version: TemplateVersion) -> list[str]:
    """What stops a version from going to review; empty when it may go."""
    problems = []
    variants = list(version.variants.all())
    default = settings.WORKSPACE_DEFAULT_LOCALE.lower()
    if not variants:
        problems.append("it has no locale variant")
    elif default not in {v.locale.lower() for v in variants}:
        problems.append(f"it has no variant in the workspace default locale ({default}), the last fallback")
    channel = version.template.channel
    for variant in variants:
        problems.extend(f"[{variant.locale}] {p}" for p in _variant_problems(channel, variant))
    return problems


def _variant_problems(channel: str, v: TemplateVariant) -> list[str]:
    needs = {
        Channel.EMAIL: [("subject", v.subject), ("HTML or text body", v.html_body or v.text_body)],
        Channel.SMS: [("body", v.body)],
        Channel.PUSH: [("title or body", v.title or v.body)],
        Channel.WHATSAPP: [("template name or free-form body", v.wa_template_name or v.body)],
        Channel.RCS: [("title", v.title), ("SMS fallback text", v.fallback_text)],
        Channel.IN_APP: [("title or body", v.title or v.body)],
    }[channel]
    return [f"needs a {label}" for label, value in needs if not value]


def _transition(version: TemplateVersion, *, to: str, actor, comment: str, **changes: Any) -> TemplateVersion:
    """Move one version along the workflow under a row lock, and record it."""
    locked = TemplateVersion.objects.select_for_update().select_related("template").get(pk=version.pk)
    if to not in TRANSITIONS[locked.status]:
        raise WorkflowError(
            f"{locked} is {locked.get_status_display().lower()}; it cannot move to {VersionStatus(to).label.lower()}"
        )
    digest = content_hash(locked)
    from_status = locked.status
    locked.status = to
    for field, value in changes.items():
        setattr(locked, field, value)
    _audit(locked, actor, f"{from_status} -> {to}" + (f": {comment}" if comment else ""))
    locked.save(update_fields=["status", "updated_at", *changes])
    VersionTransition.objects.create(
        version=locked, from_status=from_status, to_status=to, actor=actor if getattr(actor, "pk", None) else None,
        actor_label=actor_label(actor), comment=comment, content_hash=digest,
    )
    return locked


@transaction.atomic
def version_submit(*, version: TemplateVersion, actor, comment: str = "") -> TemplateVersion:
    """draft / changes requested -> in review."""
    if not permissions.can_edit(actor, version.template):
        raise NotAllowed(f"{actor_label(actor)} may not submit {version}")
    problems = validate_for_review(version)
    if problems:
        raise WorkflowError(f"{version} cannot go to review: " + "; ".join(problems))
    return _transition(version, to=VersionStatus.IN_REVIEW, actor=actor, comment=comment,
                       submitted_at=timezone.now())


@transaction.atomic
def version_approve(*, version: TemplateVersion, actor, comment: str = "") -> TemplateVersion:
    """in review -> approved, and make it live. Four eyes: never by an author or editor."""
    refusal = permissions.approval_refusal(actor, version)
    if refusal:
        raise NotAllowed(refusal)
    now = timezone.now()
    approved = _transition(version, to=VersionStatus.APPROVED, actor=actor, comment=comment, approved_at=now,
                           approved_by=actor if getattr(actor, "pk", None) else None)
    approved.content_hash = approved.transitions.values_list("content_hash", flat=True).first()
    approved.save(update_fields=["content_hash"])
    _make_live(approved.template, approved, actor=actor, comment=comment or "approved", rollback=False)
    return approved


@transaction.atomic
def version_request_changes(*, version: TemplateVersion, actor, comment: str) -> TemplateVersion:
    """in review -> changes requested; the reviewer says what to change."""
    refusal = permissions.approval_refusal(actor, version)
    if refusal:
        raise NotAllowed(refusal)
    if not comment.strip():
        raise WorkflowError("say what needs to change")
    return _transition(version, to=VersionStatus.CHANGES_REQUESTED, actor=actor, comment=comment)


@transaction.atomic
def version_archive(*, version: TemplateVersion, actor, comment: str = "") -> TemplateVersion:
    """approved -> archived; never the live version (make another one live first)."""
    if not (permissions.can_edit(actor, version.template) or permissions.is_approver(actor)):
        raise NotAllowed(f"{actor_label(actor)} may not archive {version}")
    if Template.objects.filter(live_version=version).exists():
        raise WorkflowError(f"{version} is live; make another approved version live before archiving it")
    return _transition(version, to=VersionStatus.ARCHIVED, actor=actor, comment=comment)


def _make_live(template: Template, version: TemplateVersion, *, actor, comment: str, rollback: bool) -> None:
    locked = Template.objects.select_for_update().get(pk=template.pk)
    previous = locked.live_version_id
    locked.live_version = version
    _audit(locked, actor, f"live: v{version.number}" + (f" ({comment})" if comment else ""))
    locked.save(update_fields=["live_version", "updated_at"])
    LiveVersionChange.objects.create(
        template=locked, from_version_id=previous, to_version=version, is_rollback=rollback, comment=comment,
        actor=actor if getattr(actor, "pk", None) else None, actor_label=actor_label(actor),
    )
    template.live_version = version


@transaction.atomic
def template_set_live(*, template: Template, version: TemplateVersion, actor, comment: str) -> Template:
    """Rollback (or roll forward): make another approved version live. Audited."""
    if not permissions.can_set_live(actor, template):
        raise NotAllowed(f"{actor_label(actor)} may not change which version of {template} is live")
    template.live_version_id = Template.objects.select_for_update().values_list("live_version", flat=True).get(
        pk=template.pk
    )
    version.status = TemplateVersion.objects.values_list("status", flat=True).get(pk=version.pk)
    if version.template_id != template.pk:
        raise WorkflowError(f"{version} belongs to another template")
    if version.status != VersionStatus.APPROVED:
        raise WorkflowError(f"only an approved version can be live; {version} is {version.status}")
    if template.live_version_id == version.pk:
        raise WorkflowError(f"{version} is already live")
    if not comment.strip():
        raise WorkflowError("say why the live version changes")
    _make_live(template, version, actor=actor, comment=comment, rollback=True)
    return template


# ---------------------------------------------------------------- WhatsApp provider status


def whatsapp_status_update(*, variant: TemplateVariant, status: str, reason: str = "",
                           now: dt.datetime | None = None) -> bool:
    """Store the provider's verdict on a WhatsApp template; returns whether it changed."""
    if status not in WhatsAppStatus.values:
        raise ValidationError(f"unknown WhatsApp status {status!r}")
    changed = variant.wa_provider_status != status or variant.wa_rejection_reason != reason[:500]
    variant.wa_provider_status, variant.wa_rejection_reason = status, reason[:500]
    variant.wa_status_checked_at = now or timezone.now()
    _audit(variant, None, f"provider status: {status}")
    variant.save(update_fields=["wa_provider_status", "wa_status_checked_at", "wa_rejection_reason"])
    return changed


# ---------------------------------------------------------------- content in the rendered vocabulary

# Rendered-content keys (CONTRACTS.md) that name a differently called model field.
CONTENT_ALIASES = {
    "html": "html_body", "text": "text_body", "template_name": "wa_template_name", "language": "wa_language",
    "category": "wa_category", "parameters": "wa_parameters", "content_sid": "wa_content_sid",
}


def content_to_fields(content: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Split content written with the rendered keys (subject, html, template_name…)
    into (version fields, variant fields, WhatsApp provider status)."""
    content = dict(content)
    profile = content.pop("sender_profile", None) or {}
    status = content.pop("provider_status", "")
    version_fields = {f"sender_{key}": value for key, value in profile.items()}
    variant_fields = {CONTENT_ALIASES.get(key, key): value for key, value in content.items()}
    unknown = set(variant_fields) - set(TemplateVariant.CONTENT_FIELDS)
    unknown |= set(version_fields) - set(TemplateVersion.CONTENT_FIELDS)
    if unknown:
        raise WorkflowError(f"unknown content fields: {', '.join(sorted(unknown))}")
    return version_fields, variant_fields, status
