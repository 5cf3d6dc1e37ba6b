"""Rendering a template version for one contact: pick the locale variant,
resolve declared variables (required, fallback, type), render every field of
the channel in the sandbox, and refuse what must not go out. Re-exported by
templates.services, which is the public entry point (CONTRACTS.md)."""

from __future__ import annotations

import datetime as dt
import functools
from contextlib import nullcontext
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import nh3
from django.conf import settings
from django.db import models
from jinja2 import TemplateError, UndefinedError
from jinja2.exceptions import SecurityError

from consent.models import Channel, Contact
from templates.engine import RenderLimitExceeded, deadline, render_string
from templates.models import Template, TemplateVariable, TemplateVariant, TemplateVersion, VariableType, VersionStatus
from templates.models import WhatsAppStatus as WA
from templates.sms import sms_info


class RenderFailure(models.TextChoices):
    """Why a render refused; the send path records it on the message."""

    UNKNOWN_TEMPLATE = "unknown_template", "No template has this key"
    NO_LIVE_VERSION = "no_live_version", "The template has no live approved version"
    NOT_APPROVED = "not_approved", "The version is not approved"
    MISSING_VARIABLE = "missing_variable", "A required variable is missing"
    WHATSAPP_NOT_APPROVED = "whatsapp_not_approved", "WhatsApp has not approved this template"
    OUTPUT_TOO_LARGE = "output_too_large", "The template output is too large"
    RENDER_FAILED = "render_failed", "The template could not be rendered"


