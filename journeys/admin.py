"""Admin: the journey editor (YAML with validation), its diagram, versions and
their approval, simulate, "why not", enrollments and operator actions, caps,
tasks, events. Thin: parse, check permission, call a service."""

from __future__ import annotations

import json
import re

import yaml
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.enums import ActionVariant
from unfold.forms import BaseDialogForm
from unfold.widgets import (
    UnfoldAdminFileFieldWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanSwitchWidget,
)

from config.admin_jobs import BackgroundJobAdmin, progress_bar
from consent.admin_masking import PersonalDataAdminMixin
from consent.models import Contact
from journeys import definition as definitions
from journeys import selectors, services
from journeys.as_code import DEFINITION_FIELDS
from journeys.diagram import render_svg
from journeys.models import (
    OPEN_ENROLLMENT,
    STEP_COLUMNS,
    CapRule,
    Enrollment,
    EnrollmentImport,
    EntryDecision,
    Event,
    ImportStatus,
    Journey,
    JourneyStatus,
    JourneyStep,
    JourneyVersion,
    StepExecution,
    Task,
    TaskStatus,
    VersionStatus,
    WebhookCall,
)
from journeys.simulate import SimEvent, simulate

try:
    from unfold.contrib.guardian.admin import GuardedModelAdmin
except ImportError:  # pragma: no cover - unfold without its guardian contrib
    from guardian.admin import GuardedModelAdmin


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Journey ------------------------------------------------------------------------------


class JourneyScopedMixin:
    """Rows of journeys the user may see, and no others (guardian, via the selector)."""

    def get_queryset(self, request):
        journeys = selectors.journeys_for_user(request.user)
        return super().get_queryset(request).filter(journey__in=journeys)


def settings_text(definition: dict) -> str:
    """The journey-level settings (everything but the steps) as YAML, or ""."""
    settings = {k: v for k, v in definition.items() if k != "steps"}
    return yaml.safe_dump(settings, sort_keys=False) if settings else ""


