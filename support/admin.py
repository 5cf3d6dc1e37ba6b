"""The support admin: the case page (message history across channels,
consent, enrollments, notes, timeline, reply), and the configuration an
operator edits (teams and calendars, SLA, keyword, escalation and
suppression rules). Every case queryset is scoped by guardian grants."""

from __future__ import annotations

from functools import partial

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.urls import reverse
from guardian.admin import ReinforcedGuardedModelAdminMixin
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.enums import ActionVariant
from unfold.forms import BaseDialogForm

from consent.masking import mask_address, mask_text, sees_personal_data
from consent.selectors import consent_state
from journeys.definition import DefinitionError
from journeys.services import JourneyError
from support import escalation, selectors, services
from support.models import (
    CASE_TRANSITIONS,
    CaseEvent,
    CaseNote,
    CaseSource,
    CaseStatus,
    EscalationPolicy,
    EscalationStep,
    KeywordRule,
    Notification,
    Priority,
    SlaPolicy,
    SupportCase,
    SuppressionRule,
    Team,
    TeamHoliday,
    WorkingHours,
)

STATUS_COLOURS = {
    CaseStatus.OPEN: "info", CaseStatus.PENDING_CUSTOMER: "warning", CaseStatus.ESCALATED: "danger",
    CaseStatus.RESOLVED: "success", CaseStatus.CLOSED: "default",
}


def _case_for(request: HttpRequest, object_id) -> SupportCase:
    """The case by id, only if this user may see it (404 otherwise, as for a missing one)."""
    case = selectors.cases_visible_to(request.user).filter(pk=object_id).first()
    if case is None:
        raise Http404("No such case.")
    return case


# --- Dialog forms -------------------------------------------------------------------


class StatusForm(BaseDialogForm):
    status = forms.ChoiceField(choices=CaseStatus.choices)
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        case = SupportCase.objects.filter(pk=self.object_id).first() if self.object_id else None
        if case is not None:
            allowed = CASE_TRANSITIONS[case.status]
            self.fields["status"].choices = [c for c in CaseStatus.choices if c[0] in allowed]


class PriorityForm(BaseDialogForm):
    priority = forms.ChoiceField(choices=Priority.choices)
    reason = forms.CharField(required=False)


class AssignForm(BaseDialogForm):
    team = forms.ModelChoiceField(queryset=Team.objects.all(), required=False, help_text="Empty: no team")
    agent = forms.ModelChoiceField(
        queryset=User.objects.filter(is_staff=True, is_active=True).order_by("username"), required=False,
        help_text="Empty: the team's queue",
    )

    def clean(self):
        data = super().clean()
        team, agent = data.get("team"), data.get("agent")
        if agent is not None and team is not None and not agent.groups.filter(pk=team.group_id).exists():
            raise ValidationError(f"{agent.get_username()} is not a member of team {team.name}.")
        return data


class ReplyForm(BaseDialogForm):
    channel = forms.ChoiceField(choices=())
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), help_text="Sent through the consent gate")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = [(c, c) for c in selectors.reply_channels()]


class NoteForm(BaseDialogForm):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Internal note")


class CaseAddForm(forms.ModelForm):
    class Meta:
        model = SupportCase
        fields = ["contact", "subject", "category", "priority", "team", "assigned_agent"]


# --- The case -----------------------------------------------------------------------