class RenderError(Exception):
    """A render that must not produce a message; `reason` is a RenderFailure value."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = str(reason)
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)


@dataclass(frozen=True)
class RenderedMessage:
    template_key: str
    template_version_id: int
    locale: str
    channel: str
    message_class: str
    preview: bool
    content: dict


# ---------------------------------------------------------------- data


def render_context(contact: Contact, event_properties: dict | None = None, **extra: Any) -> dict:
    """The data a template sees: plain dicts only, never model instances."""
    person = dict(contact.attributes or {})
    # Our own fields win over attributes of the same name (an attribute must not replace the address).
    person.update({
        "external_id": contact.external_id, "email": contact.email, "phone": contact.phone,
        "whatsapp_id": contact.whatsapp_id, "locale": contact.locale, "timezone": contact.timezone,
    })
    return {"contact": person, "event": dict(event_properties or {}), **extra}


def locale_chain(locale: str) -> list[str]:
    """`pt-BR` -> ["pt-br", "pt", <workspace default>], lower-cased, no repeats."""
    return list(_locale_chain(locale or "", settings.WORKSPACE_DEFAULT_LOCALE))


@functools.lru_cache(maxsize=256)
def _locale_chain(locale: str, default: str) -> tuple[str, ...]:
    # Asked twice for every message rendered, of a handful of locales.
    chain: list[str] = []
    parts = locale.replace("_", "-").lower().split("-")
    for end in range(len(parts), 0, -1):
        tag = "-".join(parts[:end])
        if tag and tag not in chain:
            chain.append(tag)
    default = default.lower()
    if default not in chain:
        chain.append(default)
    return tuple(chain)


def pick_variant(variants: list[TemplateVariant], locale: str) -> TemplateVariant:
    by_locale = {variant.locale.lower(): variant for variant in variants}
    for tag in locale_chain(locale):
        if tag in by_locale:
            return by_locale[tag]
    raise RenderError(
        RenderFailure.RENDER_FAILED,
        f"no variant for locale {locale or '(none)'} nor the workspace default {settings.WORKSPACE_DEFAULT_LOCALE}",
    )


_MISSING = object()


def _lookup(data: dict, path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _assign(data: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _check_type(variable: TemplateVariable, value: Any) -> None:
    kind = variable.type
    if kind in (VariableType.NUMBER, VariableType.MONEY):
        try:
            float(value)
        except (TypeError, ValueError):
            raise RenderError(RenderFailure.RENDER_FAILED, f"{variable.path} must be a number, got {value!r}")
    elif kind in (VariableType.DATE, VariableType.DATETIME) and isinstance(value, str):
        try:
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RenderError(RenderFailure.RENDER_FAILED, f"{variable.path} must be an ISO-8601 date, got {value!r}")
    elif kind == VariableType.URL and not str(value).startswith(("https://", "http://")):
        raise RenderError(RenderFailure.RENDER_FAILED, f"{variable.path} must be an http(s) URL, got {value!r}")


def _fallback(variable: TemplateVariable, locale: str) -> str:
    by_locale = variable.locale_fallbacks or {}
    for tag in locale_chain(locale):
        if by_locale.get(tag):
            return by_locale[tag]
    return variable.fallback


def resolve_variables(variables: list[TemplateVariable], data: dict, locale: str = "") -> dict:
    """A deep copy of data with fallbacks (in the variant's locale) filled in;
    refuses a missing required variable."""
    resolved = _copy(data)
    for variable in variables:
        value = _lookup(resolved, variable.path)
        if value is _MISSING or value is None or value == "":
            fallback = _fallback(variable, locale)
            if fallback:
                _assign(resolved, variable.path, fallback)
            elif variable.required:
                raise RenderError(RenderFailure.MISSING_VARIABLE, f"missing required variable {variable.path}")
            else:
                _assign(resolved, variable.path, "")  # optional: renders empty, `{% if %}` works
            continue
        _check_type(variable, value)
    return resolved


# Copied by _copy; any other value is kept as it is (a call per scalar was most of the copy's time).
_CONTAINERS = (dict, list, tuple)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _copy(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


# ---------------------------------------------------------------- HTML


EMAIL_TAGS = nh3.ALLOWED_TAGS | {
    "table", "thead", "tbody", "tfoot", "tr", "td", "th", "img", "center", "font", "span", "div", "hr", "br",
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "a", "u", "s", "small", "sup", "sub", "caption", "col", "colgroup",
}
EMAIL_ATTRIBUTES = {"*": {"style", "class", "align", "valign", "width", "height", "bgcolor", "border", "dir", "lang",
                          "cellpadding", "cellspacing", "colspan", "rowspan", "title", "role"},
                    "a": {"href", "target", "name"}, "img": {"src", "alt"}, "font": {"color", "face", "size"}}


def sanitise_email_html(html: str) -> str:
    """Strip scripts, event handlers and javascript: links; keep email layout markup."""
    return nh3.clean(html, tags=EMAIL_TAGS, attributes=EMAIL_ATTRIBUTES, link_rel=None,
                     url_schemes={"http", "https", "mailto", "tel"})


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "table", "hr"}
    SKIP = {"style", "script", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.href: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self.href.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "a" and self.href:
            href = self.href.pop()
            if href and not href.startswith("#"):
                self.parts.append(f" ({href})")
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(" ".join(data.split()) if data.strip() else (" " if data else ""))


def html_to_text(html: str) -> str:
    """Plain-text alternative for an email whose author left it empty."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    text, blank = [], False
    for line in lines:
        if line or not blank:
            text.append(line)
        blank = not line
    return "\n".join(text).strip()


# ---------------------------------------------------------------- channels


def _r(source: str, data: dict, *, html: bool = False) -> str:
    return render_string(source, data, html=html)


def _render_email(variant: TemplateVariant, version: TemplateVersion, data: dict) -> dict:
    html = sanitise_email_html(_r(variant.html_body, data, html=True)) if variant.html_body else ""
    text = _r(variant.text_body, data) if variant.text_body else html_to_text(html)
    profile = {
        key: value for key, value in (
            ("from_email", version.sender_from_email), ("from_name", version.sender_from_name),
            ("reply_to", version.sender_reply_to),
        ) if value
    }
    return {"subject": _r(variant.subject, data), "preheader": _r(variant.preheader, data), "html": html,
            "text": text, "sender_profile": profile}


def _render_sms(variant: TemplateVariant, version: TemplateVersion, data: dict) -> dict:
    body = _r(variant.body, data)
    info = sms_info(body)
    return {"body": body, "encoding": info.encoding, "segments": info.segments}


def _render_push(variant: TemplateVariant, version: TemplateVersion, data: dict) -> dict:
    payload = {str(key): _r(str(value), data) for key, value in (variant.data or {}).items()}
    return {"title": _r(variant.title, data), "body": _r(variant.body, data),
            "deep_link": _r(variant.deep_link, data), "data": payload}


def _render_whatsapp(variant: TemplateVariant, version: TemplateVersion, data: dict) -> dict:
    parameters = [_r("{{ " + str(expression) + " }}", data) for expression in (variant.wa_parameters or [])]
    # The Content SID is per locale (Meta approves each language separately): the sender must use
    # this variant's SID, the one whose approval render_version checked.
    return {"template_name": variant.wa_template_name, "content_sid": variant.wa_content_sid,
            "language": variant.wa_language or variant.locale, "parameters": parameters,
            "body": _r(variant.body, data), "provider_status": variant.wa_provider_status}


def _render_rcs(variant: TemplateVariant, version: TemplateVersion, data: dict) -> dict:
    suggestions = [
        {"type": item.get("type", "reply"), "text": _r(str(item.get("text", "")), data),
         "value": _r(str(item.get("value", "")), data)}
        for item in (variant.suggestions or [])
    ]
    return {"title": _r(variant.title, data), "description": _r(variant.description, data),
            "media_url": _r(variant.media_url, data), "suggestions": suggestions,
            "fallback_text": _r(variant.fallback_text, data)}


def _render_in_app(variant: TemplateVariant, version: TemplateVersion, data: dict) -> dict:
    return {"title": _r(variant.title, data), "body": _r(variant.body, data),
            "cta_label": _r(variant.cta_label, data), "cta_url": _r(variant.cta_url, data)}


RENDERERS = {
    Channel.EMAIL: _render_email, Channel.SMS: _render_sms, Channel.PUSH: _render_push,
    Channel.WHATSAPP: _render_whatsapp, Channel.RCS: _render_rcs, Channel.IN_APP: _render_in_app,
}


def _render_content(channel: str, variant: TemplateVariant, version: TemplateVersion, data: dict) -> dict:
    try:
        return RENDERERS[channel](variant, version, data)
    except RenderLimitExceeded as error:
        reason = RenderFailure.OUTPUT_TOO_LARGE if error.kind == "output" else RenderFailure.RENDER_FAILED
        raise RenderError(reason, str(error))
    except UndefinedError as error:
        raise RenderError(RenderFailure.MISSING_VARIABLE, f"undefined in template: {error.message}")
    except SecurityError as error:
        raise RenderError(RenderFailure.RENDER_FAILED, f"refused by the sandbox: {error}")
    except TemplateError as error:
        raise RenderError(RenderFailure.RENDER_FAILED, f"template error: {error}")
    except (RecursionError, MemoryError, OverflowError):
        raise RenderError(RenderFailure.RENDER_FAILED, "the template recursed or computed too much")
    except (TypeError, ValueError, ArithmeticError, LookupError) as error:
        raise RenderError(RenderFailure.RENDER_FAILED, f"{type(error).__name__}: {error}")


def _prefetched(version: TemplateVersion) -> tuple[list[TemplateVariant], list[TemplateVariable]]:
    cache = getattr(version, "_prefetched_objects_cache", {})
    variants = list(cache["variants"]) if "variants" in cache else list(version.variants.all())
    variables = list(cache["variables"]) if "variables" in cache else list(version.variables.all())
    return variants, variables


def whatsapp_provider_template(variant: TemplateVariant) -> bool:
    """A provider (Content) template, as opposed to free-form text inside the service window."""
    return bool(variant.wa_template_name or variant.wa_content_sid)


def _check_provider_approval(variant: TemplateVariant) -> None:
    """The variant that renders is the one whose SID is sent, so its own approval is what counts."""
    if whatsapp_provider_template(variant) and variant.wa_provider_status != WA.APPROVED:
        status = variant.get_wa_provider_status_display().lower()
        name = variant.wa_template_name or variant.wa_content_sid
        raise RenderError(
            RenderFailure.WHATSAPP_NOT_APPROVED,
            f"WhatsApp template {name!r} ({variant.locale}) is {status} at the provider",
        )


def render_version(*, version: TemplateVersion, contact: Contact, data: dict, preview: bool,
                   locale: str | None = None) -> RenderedMessage:
    """Render one version for one contact. preview=False refuses anything not
    approved and WhatsApp templates the provider has not approved; previews
    and test sends of drafts pass preview=True and come back marked."""
    if not preview and version.status != VersionStatus.APPROVED:
        raise RenderError(RenderFailure.NOT_APPROVED, f"{version} is {version.get_status_display().lower()}")
    template: Template = version.template
    variants, variables = _prefetched(version)
    variant = pick_variant(variants, contact.locale if locale is None else locale)
    resolved = resolve_variables(variables, data, variant.locale)
    if not preview and template.channel == Channel.WHATSAPP:
        _check_provider_approval(variant)
    # A preview runs inside a web request: bound it by the clock too, not only by the step budget.
    limit = deadline(settings.TEMPLATES_PREVIEW_MAX_SECONDS) if preview else nullcontext()
    with limit:
        content = _render_content(template.channel, variant, version, resolved)
    return RenderedMessage(
        template_key=template.key, template_version_id=version.pk, locale=variant.locale, channel=template.channel,
        message_class=template.message_class, preview=preview, content=content,
    )


def render_for_send(*, template_key: str, contact: Contact, data: dict) -> RenderedMessage:
    """The only render used for real sends: the live approved version."""
    template = Template.objects.select_related("live_version").filter(key=template_key).first()
    if template is not None and template.live_version is not None:
        template.live_version.template = template
    return render_live(template=template, template_key=template_key, contact=contact, data=data)


def render_live(*, template: Template | None, template_key: str, contact: Contact, data: dict) -> RenderedMessage:
    """`render_for_send` for a template already loaded with its live version,
    which knows its template (None: there is no template with that key), as
    `templates.services.templates_for_send` loads them for a batch: no query
    of its own."""
    if template is None:
        raise RenderError(RenderFailure.UNKNOWN_TEMPLATE, f"no template with key {template_key!r}")
    version = template.live_version
    if version is None:
        raise RenderError(RenderFailure.NO_LIVE_VERSION, f"{template_key} has no live approved version")
    return render_version(version=version, contact=contact, data=data, preview=False)


def template_has_approved_version(template_key: str) -> bool:
    return Template.objects.filter(key=template_key, live_version__status=VersionStatus.APPROVED).exists()