class JourneyForm(forms.ModelForm):
    """The journey's own fields and its journey-level settings. The steps are
    the rows of StepInline; the admin saves both through one service."""

    # One YAML text, not a field each: the trigger's conditions and the
    # re-entry rule are nested structures the README and journeys-as-code
    # already write in YAML, and every problem is reported with its location.
    settings_yaml = forms.CharField(
        label="Journey settings (YAML)", required=False,
        widget=forms.Textarea(attrs={"rows": 10, "style": "font-family:monospace"}),
        help_text=f"{', '.join(f for f in DEFINITION_FIELDS if f != 'steps')}. README: 'Journey definition "
        "(YAML)'. The steps are edited in the Steps table below.",
    )

    class Meta:
        model = Journey
        fields = ["key", "name", "description", "message_class", "priority", "owner", "team"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            if "key" in self.fields:  # absent when the page is read-only
                self.fields["key"].disabled = True
            self.initial["settings_yaml"] = settings_text(self.instance.definition)

    def clean_settings_yaml(self) -> dict:
        text = self.cleaned_data["settings_yaml"].strip()
        try:
            data = yaml.safe_load(text) if text else {}
        except yaml.YAMLError as error:
            raise ValidationError(f"Not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ValidationError("The settings must be a mapping.")
        if "steps" in data:
            raise ValidationError("Edit the steps in the Steps table below, not here.")
        unknown = set(data) - set(DEFINITION_FIELDS)
        if unknown:
            raise ValidationError(f"Unknown fields: {', '.join(sorted(unknown))}")
        # Journey-level problems only: the rows' own are reported on the rows.
        problems = services.validate_definition({**data, "steps": [{"key": "-", "type": "exit"}]},
                                                check_templates=False)
        if problems:
            raise ValidationError([f"{p.location}: {p.message}" for p in problems])
        return data


class StepForm(forms.ModelForm):
    type = forms.ChoiceField(choices=[("", "---------")] + [(t, t) for t in definitions.STEP_TYPES])
    options_yaml = forms.CharField(
        label="Other settings (YAML)", required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40, "style": "font-family:monospace"}),
        help_text="e.g. branches, else, conditions, timeout, on_event, title, url",
    )

    class Meta:
        model = JourneyStep
        fields = ["position", "key", "type", "next", "template", "duration"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["position"].required = False
        if self.instance.pk:
            options = self.instance.options
            self.initial["options_yaml"] = yaml.safe_dump(options, sort_keys=False).strip() if options else ""
        else:
            self.initial.pop("position", None)  # a new row goes last unless dragged
            self.fields["position"].initial = None

    def clean_options_yaml(self) -> dict:
        text = self.cleaned_data["options_yaml"].strip()
        try:
            options = yaml.safe_load(text) if text else {}
        except yaml.YAMLError as error:
            raise ValidationError(f"Not valid YAML: {error}") from None
        if not isinstance(options, dict):
            raise ValidationError("A mapping of setting: value.")
        own = sorted(set(options) & {"key", "type", *STEP_COLUMNS})
        if own:
            raise ValidationError(f"Give {', '.join(own)} in its own column.")
        return options

    def step(self) -> dict:
        data = self.cleaned_data
        row = JourneyStep(key=data["key"], type=data["type"], options=data["options_yaml"],
                          **{name: data.get(name) or "" for name in STEP_COLUMNS})
        return row.as_step()


_STEP_AT = re.compile(r"^steps\[(\d+)\]")


class StepFormSet(forms.BaseInlineFormSet):
    """Validates the rows as the journey's steps, in their order: a problem
    with one setting of a step shows on that cell, a problem with a whole
    step on its row and above the table, one about the graph above the table."""

    def clean(self) -> None:
        super().clean()
        self.steps: list[dict] = []
        if any(self.errors):
            return
        rows = [(index, form) for index, form in enumerate(self.forms)
                if form.cleaned_data and not self._should_delete_form(form)]
        rows.sort(key=lambda item: (item[1].cleaned_data.get("position") is None,
                                    item[1].cleaned_data.get("position") or 0, item[0]))
        ordered = [form for _, form in rows]
        steps = [form.step() for form in ordered]
        if not steps and self.instance.pk is None:
            return  # a new draft may start with no steps
        above: list[str] = []
        for problem in services.validate_draft({"steps": steps}):
            above += self._place(problem, ordered, steps)
        if above:
            raise ValidationError(above)
        self.steps = steps

    @staticmethod
    def _place(problem: definitions.Problem, ordered: list[StepForm], steps: list[dict]) -> list[str]:
        """Put a problem on its cell or row; returns it if it also goes above the table."""
        match = _STEP_AT.match(problem.location)
        if match is None or int(match.group(1)) >= len(ordered):
            return [f"{problem.location}: {problem.message}"]
        index = int(match.group(1))
        form, rest = ordered[index], problem.location[match.end():]
        if rest.startswith(f" ({steps[index]['key']})"):
            rest = rest[len(steps[index]["key"]) + 3:]
        rest = rest.lstrip(".")
        column = re.split(r"[.\[]", rest, maxsplit=1)[0]
        if column in ("key", "type", *STEP_COLUMNS):
            form.add_error(column, f"{rest}: {problem.message}" if rest != column else problem.message)
            return []
        if rest:
            form.add_error("options_yaml", f"{rest}: {problem.message}")
            return []
        form.add_error(None, problem.message)
        return [f"{problem.location}: {problem.message}"]


class StepInline(TabularInline):
    """The draft's steps, one row each, dragged into order. Who may change the
    journey may change its steps (no separate step permissions)."""

    model = JourneyStep
    form = StepForm
    formset = StepFormSet
    fields = ["position", "key", "type", "next", "template", "duration", "options_yaml"]
    ordering_field = "position"
    hide_ordering_field = True
    hide_title = True  # a row's caption would only repeat its key
    verbose_name = "step"
    verbose_name_plural = "Steps (the draft; the first step starts the journey)"

    def get_extra(self, request, obj=None, **kwargs) -> int:
        return 0 if obj is not None and obj.steps.exists() else 1

    def has_view_permission(self, request, obj=None) -> bool:
        if obj is None:
            return request.user.has_perm("journeys.view_journey") or self.has_change_permission(request)
        # The journey page itself is only served for journeys the user may see.
        return JourneyAdmin.journey_editable(request, obj) or request.user.has_perm("journeys.view_journey") or \
            selectors.journeys_for_user(request.user).filter(pk=obj.pk).exists()

    @display(description="Other settings")
    def options_yaml(self, step: JourneyStep) -> str:
        """The read-only view of the options (an editable row shows the form field)."""
        return format_html("<pre>{}</pre>", yaml.safe_dump(step.options, sort_keys=False)) if step.options else "-"

    def has_change_permission(self, request, obj=None) -> bool:
        return JourneyAdmin.journey_editable(request, obj)

    def has_add_permission(self, request, obj=None) -> bool:
        return JourneyAdmin.journey_editable(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return JourneyAdmin.journey_editable(request, obj)


class VersionInline(ReadOnlyMixin, TabularInline):
    model = JourneyVersion
    extra = 0
    fields = ["number", "status", "created_by", "created_at", "reviewed_by", "reviewed_at", "review_note"]
    readonly_fields = fields
    show_change_link = True


class EnrollForm(BaseDialogForm):
    external_ids = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="External ids, one a line or comma-separated (a pasted CSV column works)",
    )

    def clean_external_ids(self) -> list[Contact]:
        wanted = [v.strip().strip('"') for v in self.cleaned_data["external_ids"].replace(",", "\n").splitlines()]
        wanted = list(dict.fromkeys(v for v in wanted if v and v.lower() != "external_id"))
        contacts = list(Contact.objects.filter(external_id__in=wanted))
        missing = sorted(set(wanted) - {c.external_id for c in contacts})
        if missing:
            raise ValidationError(f"Unknown external ids: {', '.join(missing[:20])}")
        if not contacts:
            raise ValidationError("Give at least one external id.")
        return contacts


class NoteForm(BaseDialogForm):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


# Panels higher apps add to the journey page (analytics: funnel and lift from
# its rollups); journeys never imports them.
JOURNEY_PANELS: list = []


@admin.register(Journey)
class JourneyAdmin(GuardedModelAdmin, SimpleHistoryAdmin, ModelAdmin):
    form = JourneyForm
    list_display = ["key", "name", "status", "message_class", "priority", "live_version", "owner"]
    list_filter = ["status", "message_class"]
    search_fields = ["key", "name"]
    list_select_related = ["live_version", "owner"]
    readonly_fields = ["status", "live_version", "diagram", "totals", "lift", "outcomes", "created_at", "updated_at"]
    inlines = [StepInline, VersionInline]
    actions_detail = ["publish", "pause", "resume", "archive", "enroll", "open_enroll_csv", "open_simulate",
                      "open_why_not"]

    def get_fieldsets(self, request, obj=None):
        main = ["key", "name", "description", "message_class", "priority", "owner", "team"]
        if obj is None:
            return [(None, {"fields": main}), ("Draft", {"fields": ["settings_yaml"]})]
        return [
            (None, {"fields": [*main, "status", "live_version"]}),
            ("Diagram (the live version with live counts; the draft until one is live)",
             {"fields": ["diagram", "totals", "lift"]}),
            *([("Outcomes (daily rollups)", {"fields": ["outcomes"]})] if JOURNEY_PANELS else []),
            ("Draft", {"fields": ["settings_yaml"]}),
            ("Record", {"fields": ["created_at", "updated_at"]}),
        ]

    @staticmethod
    def journey_editable(request, journey: Journey | None) -> bool:
        """The role's change permission, a grant on this journey, and not
        archived. Remembered for the request: the admin asks for the page and
        for each inline several times."""
        if journey is None:
            return request.user.has_perm("journeys.change_journey")
        asked = request.__dict__.setdefault("_journeys_editable", {})
        if journey.pk not in asked:
            asked[journey.pk] = journey.status != JourneyStatus.ARCHIVED and selectors.can_change(request.user, journey)
        return asked[journey.pk]

    def get_queryset(self, request):
        return selectors.journeys_for_user(request.user).select_related("live_version", "owner")

    def has_change_permission(self, request, obj=None) -> bool:
        return self.journey_editable(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # archive instead: enrollments and messages point at it

    def has_publish_permission(self, request, object_id=None) -> bool:
        journey = Journey.objects.filter(pk=object_id).first() if object_id else None
        return journey is not None and selectors.can_publish(request.user, journey)

    def has_pause_permission(self, request, object_id=None) -> bool:
        """Pause shows on an active journey only, Resume (below) on a paused one."""
        return request.user.has_perm("journeys.pause_journey") and self._status_is(object_id, JourneyStatus.ACTIVE)

    def has_resume_permission(self, request, object_id=None) -> bool:
        return request.user.has_perm("journeys.pause_journey") and self._status_is(object_id, JourneyStatus.PAUSED)

    @staticmethod
    def _status_is(object_id, status: str) -> bool:
        return object_id is None or Journey.objects.filter(pk=object_id, status=status).exists()

    def has_simulate_permission(self, request, object_id=None) -> bool:
        return request.user.has_perm("journeys.simulate_journey")

    def has_why_not_permission(self, request, object_id=None) -> bool:
        return request.user.has_perm("journeys.view_enrollment")

    def save_model(self, request, obj, form, change):
        """Nothing yet: the journey and its steps are saved together in
        save_related, once the steps' formset is at hand."""

    def save_related(self, request, form, formsets, change):
        steps_formset = next(f for f in formsets if f.model is JourneyStep)
        # The rows are rebuilt by the service, not saved one by one: the admin log
        # says "changed", and the journey's history holds the definition before and after.
        steps_formset.new_objects, steps_formset.changed_objects, steps_formset.deleted_objects = [], [], []
        self._save_journey_and_steps(request, form, steps_formset.steps, change)
        for formset in formsets:
            if formset is not steps_formset:
                self.save_formset(request, form, formset, change)  # the read-only versions: a no-op

    def _save_journey_and_steps(self, request, form, steps: list[dict], change: bool) -> None:
        names = ("name", "description", "message_class", "priority", "owner", "team")
        fields = {f: form.cleaned_data[f] for f in names}
        settings = form.cleaned_data["settings_yaml"]
        if change:
            services.journey_steps_save(journey=form.instance, actor=request.user, settings=settings, steps=steps,
                                        **fields)
            return
        fields["owner"] = fields["owner"] or request.user
        saved = services.journey_create(key=form.cleaned_data["key"], actor=request.user,
                                        definition={**settings, "steps": steps}, **fields)
        form.instance.pk = saved.pk

    @display(description="Journey settings (YAML)")
    def settings_yaml(self, journey: Journey) -> str:
        """The settings as the read-only page shows them (the form's field
        is not a model field, so the admin would print "-")."""
        text = settings_text(journey.definition)
        return format_html("<pre>{}</pre>", text) if text else "-"

    @display(description="Diagram")
    def diagram(self, journey: Journey) -> str:
        definition = journey.live_version.definition if journey.live_version else journey.definition
        return mark_safe(render_svg(definition, selectors.step_counts(journey)))  # noqa: S308 - every label is escaped

    @display(description="Enrollments")
    def totals(self, journey: Journey) -> str:
        totals = selectors.journey_totals(journey)
        return format_html_join(" · ", "{}: {}", sorted(totals.items()))

    @display(description="Funnel and lift")
    def outcomes(self, journey: Journey) -> str:
        return mark_safe("".join(panel(journey) for panel in JOURNEY_PANELS))  # noqa: S308 - panels escape

    @display(description="Holdout lift")
    def lift(self, journey: Journey) -> str:
        lift = selectors.holdout_lift(journey)
        if not lift.overall.control_enrolled:
            return "No holdout enrollments yet (set holdout_percent in the settings to measure lift)."
        rows = [("All versions", lift.overall)] + [(f"v{n}", part) for n, part in lift.by_version.items()]
        return format_html_join("", "<div>{}: {}</div>", ((label, lift_line(part)) for label, part in rows))

    def _back(self, object_id) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:journeys_journey_change", args=[object_id]))

    @action(description="Activate (publish draft)", url_path="publish", permissions=["publish"])
    def publish(self, request: HttpRequest, object_id):
        journey = get_object_or_404(Journey, pk=object_id)
        try:
            version = services.journey_publish(journey=journey, actor=request.user)
        except definitions.DefinitionError as error:
            for problem in error.problems:
                messages.error(request, f"{problem.location}: {problem.message}")
        except services.JourneyError as error:
            messages.error(request, str(error))
        else:
            state = "is live" if version.status == VersionStatus.APPROVED else "waits for a compliance reviewer"
            messages.success(request, f"Version {version.number} {state}.")
        return self._back(object_id)

    def _transition(self, request, object_id, service, done: str):
        journey = get_object_or_404(Journey, pk=object_id)
        try:
            service(journey=journey, actor=request.user)
        except services.JourneyError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, done)
        return self._back(object_id)

    @action(description="Pause", url_path="pause", permissions=["pause"], variant=ActionVariant.WARNING)
    def pause(self, request: HttpRequest, object_id):
        return self._transition(request, object_id, services.journey_pause, "Paused: enrollments wait where they are.")

    @action(description="Resume", url_path="resume", permissions=["resume"])
    def resume(self, request: HttpRequest, object_id):
        return self._transition(request, object_id, services.journey_resume, "Resumed.")

    @action(description="Archive", url_path="archive", permissions=["publish"], variant=ActionVariant.DANGER)
    def archive(self, request: HttpRequest, object_id):
        return self._transition(request, object_id, services.journey_archive, "Archived; open enrollments exited.")

    @action(description="Enroll contacts", url_path="enroll", permissions=["publish"],
            dialog={"title": "Enroll contacts", "description": "Re-entry rules still apply; refusals are recorded.",
                    "form_class": EnrollForm, "form_submit_text": "Enroll"})
    def enroll(self, request: HttpRequest, form: EnrollForm, object_id):
        journey = get_object_or_404(Journey, pk=object_id)
        contacts = form.cleaned_data["external_ids"]
        try:
            report = services.enrollments_enroll_report(journey=journey, contacts=contacts, actor=request.user)
        except services.JourneyError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Entered: {len(report.entered)}; refused by rule: {len(report.refused)} "
                                      "(Why not? says why for each).")
        return self._back(object_id)

    @action(description="Enroll from CSV", url_path="enroll-csv-link", permissions=["publish"])
    def open_enroll_csv(self, request: HttpRequest, object_id):
        return HttpResponseRedirect(reverse("admin:journeys_journey_enroll_csv", args=[object_id]))

    @action(description="Simulate", url_path="simulate-link", permissions=["simulate"])
    def open_simulate(self, request: HttpRequest, object_id):
        return HttpResponseRedirect(reverse("admin:journeys_journey_simulate", args=[object_id]))

    @action(description="Why not?", url_path="why-not-link", permissions=["why_not"])
    def open_why_not(self, request: HttpRequest, object_id):
        return HttpResponseRedirect(reverse("admin:journeys_journey_why_not", args=[object_id]))

    def get_urls(self):
        custom = [
            path("<int:object_id>/simulate/", self.admin_site.admin_view(self.simulate_view),
                 name="journeys_journey_simulate"),
            path("<int:object_id>/why-not/", self.admin_site.admin_view(self.why_not_view),
                 name="journeys_journey_why_not"),
            path("<int:object_id>/diagram.svg", self.admin_site.admin_view(self.diagram_view),
                 name="journeys_journey_diagram"),
            path("<int:object_id>/enroll-csv/", self.admin_site.admin_view(self.enroll_csv_view),
                 name="journeys_journey_enroll_csv"),
        ]
        return custom + super().get_urls()

    def _journey_or_404(self, request, object_id) -> Journey:
        return get_object_or_404(self.get_queryset(request), pk=object_id)

    def diagram_view(self, request, object_id):
        journey = self._journey_or_404(request, object_id)
        definition = journey.live_version.definition if journey.live_version else journey.definition
        return HttpResponse(render_svg(definition, selectors.step_counts(journey)), content_type="image/svg+xml")

    def simulate_view(self, request, object_id):
        if not self.has_simulate_permission(request):
            raise PermissionDenied
        journey = self._journey_or_404(request, object_id)
        trigger = (journey.definition.get("trigger") or {}).get("event", "event.name")
        form = SimulateForm(request.POST or None,
                            initial={"events": f"{timezone.now():%Y-%m-%dT%H:%M:00Z} | {trigger} | {{}}"})
        timeline = None
        if request.method == "POST" and form.is_valid():
            entries = simulate(
                journey=journey, contact=form.cleaned_data["contact"], events=form.cleaned_data["events"],
                draft=form.cleaned_data["use_draft"],
            )
            timeline = _table(["When (UTC)", "Kind", "What", "Channel", "Outcome", "Rule / reason", "Until"], [
                (_minute(e.at), e.kind, e.what, e.channel, e.outcome, e.reason, _minute(e.until)) for e in entries])
        context = {**self.admin_site.each_context(request), "journey": journey, "form": form, "timeline": timeline,
                   "title": f"Simulate {journey.name}", "opts": self.model._meta, "original": journey}
        return TemplateResponse(request, "journeys/simulate.html", context)

    def why_not_view(self, request, object_id):
        if not self.has_why_not_permission(request):
            raise PermissionDenied
        journey = self._journey_or_404(request, object_id)
        external_id = request.GET.get("contact", "").strip()
        contact = Contact.objects.filter(external_id=external_id).first() if external_id else None
        reasons = None
        if contact:
            reasons = _table(["When (UTC)", "What", "Why"], [
                (_minute(r.at), r.what, r.why) for r in selectors.why_not(contact=contact, journey=journey)])
        context = {**self.admin_site.each_context(request), "journey": journey, "contact": contact,
                   "external_id": external_id, "reasons": reasons, "title": f"Why not: {journey.name}",
                   "opts": self.model._meta, "original": journey}
        return TemplateResponse(request, "journeys/why_not.html", context)


    def enroll_csv_view(self, request, object_id):
        """Upload, then confirm: the first POST reads the file and shows every
        problem with its line; the second enrolls the contacts it named."""
        journey = self._journey_or_404(request, object_id)
        if not self.has_publish_permission(request, object_id):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "journey": journey, "opts": self.model._meta,
                   "original": journey, "title": f"Enroll contacts from a CSV file: {journey.name}",
                   "max_rows": settings.JOURNEYS_ENROLL_CSV_MAX_ROWS}
        if request.method == "POST" and "confirm" in request.POST:
            return self._enroll_confirmed(request, journey, context)
        form = EnrollCsvForm(request.POST or None, request.FILES or None)
        context["form"] = form
        if request.method == "POST" and form.is_valid():
            read = form.cleaned_data["file"]
            problems = _table(["Line", "Problem", "Detail"], [
                (p.line, "unknown contact" if p.kind == "unknown" else "bad row", p.message) for p in read.problems])
            context.update(read=read, problems=problems, token=enroll_token(journey, read, request.FILES["file"].name))
        return TemplateResponse(request, "journeys/enroll_csv.html", context)

    def _enroll_confirmed(self, request, journey: Journey, context: dict) -> HttpResponse:
        """The second step: start the import the signed token names, or show
        an empty form again (token expired, journey no longer enrollable)."""
        try:
            planned = signing.loads(request.POST["confirm"], salt=ENROLL_SALT, max_age=ENROLL_TOKEN_MAX_AGE)
        except signing.BadSignature:
            context.update(form=EnrollCsvForm(), expired=True)
            return TemplateResponse(request, "journeys/enroll_csv.html", context)
        if planned["journey"] != journey.pk:
            raise PermissionDenied
        try:
            job = services.enrollment_import_create(
                journey=journey, contact_ids=planned["contacts"], lines=planned["lines"],
                problems=planned["problems"], file_name=planned["file_name"], actor=request.user)
        except services.JourneyError as error:
            messages.error(request, str(error))
            context.update(form=EnrollCsvForm())
            return TemplateResponse(request, "journeys/enroll_csv.html", context)
        messages.info(request, "The contacts are being enrolled in the background; this page shows how far it got. "
                      "You can leave it and come back from Enrollment imports.")
        return HttpResponseRedirect(reverse("admin:journeys_enrollmentimport_change", args=[job.pk]))


