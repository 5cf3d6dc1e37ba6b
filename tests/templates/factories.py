"""Templates built through the real workflow: an author drafts, a different
reviewer approves (so the four-eyes rule holds in every test that sends)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group, User

from config import roles
from templates import services
from templates.models import Template, TemplateVersion


def _user(username: str, role: str) -> User:
    roles.sync_roles()
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # fresh: no stale permission cache


def factory_author() -> User:
    return _user("factory_author", roles.MARKETER)


def factory_reviewer() -> User:
    return _user("factory_reviewer", roles.REVIEWER)


def draft_version(template: Template, *, author: User, content: dict[str, Any],
                  locales: Iterable[str] = ("en",), variables: Iterable[Any] = (),
                  content_by_locale: dict[str, dict[str, Any]] | None = None) -> TemplateVersion:
    """A new draft of template with the same content in each locale (or per locale)."""
    version = services.version_create_draft(template=template, actor=author)
    for locale in locales:
        version_fields, variant_fields, status = services.content_to_fields(
            (content_by_locale or {}).get(locale, content)
        )
        if version_fields:
            services.version_update(version=version, actor=author, **version_fields)
        variant = services.variant_save(version=version, actor=author, locale=locale, **variant_fields)
        if status or (template.channel == "whatsapp" and variant.wa_template_name):
            services.whatsapp_status_update(variant=variant, status=status or "approved")
    for variable in variables:
        spec = {"path": variable} if isinstance(variable, str) else dict(variable)
        services.variable_save(version=version, actor=author, **spec)
    return version


def approved_template(key: str, channel: str, message_class: str = "operational", content: dict | None = None,
                      locales: Iterable[str] = ("en",), variables: Iterable[Any] = (),
                      content_by_locale: dict[str, dict[str, Any]] | None = None) -> Template:
    """A template whose live version is approved. WhatsApp templates with a
    template_name are provider-approved unless content says provider_status."""
    author, reviewer = factory_author(), factory_reviewer()
    template = Template.objects.filter(key=key).first() or services.template_create(
        key=key, name=key.replace("-", " ").capitalize(), channel=channel, message_class=message_class, actor=author
    )
    version = draft_version(template, author=author, content=content or {"body": "Hello"}, locales=locales,
                            variables=variables, content_by_locale=content_by_locale)
    services.version_submit(version=version, actor=author)
    services.version_approve(version=version, actor=reviewer, comment="approved by factory")
    template.refresh_from_db()
    return template