@admin.register(SupportCase)
class SupportCaseAdmin(ReinforcedGuardedModelAdminMixin, SimpleHistoryAdmin, ModelAdmin):
    list_display = ["number", "subject", "contact", "priority_badge", "status_badge", "team", "assigned_agent",
                    "first_response_due_at", "opened_at"]
    list_filter = ["status", "priority", "category", "team", "source"]
    search_fields = ["=number", "=contact__external_id", "subject"]
    list_select_related = ["contact", "team", "assigned_agent"]
    show_full_result_count = False
    autocomplete_fields = ["contact"]
    readonly_fields = [
        "number", "contact", "status", "priority", "team", "assigned_agent", "source", "opened_at",
        "first_response_due_at", "first_response_at", "first_response_breached_at", "resolution_due_at",
        "last_customer_reply_at", "resolved_at", "closed_at",
    ]
    fieldsets = [
        (None, {"fields": ["number", "contact", "subject", "category", "status", "priority", "source"]}),
        ("Assignment", {"fields": ["team", "assigned_agent"]}),
        ("SLA", {"fields": ["opened_at", "first_response_due_at", "first_response_at", "first_response_breached_at",
                            "resolution_due_at", "last_customer_reply_at", "resolved_at", "closed_at"]}),
    ]
    change_form_outer_after_template = "support/case_page.html"
    change_list_template = "support/case_queue.html"
    actions_detail = ["reply", "add_note", "change_status", "change_priority", "assign"]

    # Scope: the list, the change page, history and every action go through here.
    def get_queryset(self, request):
        return selectors.cases_visible_to(request.user, super().get_queryset(request))

    def changelist_view(self, request, extra_context=None):
        # What an empty queue says: whose cases it would hold. Callables, so only an empty page queries them.
        queue = {"sees_all": partial(selectors.sees_all_cases, request.user),
                 "teams": partial(selectors.teams_of, request.user)}
        return super().changelist_view(request, {**(extra_context or {}), "queue": queue})

    def has_view_permission(self, request, obj=None) -> bool:
        if obj is not None:
            return selectors.can_view_case(request.user, obj)
        return super().has_view_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None:
            return selectors.can_change_case(request.user, obj)
        return super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # cases are closed, never deleted

    def _may_change(self, request: HttpRequest, object_id) -> bool:
        case = selectors.cases_visible_to(request.user).filter(pk=object_id).first()
        return case is not None and selectors.can_change_case(request.user, case)

    def has_reply_permission(self, request, object_id=None) -> bool:
        return request.user.has_perm("support.reply_supportcase") and self._may_change(request, object_id)

    def has_note_permission(self, request, object_id=None) -> bool:
        return request.user.has_perm("support.add_casenote") and self._may_change(request, object_id)

    def has_work_permission(self, request, object_id=None) -> bool:
        return self._may_change(request, object_id)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = CaseAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": CaseAddForm.Meta.fields})]
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else super().get_readonly_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        case = services.case_open(
            contact=data["contact"], subject=data["subject"], category=data["category"], priority=data["priority"],
            source=CaseSource.ADMIN, actor=request.user, team=data.get("team"), agent=data.get("assigned_agent"),
        )
        obj.pk = case.pk

    @display(description="Priority", label={p.value: "danger" if p in ("urgent", "high") else "info" for p in Priority})
    def priority_badge(self, case: SupportCase) -> str:
        return case.priority

    @display(description="Status", label={k.value: v for k, v in STATUS_COLOURS.items()})
    def status_badge(self, case: SupportCase) -> str:
        return case.status

    def change_view(self, request, object_id, form_url="", extra_context=None):
        case = self.get_queryset(request).select_related("contact").filter(pk=object_id).first()
        if case is not None and self.has_view_permission(request, case):
            extra_context = {**(extra_context or {}), **self._page_context(request, case)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _page_context(self, request: HttpRequest, case: SupportCase) -> dict:
        page = selectors.contact_history(
            case.contact, cursor=request.GET.get("before", ""), limit=settings_page_size()
        )
        notes = list(CaseNote.objects.filter(case=case).select_related("author")[:50])
        timeline = list(CaseEvent.objects.filter(case=case).order_by("-at", "-id")[:100])
        if not sees_personal_data(request.user):
            page = _masked_history(page)
            # In memory only: what the page shows, not what is stored.
            for note in notes:
                note.body = mask_text(note.body)
            for event in timeline:
                event.detail = mask_text(event.detail)
        return {
            "case": case,
            "history": page,
            "consent_cells": [c for c in consent_state(case.contact) if c.state != "none"],
            "enrollments": selectors.open_enrollments(case.contact, case=case),
            "notes": notes,
            "timeline": timeline,
        }

    def _back(self, object_id) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:support_supportcase_change", args=[object_id]))

    @action(description="Reply", url_path="reply", permissions=["reply"], icon="reply",
            dialog={"title": "Reply to the customer", "description": "An operational message, logged on the case.",
                    "form_class": ReplyForm, "form_submit_text": "Send"})
    def reply(self, request: HttpRequest, form: ReplyForm, object_id):
        case = _case_for(request, object_id)
        try:
            result = services.case_reply(case=case, channel=form.cleaned_data["channel"],
                                         text=form.cleaned_data["text"], actor=request.user)
        except services.SupportError as error:
            messages.error(request, str(error))
        else:
            level = messages.success if result.status in ("queued", "deferred") else messages.warning
            level(request, f"Reply {result.status}" + (f": {result.reason}" if result.reason else "."))
        return self._back(object_id)

    @action(description="Add note", url_path="note", permissions=["note"], icon="sticky_note_2",
            dialog={"title": "Internal note", "description": "Never shown to the customer.",
                    "form_class": NoteForm, "form_submit_text": "Add"})
    def add_note(self, request: HttpRequest, form: NoteForm, object_id):
        case = _case_for(request, object_id)
        services.case_note_add(case=case, author=request.user, body=form.cleaned_data["body"])
        messages.success(request, "Note added.")
        return self._back(object_id)

    @action(description="Change status", url_path="status", permissions=["work"], icon="swap_horiz",
            dialog={"title": "Change status", "form_class": StatusForm, "form_submit_text": "Change"})
    def change_status(self, request: HttpRequest, form: StatusForm, object_id):
        case = _case_for(request, object_id)
        try:
            services.case_set_status(case=case, status=form.cleaned_data["status"], actor=request.user,
                                     reason=form.cleaned_data["reason"])
        except services.SupportError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"{case.number} is now {case.get_status_display().lower()}.")
        return self._back(object_id)

    @action(description="Set priority", url_path="priority", permissions=["work"], icon="priority_high",
            dialog={"title": "Set priority", "description": "The SLA clocks are recomputed.",
                    "form_class": PriorityForm, "form_submit_text": "Set"})
    def change_priority(self, request: HttpRequest, form: PriorityForm, object_id):
        case = _case_for(request, object_id)
        services.case_set_priority(case=case, priority=form.cleaned_data["priority"], actor=request.user,
                                   reason=form.cleaned_data["reason"])
        messages.success(request, f"Priority set to {case.priority}.")
        return self._back(object_id)

    @action(description="Assign", url_path="assign", permissions=["work"], icon="person_add",
            variant=ActionVariant.PRIMARY,
            dialog={"title": "Assign", "form_class": AssignForm, "form_submit_text": "Assign"})
    def assign(self, request: HttpRequest, form: AssignForm, object_id):
        case = _case_for(request, object_id)
        try:
            services.case_assign(case=case, team=form.cleaned_data["team"], agent=form.cleaned_data["agent"],
                                 actor=request.user)
        except services.SupportError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, "Assignment saved.")
        return self._back(object_id)