ENROLL_SALT = "journeys.enroll-csv"
ENROLL_TOKEN_MAX_AGE = 3600  # seconds between reading the file and confirming


def enroll_token(journey: Journey, read: selectors.CsvContacts, file_name: str) -> str:
    """What the confirmation enrolls, signed so the second request cannot
    name other contacts or another journey (the file is not uploaded twice)."""
    return signing.dumps({"journey": journey.pk, "contacts": [c.pk for c in read.contacts], "lines": read.lines,
                          "problems": [(p.line, p.kind, p.message) for p in read.problems],
                          "file_name": file_name}, salt=ENROLL_SALT, compress=True)


def lift_line(lift: selectors.Lift) -> str:
    """'treatment 10/40 (25.0 %) · control 2/20 (10.0 %) · lift +15.0 points (+150 %) · p = 0.17'."""
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.1f} %"

    parts = [f"treatment {lift.treatment_converted}/{lift.treatment_enrolled} converted ({rate(lift.treatment_rate)})",
             f"control {lift.control_converted}/{lift.control_enrolled} ({rate(lift.control_rate)})"]
    if lift.absolute_lift is not None:
        relative = "" if lift.relative_lift is None else f" ({lift.relative_lift * 100:+.0f} %)"
        parts.append(f"lift {lift.absolute_lift * 100:+.1f} points{relative}")
    if lift.absolute_lift_interval is not None:
        low, high = lift.absolute_lift_interval
        parts.append(f"95 % CI {low * 100:+.1f} to {high * 100:+.1f} points")
    if lift.p_value is not None:
        parts.append(f"p = {lift.p_value:.3g}")
    return " · ".join(parts)


