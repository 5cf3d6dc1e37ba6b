"""Admin for message templates: templates (with object permissions and
history), versions with their locale variants and variables, the workflow as
Unfold actions, the review queue, the side-by-side diff and the preview."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from guardian.admin import GuardedModelAdminMixin
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin, StackedInline, TabularInline
from unfold.decorators import action, display
from unfold.enums import ActionVariant
from unfold.forms import BaseDialogForm

from consent.models import Channel, Contact
from templates import permissions, selectors, services
from templates.models import Template, TemplateVariable, TemplateVariant, TemplateVersion, VersionStatus
from templates.sms import sms_info

CHANNEL_FIELDS = {
    Channel.EMAIL: ["locale", "subject", "preheader", "html_body", "text_body"],
    Channel.SMS: ["locale", "body", "sms_summary"],
    Channel.PUSH: ["locale", "title", "body", "deep_link", "data"],
    Channel.WHATSAPP: ["locale", "wa_template_name", "wa_content_sid", "wa_language", "wa_category",
                       "wa_parameters", "body", "wa_provider_status", "wa_status_checked_at", "wa_rejection_reason"],
    Channel.RCS: ["locale", "title", "description", "media_url", "suggestions", "fallback_text"],
    Channel.IN_APP: ["locale", "title", "body", "cta_label", "cta_url"],
}
STATUS_COLOURS = {"draft": "#6b7280", "in_review": "#b45309", "approved": "#15803d",
                  "changes_requested": "#b91c1c", "archived": "#9ca3af"}


def _fail(request: HttpRequest, error: Exception) -> None:
    if isinstance(error, ValidationError):
        messages.error(request, "; ".join(error.messages))
    else:
        messages.error(request, str(error))


# ---------------------------------------------------------------- dialogs


class CommentForm(BaseDialogForm):
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class RequiredCommentForm(BaseDialogForm):
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="What should change, and why")


class MakeLiveForm(BaseDialogForm):
    version = forms.ModelChoiceField(queryset=TemplateVersion.objects.none(), help_text="An approved version")
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="Why (kept in the audit trail)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = TemplateVersion.objects.filter(
            template_id=self.object_id, status=VersionStatus.APPROVED
        ).exclude(live_for__isnull=False)


# ---------------------------------------------------------------- templates


class VersionListInline(TabularInline):
    model = TemplateVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["number", "status", "author", "submitted_at", "approved_by", "approved_at"]
    readonly_fields = fields
    ordering = ["-number"]
    verbose_name_plural = "Versions"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Template)
class TemplateAdmin(GuardedModelAdminMixin, SimpleHistoryAdmin, ModelAdmin):
    list_display = ["key", "name", "channel", "message_class", "live", "team", "owner", "updated_at"]
    list_filter = ["channel", "message_class", "team"]
    search_fields = ["key", "name"]
    list_select_related = ["live_version", "team", "owner"]
    inlines = [VersionListInline]
    actions_detail = ["new_draft", "make_live", "compare_versions"]
    obj_perms_manage_template = "admin/guardian/model/obj_perms_manage.html"

    @display(description="Live version")
    def live(self, template: Template) -> str:
        return f"v{template.live_version.number}" if template.live_version else "—"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Template]:
        return selectors.templates_for_user(request.user, action="view")

    def get_fields(self, request, obj=None):
        return ["key", "name", "description", "channel", "message_class", "team", "owner", "live_version"]

    def get_readonly_fields(self, request, obj=None):
        fixed = ["owner", "live_version"]
        return [*fixed, "key", "channel", "message_class"] if obj else fixed

    def has_view_permission(self, request, obj=None) -> bool:
        return permissions.can_view(request.user, obj) or super().has_view_permission(request, obj)

    def has_add_permission(self, request) -> bool:
        return permissions.can_create(request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is None:
            return request.user.has_perm("templates.change_template")
        return permissions.can_edit(request.user, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # messages point at versions: archive versions instead

    def save_model(self, request, obj: Template, form, change: bool) -> None:
        if change:
            fields = {f: getattr(obj, f) for f in ("name", "description", "team") if f in form.changed_data}
            services.template_update(template=obj, actor=request.user, **fields)
            return
        created = services.template_create(
            key=obj.key, name=obj.name, channel=obj.channel, message_class=obj.message_class,
            team=obj.team, description=obj.description, actor=request.user,
        )
        obj.pk, obj._state.adding, obj.owner = created.pk, False, created.owner

    # Sharing a template (object permissions) is for its owner and superusers.
    def _may_share(self, request, object_pk) -> bool:
        template = get_object_or_404(self.get_queryset(request), pk=object_pk)
        return request.user.is_superuser or template.owner_id == request.user.pk

    def obj_perms_manage_view(self, request, object_pk):
        if not self._may_share(request, object_pk):
            raise PermissionDenied
        return super().obj_perms_manage_view(request, object_pk)

    def obj_perms_manage_user_view(self, request, object_pk, user_id):
        if not self._may_share(request, object_pk):
            raise PermissionDenied
        return super().obj_perms_manage_user_view(request, object_pk, user_id)

    def obj_perms_manage_group_view(self, request, object_pk, group_id):
        if not self._may_share(request, object_pk):
            raise PermissionDenied
        return super().obj_perms_manage_group_view(request, object_pk, group_id)

    # -- actions

    def _template(self, request, object_id) -> Template:
        return get_object_or_404(self.get_queryset(request), pk=object_id)

    def has_edit_permission(self, request: HttpRequest, object_id=None) -> bool:
        template = object_id and self.get_queryset(request).filter(pk=object_id).first()
        return bool(template) and permissions.can_edit(request.user, template)

    def has_set_live_permission(self, request: HttpRequest, object_id=None) -> bool:
        return permissions.is_approver(request.user)

    def has_compare_permission(self, request: HttpRequest, object_id=None) -> bool:
        return permissions.can_view(request.user)

    @action(description="New draft version", url_path="new-draft", permissions=["edit"], icon="edit_note")
    def new_draft(self, request: HttpRequest, object_id):
        template = self._template(request, object_id)
        base = template.live_version or template.versions.order_by("-number").first()
        draft = services.version_create_draft(template=template, actor=request.user, based_on=base)
        messages.success(request, f"Draft v{draft.number} created" + (f" from v{base.number}." if base else "."))
        return HttpResponseRedirect(reverse("admin:templates_templateversion_change", args=[draft.pk]))

    @action(
        description="Make another version live (rollback)", url_path="make-live", permissions=["set_live"],
        variant=ActionVariant.WARNING, icon="history",
        dialog={"title": "Make another approved version live",
                "description": "Sends use the chosen version from now on. Recorded with your comment.",
                "form_class": MakeLiveForm, "form_submit_text": "Make live"},
    )
    def make_live(self, request: HttpRequest, form: MakeLiveForm, object_id):
        template = self._template(request, object_id)
        try:
            services.template_set_live(template=template, version=form.cleaned_data["version"],
                                       actor=request.user, comment=form.cleaned_data["comment"])
        except services.WorkflowError as error:
            _fail(request, error)
        else:
            messages.success(request, f"v{form.cleaned_data['version'].number} is now live.")
        return HttpResponseRedirect(reverse("admin:templates_template_change", args=[object_id]))

    @action(description="Compare versions", url_path="compare", permissions=["compare"], icon="difference")
    def compare_versions(self, request: HttpRequest, object_id):
        return HttpResponseRedirect(reverse("admin:templates_template_diff", args=[object_id]))

    def get_urls(self):
        extra = [path("<path:object_id>/diff/", self.admin_site.admin_view(self.diff_view),
                      name="templates_template_diff")]
        return extra + super().get_urls()

    def diff_view(self, request: HttpRequest, object_id) -> HttpResponse:
        template = self._template(request, object_id)
        versions = list(template.versions.prefetch_related("variants", "variables").order_by("-number"))
        by_id = {str(v.pk): v for v in versions}
        default_right = versions[0] if versions else None
        default_left = template.live_version if template.live_version in versions else None
        if default_left is None or default_left == default_right:
            default_left = versions[1] if len(versions) > 1 else default_right
        left = by_id.get(request.GET.get("left", ""), default_left)
        right = by_id.get(request.GET.get("right", ""), default_right)
        table = selectors.version_diff_html(left, right) if left and right else ""
        context = {**self.admin_site.each_context(request), "title": f"Compare versions of {template.key}",
                   "template_obj": template, "versions": versions, "left": left, "right": right, "table": table,
                   "opts": self.model._meta}
        return TemplateResponse(request, "message_templates/diff.html", context)


# ---------------------------------------------------------------- versions


class _VersionContentInline:
    """Rows of a version's content: editable only on an editable version by an editor."""

    def _editable(self, request, obj) -> bool:
        return obj is not None and obj.is_editable and permissions.can_edit(request.user, obj.template)

    def has_add_permission(self, request, obj=None) -> bool:
        return self._editable(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._editable(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._editable(request, obj)


class VariantInline(_VersionContentInline, StackedInline):
    model = TemplateVariant
    extra = 0
    verbose_name = "Locale variant"
    verbose_name_plural = "Locale variants (fallback: pt-BR → pt → workspace default)"
    readonly_fields = ["sms_summary", "wa_provider_status", "wa_status_checked_at", "wa_rejection_reason"]

    def get_fields(self, request, obj=None):
        return CHANNEL_FIELDS[obj.template.channel] if obj else ["locale"]

    @property
    def media(self):
        # Live encoding/segment count while typing an SMS body.
        return super().media + forms.Media(js=["message_templates/sms_counter.js"])

    @display(description="Encoding and segments")
    def sms_summary(self, variant: TemplateVariant) -> str:
        if not variant.pk:
            return "Shown after saving"
        info = sms_info(variant.body)
        limit = settings.TEMPLATES_SMS_SEGMENT_WARNING
        warning = f" — more than {limit} segments: costly, consider shortening" if info.segments > limit else ""
        return f"{info.encoding}, {info.length} characters, {info.segments} segment(s){warning}"


class VariableInline(_VersionContentInline, TabularInline):
    model = TemplateVariable
    extra = 0
    fields = ["path", "type", "required", "fallback", "locale_fallbacks"]


@admin.register(TemplateVersion)
class TemplateVersionAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ["__str__", "template", "status_badge", "author", "submitted_at", "approved_by", "approved_at"]
    list_filter = ["status", "template__channel"]
    search_fields = ["template__key", "template__name"]
    list_select_related = ["template", "author", "approved_by"]
    inlines = [VariantInline, VariableInline]
    readonly_fields = ["template", "number", "status", "author", "writers", "based_on", "submitted_at",
                       "approved_by", "approved_at", "content_hash", "live_state", "audit_trail"]
    list_before_template = "message_templates/queue_link.html"
    actions_detail = ["submit_for_review", "approve", "request_changes", "archive", "new_draft_from_this",
                      "open_preview"]

    def get_fieldsets(self, request, obj=None):
        sender = ["sender_from_email", "sender_from_name", "sender_reply_to"]
        fieldsets = [
            (None, {"fields": ["template", "number", "status", "live_state", "based_on"]}),
            ("Authors", {"fields": ["author", "writers"]}),
            ("Review", {"fields": ["submitted_at", "approved_by", "approved_at", "content_hash", "audit_trail"]}),
        ]
        if obj and obj.template.channel == Channel.EMAIL:
            fieldsets.insert(1, ("Sender profile", {"fields": sender}))
        return fieldsets

    @display(description="Status")
    def status_badge(self, version: TemplateVersion) -> str:
        return format_html("<span style='color:{}'>{}</span>", STATUS_COLOURS[version.status],
                           version.get_status_display())

    @display(description="Live")
    def live_state(self, version: TemplateVersion) -> str:
        return "Live: sends use this version" if Template.objects.filter(live_version=version).exists() else "Not live"

    @display(description="Wrote or edited (may not review it)")
    def writers(self, version: TemplateVersion) -> str:
        return ", ".join(sorted(u.get_username() for u in version.editors.all())) or "—"

    @display(description="Workflow trail")
    def audit_trail(self, version: TemplateVersion) -> str:
        rows = version.transitions.order_by("at", "id")
        if not rows:
            return "—"
        return format_html(
            "<table><tr><th>When</th><th>Who</th><th>From → to</th><th>Comment</th><th>Content hash</th></tr>{}"
            "</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td><code>{}</code></td></tr>",
                             ((t.at, t.actor_label, t.from_status, t.to_status, t.comment, t.content_hash[:12])
                              for t in rows)),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[TemplateVersion]:
        return selectors.versions_for_user(request.user).select_related("approved_by")

    def has_view_permission(self, request, obj=None) -> bool:
        return permissions.can_view(request.user, obj.template if obj else None)

    def has_add_permission(self, request) -> bool:
        return False  # a version starts as "New draft version" on its template

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is None:
            return request.user.has_perm("templates.change_templateversion")
        return obj.is_editable and permissions.can_edit(request.user, obj.template)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj: TemplateVersion, form, change: bool) -> None:
        fields = {f: getattr(obj, f) for f in TemplateVersion.CONTENT_FIELDS if f in form.changed_data}
        if fields:
            obj.refresh_from_db(fields=list(fields))
            services.version_update(version=obj, actor=request.user, **fields)

    def save_formset(self, request, form, formset, change: bool) -> None:
        version = form.instance
        instances = formset.save(commit=False)
        for removed in formset.deleted_objects:
            remove = services.variant_delete if isinstance(removed, TemplateVariant) else services.variable_delete
            remove(**{"variant" if isinstance(removed, TemplateVariant) else "variable": removed},
                   actor=request.user)
        for row in instances:
            if isinstance(row, TemplateVariant):
                fields = {f: getattr(row, f) for f in TemplateVariant.CONTENT_FIELDS if f != "locale"}
                services.variant_save(version=version, actor=request.user, locale=row.locale, variant=row, **fields)
            else:
                services.variable_save(version=version, actor=request.user, path=row.path, type=row.type,
                                       required=row.required, fallback=row.fallback,
                                       locale_fallbacks=row.locale_fallbacks, variable=row)
        formset.save_m2m()

    # -- workflow actions (thin: check, call one service, answer)

    def _version(self, request, object_id) -> TemplateVersion:
        return get_object_or_404(self.get_queryset(request), pk=object_id)

    def _back(self, object_id) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:templates_templateversion_change", args=[object_id]))

    def has_submit_permission(self, request, object_id=None) -> bool:
        version = object_id and self.get_queryset(request).filter(pk=object_id).first()
        return bool(version) and version.is_editable and permissions.can_edit(request.user, version.template)

    def has_review_permission(self, request, object_id=None) -> bool:
        version = object_id and self.get_queryset(request).filter(pk=object_id).first()
        return bool(version) and version.status == VersionStatus.IN_REVIEW and not permissions.approval_refusal(
            request.user, version)

    def has_archive_permission(self, request, object_id=None) -> bool:
        version = object_id and self.get_queryset(request).filter(pk=object_id).first()
        return bool(version) and version.status == VersionStatus.APPROVED and (
            permissions.is_approver(request.user) or permissions.can_edit(request.user, version.template))

    def has_redraft_permission(self, request, object_id=None) -> bool:
        version = object_id and self.get_queryset(request).filter(pk=object_id).first()
        return bool(version) and permissions.can_edit(request.user, version.template)

    def has_preview_permission(self, request, object_id=None) -> bool:
        return permissions.can_view(request.user)

    def _run(self, request, object_id, service, done: str, **kwargs):
        try:
            service(version=self._version(request, object_id), actor=request.user, **kwargs)
        except (services.WorkflowError, ValidationError) as error:
            _fail(request, error)
        else:
            messages.success(request, done)
        return self._back(object_id)

    @action(description="Submit for review", url_path="submit", permissions=["submit"], icon="send",
            dialog={"title": "Submit for review", "description": "The content freezes until a reviewer decides.",
                    "form_class": CommentForm, "form_submit_text": "Submit"})
    def submit_for_review(self, request, form, object_id):
        return self._run(request, object_id, services.version_submit, "Submitted for review.",
                         comment=form.cleaned_data["comment"])

    @action(description="Approve and make live", url_path="approve", permissions=["review"],
            variant=ActionVariant.SUCCESS, icon="verified",
            dialog={"title": "Approve this version", "description": "It goes live: sends use it from now on.",
                    "form_class": CommentForm, "form_submit_text": "Approve"})
    def approve(self, request, form, object_id):
        return self._run(request, object_id, services.version_approve, "Approved and live.",
                         comment=form.cleaned_data["comment"])

    @action(description="Request changes", url_path="request-changes", permissions=["review"],
            variant=ActionVariant.WARNING, icon="undo",
            dialog={"title": "Send back to the author", "form_class": RequiredCommentForm,
                    "form_submit_text": "Request changes"})
    def request_changes(self, request, form, object_id):
        return self._run(request, object_id, services.version_request_changes, "Sent back with your comment.",
                         comment=form.cleaned_data["comment"])

    @action(description="Archive", url_path="archive", permissions=["archive"], variant=ActionVariant.DANGER,
            icon="archive", dialog={"title": "Archive this version", "form_class": CommentForm,
                                    "form_submit_text": "Archive"})
    def archive(self, request, form, object_id):
        return self._run(request, object_id, services.version_archive, "Archived.",
                         comment=form.cleaned_data["comment"])

    @action(description="Edit as a new draft", url_path="redraft", permissions=["redraft"], icon="edit_note")
    def new_draft_from_this(self, request, object_id):
        version = self._version(request, object_id)
        draft = services.version_create_draft(template=version.template, actor=request.user, based_on=version)
        messages.success(request, f"Draft v{draft.number} created from v{version.number}.")
        return self._back(draft.pk)

    @action(description="Preview", url_path="preview-link", permissions=["preview"], icon="visibility")
    def open_preview(self, request, object_id):
        return HttpResponseRedirect(reverse("admin:templates_templateversion_preview", args=[object_id]))

    # -- extra pages

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("review-queue/", wrap(self.review_queue_view), name="templates_templateversion_review_queue"),
            path("<path:object_id>/preview/", wrap(self.preview_view), name="templates_templateversion_preview"),
        ] + super().get_urls()

    def review_queue_view(self, request: HttpRequest) -> HttpResponse:
        if not permissions.can_view(request.user):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "title": "Template review queue",
                   "rows": selectors.review_queue(request.user), "opts": self.model._meta}
        return TemplateResponse(request, "message_templates/review_queue.html", context)

    def preview_view(self, request: HttpRequest, object_id) -> HttpResponse:
        if not permissions.can_view(request.user):
            raise PermissionDenied
        version = get_object_or_404(
            self.get_queryset(request).prefetch_related("variants", "variables"), pk=object_id
        )
        form = PreviewForm(request.GET or None, version=version,
                           contacts=selectors.preview_contacts_for_user(request.user),
                           sees_contacts=request.user.has_perm("consent.view_contact"))
        context = {**self.admin_site.each_context(request), "title": f"Preview {version}", "version": version,
                   "form": form, "opts": self.model._meta, "channel": version.template.channel}
        if form.is_valid():
            context.update(preview_context(version, form.cleaned_data))
        return TemplateResponse(request, "message_templates/preview.html", context)