def _masked_history(page: selectors.HistoryPage) -> selectors.HistoryPage:
    """The case page's message history for staff without the personal data permission."""
    for item in page.items:
        item.address = mask_address(item.address)
        item.text = mask_text(item.text)  # a reply may quote an address ("write to me at ...")
        item.timeline = [{**step, "detail": mask_text(step["detail"])} for step in item.timeline]
    return page


def settings_page_size() -> int:
    from django.conf import settings

    return settings.SUPPORT_HISTORY_PAGE_SIZE


# --- Notifications ---------------------------------------------------------------------


@admin.register(Notification)
class NotificationAdmin(ModelAdmin):
    list_display = ["created_at", "text", "case", "recipient", "read_at"]
    list_filter = ["read_at"]
    list_select_related = ["case", "recipient"]
    actions = ["mark_read"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(recipient=request.user)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Mark as read")
    def mark_read(self, request, queryset):
        count = sum(services.notification_mark_read(notification=n) for n in queryset.filter(read_at__isnull=True))
        messages.success(request, f"{count} marked as read.")


# --- Configuration ----------------------------------------------------------------------


class WorkingHoursInline(TabularInline):
    model = WorkingHours
    extra = 0


class TeamHolidayInline(TabularInline):
    model = TeamHoliday
    extra = 0


@admin.register(Team)
class TeamAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ["name", "group", "supervisor", "timezone"]
    list_select_related = ["group", "supervisor"]
    inlines = [WorkingHoursInline, TeamHolidayInline]


@admin.register(SlaPolicy)
class SlaPolicyAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ["priority", "first_response_minutes", "resolution_minutes"]


@admin.register(KeywordRule)
class KeywordRuleAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ["phrase", "priority", "category", "active"]
    list_filter = ["active", "priority"]


@admin.register(SuppressionRule)
class SuppressionRuleAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ["name", "on", "category", "journey_key_prefix", "active"]
    list_filter = ["on", "active"]


class EscalationStepInline(TabularInline):
    model = EscalationStep
    extra = 0
    fields = ["phase", "delay_minutes", "action", "channel", "template_key", "unless_customer_replied"]


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ["name", "priority", "category", "active"]
    list_filter = ["active", "priority", "category"]
    inlines = [EscalationStepInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        try:
            versions = escalation.escalation_policy_publish(policy=form.instance, actor=request.user)
        except (DefinitionError, JourneyError) as error:  # journeys refuses it: say why, keep the edit
            messages.error(request, f"The policy was saved but its journey could not be published: {error}")
            return
        for version in versions:
            if version.status == "approved":
                messages.success(request, f"{version} is live: new cases follow it.")
            else:
                messages.warning(request, f"{version} waits for a reviewer in Journeys before new cases follow it.")