def _table(headers: list[str], rows: list[tuple]) -> dict:
    """Rows for Unfold's table component (unfold/components/table.html)."""
    return {"headers": headers, "rows": [list(row) for row in rows]}


def _minute(at) -> str:
    return f"{at:%Y-%m-%d %H:%M}" if at else ""


class EnrollCsvForm(forms.Form):
    file = forms.FileField(help_text="A header line naming external_id, email or phone, then one contact a row",
                           widget=UnfoldAdminFileFieldWidget)

    def clean_file(self) -> selectors.CsvContacts:
        upload = self.cleaned_data["file"]
        if upload.size > settings.JOURNEYS_ENROLL_CSV_MAX_BYTES:
            raise ValidationError(f"The file is larger than {settings.JOURNEYS_ENROLL_CSV_MAX_BYTES:,} bytes.")
        try:
            return selectors.enrollment_csv_read(upload.read())
        except selectors.CsvRefused as error:
            raise ValidationError(f"Cannot read this file: {error}.") from None


class SimulateForm(forms.Form):
    contact = forms.CharField(help_text="External id of the contact", widget=UnfoldAdminTextInputWidget)
    events = forms.CharField(
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 6, "class": "font-mono"}),
        help_text='One event a line: ISO time | event name | JSON properties, e.g. '
        '2026-03-02T09:00:00Z | appointment.booked | {"appointment_at": "2026-03-10T15:00:00+00:00"}',
    )
    use_draft = forms.BooleanField(required=False, initial=True, label="Simulate the draft (else the live version)",
                                   widget=UnfoldBooleanSwitchWidget)

    def clean_contact(self) -> Contact:
        contact = Contact.objects.filter(external_id=self.cleaned_data["contact"].strip()).first()
        if contact is None:
            raise ValidationError("No contact has this external id.")
        return contact

    def clean_events(self) -> list[SimEvent]:
        events, errors = [], []
        for number, line in enumerate(self.cleaned_data["events"].splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|", 2)]
            at = parse_datetime(parts[0]) if parts else None
            if at is None or at.tzinfo is None or len(parts) < 2 or not parts[1]:
                errors.append(f"line {number}: expected 'ISO time with offset | event name | JSON'")
                continue
            try:
                properties = json.loads(parts[2]) if len(parts) > 2 and parts[2] else {}
            except json.JSONDecodeError as error:
                errors.append(f"line {number}: properties are not JSON ({error.msg})")
                continue
            if not isinstance(properties, dict):
                errors.append(f"line {number}: properties must be a JSON object")
                continue
            events.append(SimEvent(name=parts[1], at=at, properties=properties))
        if errors:
            raise ValidationError(errors)
        if not events:
            raise ValidationError("Give at least one event.")
        return events


# --- Versions ---------------------------------------------------------------------------


@admin.register(JourneyVersion)
class JourneyVersionAdmin(ReadOnlyMixin, JourneyScopedMixin, ModelAdmin):
    list_display = ["journey", "number", "status", "created_by", "created_at", "reviewed_by"]
    list_filter = ["status"]
    list_select_related = ["journey"]
    readonly_fields = ["journey", "number", "status", "message_class", "created_by", "editors", "created_at",
                       "reviewed_by", "reviewed_at", "review_note", "definition_yaml", "diagram"]
    exclude = ["definition"]
    actions_detail = ["approve", "reject"]

    def has_approve_permission(self, request, object_id=None) -> bool:
        """Approve and Reject show only on a version that waits for review."""
        return request.user.has_perm(selectors.APPROVE_PERM) and (
            object_id is None or JourneyVersion.objects.filter(pk=object_id, status=VersionStatus.IN_REVIEW).exists())

    @display(description="Definition")
    def definition_yaml(self, version: JourneyVersion) -> str:
        return format_html("<pre>{}</pre>", yaml.safe_dump(version.definition, sort_keys=False))

    @display(description="Diagram")
    def diagram(self, version: JourneyVersion) -> str:
        return mark_safe(render_svg(version.definition))  # noqa: S308 - every label is escaped

    def _review(self, request, form, object_id, approve: bool):
        version = get_object_or_404(self.get_queryset(request), pk=object_id)
        refusal = selectors.approval_refusal(request.user, version)
        if refusal:
            messages.error(request, refusal)
            return HttpResponseRedirect(reverse("admin:journeys_journeyversion_change", args=[object_id]))
        try:
            if approve:
                services.journey_version_approve(version=version, actor=request.user, note=form.cleaned_data["note"])
            else:
                services.journey_version_reject(version=version, actor=request.user, note=form.cleaned_data["note"])
        except services.JourneyError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, "Approved: this version is live." if approve else "Rejected.")
        return HttpResponseRedirect(reverse("admin:journeys_journeyversion_change", args=[object_id]))

    @action(description="Approve", url_path="approve", permissions=["approve"],
            dialog={"title": "Approve this version", "description": "It goes live for new enrollments.",
                    "form_class": NoteForm, "form_submit_text": "Approve"})
    def approve(self, request: HttpRequest, form: NoteForm, object_id):
        return self._review(request, form, object_id, approve=True)

    @action(description="Reject", url_path="reject", permissions=["approve"], variant=ActionVariant.DANGER,
            dialog={"title": "Reject this version", "description": "Say why (required).",
                    "form_class": NoteForm, "form_submit_text": "Reject"})
    def reject(self, request: HttpRequest, form: NoteForm, object_id):
        return self._review(request, form, object_id, approve=False)