class PreviewForm(forms.Form):
    contact = forms.CharField(label="Contact (external id)", required=False,
                              help_text="Empty: a sample contact with no attributes")
    locale = forms.CharField(required=False, help_text="Empty: the contact's locale")
    event = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, label="Event properties (JSON)")

    def __init__(self, *args, version: TemplateVersion, contacts: QuerySet[Contact], sees_contacts: bool,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.version = version
        # Only contacts this viewer may read (selectors.preview_contacts_for_user).
        self.contacts = contacts
        self.sees_contacts = sees_contacts
        locales = ", ".join(v.locale for v in version.variants.all())
        self.fields["locale"].help_text = f"Variants: {locales or 'none yet'}. Empty: the contact's locale"
        if not sees_contacts:
            self.fields["contact"].help_text = (
                "Empty: a sample contact with no attributes. Without access to contacts, only internal seed "
                "contacts (TEMPLATES_INTERNAL_SEED_ADDRESSES)"
            )

    def clean_contact(self) -> Contact:
        external_id = self.cleaned_data["contact"].strip()
        if not external_id:
            return Contact(external_id="sample", locale="", attributes={})
        contact = self.contacts.filter(external_id=external_id).first()
        if contact is None:
            # One message for unknown and not allowed: the form must not tell which contacts exist.
            scope = "" if self.sees_contacts else " (you may preview only internal seed contacts)"
            raise ValidationError(f"No contact you may preview has the external id {external_id!r}{scope}.")
        return contact

    def clean_event(self) -> dict:
        raw = self.cleaned_data["event"].strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValidationError(f"Not JSON: {error}") from None
        if not isinstance(value, dict):
            raise ValidationError("Give an object, e.g. {\"appointment_at\": \"2026-12-01T10:00:00Z\"}.")
        return value


def preview_context(version: TemplateVersion, data: dict) -> dict:
    """Render a version as the customer would see it (marked as a preview)."""
    contact: Contact = data["contact"]
    try:
        rendered = services.render_version(
            version=version, contact=contact, data=services.render_context(contact, data["event"]), preview=True,
            locale=data["locale"] or None,
        )
    except services.RenderError as error:
        return {"render_error": error}
    limit = settings.TEMPLATES_SMS_SEGMENT_WARNING
    content = rendered.content
    extra = {}
    if version.template.channel == Channel.RCS:
        extra["fallback_sms"] = sms_info(content["fallback_text"])
    if version.template.channel == Channel.WHATSAPP:
        extra["provider_refused"] = (bool(content["template_name"] or content["content_sid"])
                                     and content["provider_status"] != "approved")
    segments = content.get("segments", 0)
    return {"rendered": rendered, "content": content, "segment_warning": segments > limit, "segment_limit": limit,
            **extra}
