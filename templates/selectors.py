"""Reads of the templates app: permission-scoped querysets, the review queue,
and the side-by-side diff of two versions."""

from __future__ import annotations

import difflib
import json

from django.conf import settings
from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from consent.models import Contact, PushDevice
from templates import permissions
from templates.models import Template, TemplateVersion, VersionStatus
from templates.services import content_snapshot


def templates_for_user(user, *, action: str = "view") -> QuerySet[Template]:
    """Templates the user may see ("view") or edit ("change"), guardian-scoped."""
    templates = Template.objects.select_related("live_version", "team", "owner")
    if not getattr(user, "is_authenticated", False):
        return templates.none()
    if user.is_superuser:
        return templates
    if action == "view" and user.has_perm("templates.view_template"):
        return templates  # the role reads every template (reviewers, operators, agents)
    perm = f"templates.{action}_template"
    if action == "change" and not user.has_perm(perm):
        return templates.none()
    granted = get_objects_for_user(user, perm, klass=Template, accept_global_perms=False)
    return templates.filter(Q(pk__in=granted.values("pk")) | Q(owner=user))


def versions_for_user(user) -> QuerySet[TemplateVersion]:
    visible = templates_for_user(user, action="view")
    return TemplateVersion.objects.select_related("template", "author").filter(template__in=visible.values("pk"))


def preview_contacts_for_user(user) -> QuerySet[Contact]:
    """Contacts a template viewer may render a preview for. A preview shows the
    contact's attributes inside the words, so it needs the right to read contacts
    (consent.view_contact); without it, only the internal seed contacts (an
    email, phone, WhatsApp id or push token in TEMPLATES_INTERNAL_SEED_ADDRESSES)."""
    if not permissions.can_view(user):
        return Contact.objects.none()
    if user.has_perm("consent.view_contact"):
        return Contact.objects.all()
    seeds = [address for address in settings.TEMPLATES_INTERNAL_SEED_ADDRESSES if address]
    if not seeds:
        return Contact.objects.none()
    internal = Q(email__in=seeds) | Q(phone__in=seeds) | Q(whatsapp_id__in=seeds)
    internal |= Q(pk__in=PushDevice.objects.filter(token__in=seeds).values("contact_id"))
    return Contact.objects.filter(internal)


def review_queue(user) -> list[dict]:
    """What waits for review, oldest first, with who wrote it and whether
    this user may review it (not if they wrote or edited it)."""
    versions = (
        versions_for_user(user).filter(status=VersionStatus.IN_REVIEW)
        .prefetch_related("editors").order_by("submitted_at", "pk")
    )
    rows, approver = [], permissions.is_approver(user)
    for version in versions:
        writers = {u.pk for u in version.editors.all()} | {version.author_id}
        rows.append({
            "version": version,
            "template": version.template,
            "author": version.author,
            "editors": [u.get_username() for u in version.editors.all() if u.pk != version.author_id],  # others
            "submitted_at": version.submitted_at,
            "may_review": approver and permissions.four_eyes_ok(user, writers),
        })
    return rows


def snapshot_lines(version: TemplateVersion) -> list[str]:
    """A version's content as readable lines, the unit of the diff."""
    snapshot = content_snapshot(version)
    lines = [f"status: {version.status}"]
    lines += [f"sender.{key}: {value}" for key, value in snapshot["sender"].items() if value]
    for locale, fields in snapshot["variants"].items():
        lines.append(f"[{locale}]")
        for field, value in fields.items():
            if value in ("", [], {}, None) or field == "locale":
                continue
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
            lines += [f"  {field}: {line}" for line in text.splitlines() or [""]]
    lines.append("[variables]")
    for path, spec in snapshot["variables"].items():
        required = "required" if spec["required"] else "optional"
        per_locale = "".join(f", {locale}: {text!r}" for locale, text in sorted(spec["locale_fallbacks"].items()))
        lines.append(f"  {path} ({spec['type']}, {required}, fallback {spec['fallback']!r}{per_locale})")
    return lines


def version_diff_html(left: TemplateVersion, right: TemplateVersion) -> str:
    """Side-by-side HTML table (difflib escapes the content)."""
    differ = difflib.HtmlDiff(wrapcolumn=70)
    table = differ.make_table(
        snapshot_lines(left), snapshot_lines(right), fromdesc=f"v{left.number}", todesc=f"v{right.number}"
    )
    # difflib pads with &nbsp;; the page keeps spaces with white-space: pre-wrap, and text stays searchable.
    return table.replace("&nbsp;", " ")