# --- Enrollments ----------------------------------------------------------------------------


class ExecutionInline(ReadOnlyMixin, TabularInline):
    model = StepExecution
    extra = 0
    fields = ["executed_at", "step_key", "step_type", "visit", "outcome", "reason", "next_step", "detail"]
    readonly_fields = fields
    verbose_name_plural = "Path taken"


class ExitForm(BaseDialogForm):
    reason = forms.CharField(required=False)


IMPORT_ROWS_SHOWN = 1000


@admin.register(EnrollmentImport)
class EnrollmentImportAdmin(BackgroundJobAdmin, ReadOnlyMixin, JourneyScopedMixin, ModelAdmin):
    """CSV enrollments as background jobs: a progress bar while they run (the
    page reloads itself), then a result for every row of the file."""

    list_display = ["journey", "file_name", "status", "progress", "entered", "refused", "skipped", "requested_by",
                    "requested_at"]
    list_filter = ["status", "journey"]
    list_select_related = ["journey"]
    fields = ["journey", "file_name", "status", "progress", "entered", "control", "refused", "skipped", "error",
              "requested_by", "requested_at", "started_at", "finished_at", "results"]
    readonly_fields = fields

    running_statuses = (ImportStatus.PENDING, ImportStatus.RUNNING)

    @display(description="Progress")
    def progress(self, job: EnrollmentImport) -> str:
        if job.status == ImportStatus.PENDING and not job.processed:
            return "waiting for a worker"
        return progress_bar(job.processed, job.total, "contacts")

    @display(description="Result per row")
    def results(self, job: EnrollmentImport) -> str:
        rows = list(job.rows.select_related("contact")[:IMPORT_ROWS_SHOWN + 1])
        if not rows:
            return "Rows appear here as they are enrolled."
        more = (f"Showing the first {IMPORT_ROWS_SHOWN:,} rows." if len(rows) > IMPORT_ROWS_SHOWN else "")
        return format_html(
            '<table id="import-rows"><tr><th>Line</th><th>Contact</th><th>Outcome</th><th>Detail</th></tr>{}</table>'
            "<p>{}</p>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
                (row.line, row.contact.external_id if row.contact else "-", row.outcome, row.detail)
                for row in rows[:IMPORT_ROWS_SHOWN])), more)


@admin.register(Enrollment)
class EnrollmentAdmin(PersonalDataAdminMixin, ReadOnlyMixin, JourneyScopedMixin, ModelAdmin):
    text_fields = ("context",)  # the trigger event's properties: integrations put emails and phones there
    list_display = ["id", "journey", "contact", "status", "is_control", "current_step", "next_run_at", "failures",
                    "entered_at"]
    list_filter = ["status", "is_control", "journey"]
    search_fields = ["=contact__external_id"]
    list_select_related = ["journey", "contact"]
    show_full_result_count = False
    readonly_fields = ["journey", "version", "contact", "scope_key", "status", "is_control", "trigger_event",
                       "context", "current_step", "step_started_at", "wait_target", "visits", "next_run_at",
                       "failures", "entered_at", "ended_at", "end_reason", "messages"]
    inlines = [ExecutionInline]
    actions_detail = ["exit_enrollment"]

    def has_exit_permission(self, request, object_id=None) -> bool:
        return request.user.has_perm("journeys.exit_enrollment")

    @display(description="Messages")
    def messages(self, enrollment: Enrollment) -> str:
        from channels.models import OutboundMessage

        rows = OutboundMessage.objects.filter(origin_enrollment_id=enrollment.pk).order_by("created_at")
        return format_html_join(
            "", "<div>{} · {} · {} · {} {}</div>",
            ((m.created_at, m.origin_step_key, m.channel, m.status, m.decision_reason) for m in rows),
        ) or "-"

    @action(description="Exit enrollment", url_path="exit", permissions=["exit"], variant=ActionVariant.DANGER,
            dialog={"title": "Exit this enrollment", "description": "Stops it and cancels unsent messages.",
                    "form_class": ExitForm, "form_submit_text": "Exit"})
    def exit_enrollment(self, request: HttpRequest, form: ExitForm, object_id):
        enrollment = get_object_or_404(self.get_queryset(request), pk=object_id, status__in=OPEN_ENROLLMENT)
        try:
            services.enrollment_exit(enrollment=enrollment, actor=request.user, reason=form.cleaned_data["reason"])
        except services.JourneyError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, "Enrollment exited.")
        return HttpResponseRedirect(reverse("admin:journeys_enrollment_change", args=[object_id]))


@admin.register(Event)
class EventAdmin(PersonalDataAdminMixin, ReadOnlyMixin, ModelAdmin):
    text_fields = ("properties",)
    list_display = ["occurred_at", "name", "contact", "received_at", "processed_at", "source"]
    list_filter = ["name"]
    search_fields = ["=contact__external_id", "=idempotency_key"]
    list_select_related = ["contact"]
    show_full_result_count = False


@admin.register(EntryDecision)
class EntryDecisionAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ["decided_at", "journey", "contact", "outcome", "detail"]
    list_filter = ["outcome", "journey"]
    search_fields = ["=contact__external_id"]
    list_select_related = ["journey", "contact"]
    show_full_result_count = False


@admin.register(CapRule)
class CapRuleAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ["name", "channel", "message_class", "max_messages", "window_hours", "active"]
    list_filter = ["active", "channel", "message_class"]


@admin.register(Task)
class TaskAdmin(ModelAdmin):
    list_display = ["title", "contact", "journey", "status", "due_at", "created_at"]
    list_filter = ["status", "journey"]
    search_fields = ["=contact__external_id", "title"]
    list_select_related = ["contact", "journey"]
    readonly_fields = ["journey", "enrollment", "contact", "title", "description", "status", "due_at", "created_at",
                       "done_at"]
    actions_detail = ["complete"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_complete_permission(self, request, object_id=None) -> bool:
        return request.user.has_perm("journeys.change_task")

    @action(description="Mark done", url_path="complete", permissions=["complete"])
    def complete(self, request: HttpRequest, object_id):
        task = get_object_or_404(Task, pk=object_id, status=TaskStatus.OPEN)
        services.task_complete(task=task, actor=request.user)
        messages.success(request, "Task done.")
        return HttpResponseRedirect(reverse("admin:journeys_task_change", args=[object_id]))


@admin.register(WebhookCall)
class WebhookCallAdmin(PersonalDataAdminMixin, ReadOnlyMixin, ModelAdmin):
    text_fields = ("payload",)  # carries the enrollment's event properties
    list_display = ["created_at", "url", "status", "attempts", "next_attempt_at", "response_status", "last_error"]
    list_filter = ["status"]
