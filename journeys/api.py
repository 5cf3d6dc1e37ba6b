"""REST API: events in, journeys as code. Views parse, call a service, answer."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, pagination, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from config.serializers import ErrorResponseSerializer, InputSerializer
from consent.api import ContactInSerializer
from consent.models import Contact
from consent.services import IdentityConflict
from journeys import as_code, selectors, services
from journeys.events import EventIn
from journeys.models import Enrollment, EnrollmentStatus, Journey, JourneyVersion

EVENT_NAME = r"^[A-Za-z0-9_.:-]+$"
# Clock skew tolerated on occurred_at.
FUTURE_SKEW = dt.timedelta(minutes=5)


class EventContactSerializer(ContactInSerializer):
    external_id = serializers.CharField(min_length=1, max_length=128)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Devices are registered through the contacts API, not with events.
        self.fields.pop("push_devices")


class EventInSerializer(InputSerializer):
    name = serializers.RegexField(EVENT_NAME, min_length=1, max_length=100)
    contact = EventContactSerializer()
    properties = serializers.DictField(required=False, default=dict)
    occurred_at = serializers.DateTimeField(required=False, help_text="ISO-8601 with offset; default: now")
    idempotency_key = serializers.CharField(min_length=1, max_length=200)


    def validate_occurred_at(self, value):
        # Clock skew is tolerated; an event from the future would be acted on early or never.
        if value > timezone.now() + FUTURE_SKEW:
            raise serializers.ValidationError("occurred_at is in the future.")
        return value


class EventBatchSerializer(InputSerializer):
    events = serializers.ListField(child=EventInSerializer(), min_length=1,
                                   max_length=settings.JOURNEYS_EVENTS_PER_REQUEST)


class EventsAcceptedSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()


def _event_in(item: dict, now) -> EventIn:
    contact = dict(item["contact"])
    return EventIn(
        name=item["name"],
        external_id=contact.pop("external_id"),
        idempotency_key=item["idempotency_key"],
        occurred_at=item.get("occurred_at") or now,
        properties=item.get("properties") or {},
        contact_data=contact,
    )


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_CONTACT_KEYS = frozenset({"external_id", "attributes"})
_ITEM_KEYS = frozenset({"name", "contact", "properties", "occurred_at", "idempotency_key"})


def _plain_text(value: Any, max_length: int) -> bool:
    """What CharField accepts unchanged: a string, not blank, no surrounding
    whitespace (it would be trimmed), no NUL or surrogate characters."""
    return (
        type(value) is str and 0 < len(value) <= max_length and not value[0].isspace() and not value[-1].isspace()
        and "\x00" not in value and (value.isascii() or not _SURROGATE.search(value))
    )


def _plain_instant(value: Any, latest: dt.datetime) -> dt.datetime | None:
    """An ISO-8601 string with a UTC offset, not in the future: as DateTimeField reads it."""
    if type(value) is not str:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    parsed = parsed.astimezone(timezone.get_current_timezone())
    return parsed if parsed <= latest else None


def _plain_item(item: Any, latest: dt.datetime) -> dict | None:
    """The common item (a contact by external_id, maybe attributes) checked by
    hand, giving exactly what EventInSerializer would; None for anything else,
    which the serializer then validates (and words the errors of)."""
    if type(item) is not dict or not item.keys() <= _ITEM_KEYS:
        return None
    name, contact, properties = item.get("name"), item.get("contact"), item.get("properties", {})
    if not (type(name) is str and _PLAIN_NAME.fullmatch(name)
            and _plain_text(item.get("idempotency_key"), 200) and type(properties) is dict
            and type(contact) is dict and contact.keys() <= _PLAIN_CONTACT_KEYS
            and _plain_text(contact.get("external_id"), 128) and type(contact.get("attributes", {})) is dict):
        return None
    validated = {"name": name, "contact": dict(contact), "properties": properties,
                 "idempotency_key": item["idempotency_key"]}
    if "occurred_at" in item:
        validated["occurred_at"] = _plain_instant(item["occurred_at"], latest)
        if validated["occurred_at"] is None:
            return None
    return validated


def validate_events(data: Any) -> list[dict]:
    """The batch's items as EventBatchSerializer validates them, with the same
    errors (`events.<index>.<field>`), but checking the common item by hand:
    DRF's nested serializers cost ~0.4 ms per item, most of a 1,000-event
    request. Any invalid item rejects the whole batch."""
    items = data.get("events") if isinstance(data, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= settings.JOURNEYS_EVENTS_PER_REQUEST:
        serializer = EventBatchSerializer(data=data)
        serializer.is_valid(raise_exception=True)  # refuses it, in DRF's words
        return serializer.validated_data["events"]
    latest = timezone.now() + FUTURE_SKEW
    child = EventInSerializer()  # what ListSerializer runs per item
    validated, errors = [], {}
    for index, item in enumerate(items):
        plain = _plain_item(item, latest)
        if plain is None:
            try:
                plain = child.run_validation(item)
            except serializers.ValidationError as error:
                errors[index] = error.detail
                continue
        validated.append(plain)
    if errors:
        # The shape ListSerializer gives (drf-standardized-errors words both as events.<index>.<field>).
        as_dict = getattr(api_settings, "LIST_SERIALIZER_ERRORS_AS_DICT", False)
        raise serializers.ValidationError(
            {"events": errors if as_dict else [errors.get(index, {}) for index in range(len(items))]}
        )
    return validated


class EventsView(APIView):
    required_scopes = {"POST": "events:write"}

    @extend_schema(
        request=EventBatchSerializer,
        responses={202: EventsAcceptedSerializer, 409: OpenApiResponse(description="Identifier belongs to another")},
        operation_id="events_create",
        description="One event, or `{\"events\": [...]}` with up to 1,000. A batch with any invalid item is "
        "rejected whole (400, each error located as `events.<index>.<field>`); a valid one is stored atomically. "
        "A repeated `idempotency_key` counts as a duplicate and has no second effect. Processing is asynchronous.",
    )
    def post(self, request):
        data = request.data
        if isinstance(data, dict) and "events" not in data:
            data = {"events": [data]}
        elif isinstance(data, list):
            data = {"events": data}
        items = validate_events(data)
        now = timezone.now()
        events = [_event_in(item, now) for item in items]
        try:
            result = services.events_ingest(events=events, actor=request.auth, now=now)
        except IdentityConflict as error:
            return Response(
                {"type": "client_error",
                 "errors": [{"code": "identity_conflict", "detail": str(error), "attr": f"contact.{error.field}"}]},
                status=status.HTTP_409_CONFLICT,
            )
        return Response({"accepted": result.accepted, "duplicates": result.duplicates},
                        status=status.HTTP_202_ACCEPTED)


class JourneyYamlSerializer(InputSerializer):
    yaml = serializers.CharField(min_length=1)
    publish = serializers.BooleanField(default=False)


class JourneyImportedSerializer(serializers.Serializer):
    key = serializers.CharField()
    created = serializers.BooleanField()
    version = serializers.IntegerField(allow_null=True)
    version_status = serializers.CharField(allow_null=True)


# Journeys the support app owns (case escalation policies): edited through support, never by import.
PROTECTED_PREFIXES = ("support-escalation-",)


def _forbidden(detail: str) -> Response:
    return Response({"type": "client_error", "errors": [{"code": "permission_denied", "detail": detail,
                                                         "attr": None}]}, status=status.HTTP_403_FORBIDDEN)


class JourneyExportView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(responses={200: JourneyYamlSerializer, 403: OpenApiResponse(description="Key not allowed")},
                   operation_id="journeys_export")
    def get(self, request, key: str):
        journey = get_object_or_404(Journey.objects.select_related("live_version"), key=key)
        return Response({"yaml": as_code.export_yaml(journey), "publish": False})


class JourneyImportView(APIView):
    required_scopes = {"POST": "journeys:write"}

    @extend_schema(
        request=JourneyYamlSerializer,
        responses={200: JourneyImportedSerializer, 201: JourneyImportedSerializer,
                   400: ErrorResponseSerializer,
                   403: OpenApiResponse(description="Key not allowed, or a journey support owns")},
        operation_id="journeys_import",
        description="Create or update a journey's draft from YAML (journeys as code). Every problem is "
        "reported with its location (`attr`), and nothing is written unless there is none. `publish` freezes "
        "the draft as a version, which may wait for a compliance reviewer. Needs the `journeys:write` scope, "
        "and never imports `support-escalation-*` journeys (support owns them).",
    )
    def post(self, request):
        serializer = JourneyYamlSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document, _ = as_code.parse(serializer.validated_data["yaml"])
        journey_key = str(document.get("key", "")) if isinstance(document, dict) else ""
        if journey_key.startswith(PROTECTED_PREFIXES):
            return _forbidden("support escalation journeys are managed in support, not imported")
        try:
            result = as_code.import_yaml(
                text=serializer.validated_data["yaml"], actor=request.auth, publish=serializer.validated_data["publish"]
            )
        except services.JourneyError as error:
            return Response({"type": "client_error", "errors": [{"code": "conflict", "detail": str(error),
                                                                 "attr": None}]}, status=status.HTTP_409_CONFLICT)
        if result.problems:
            return Response(
                {"type": "validation_error",
                 "errors": [{"code": "invalid", "detail": p.message, "attr": p.location} for p in result.problems]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        version = result.version
        return Response(
            {"key": result.journey.key, "created": result.created, "version": version.number if version else None,
             "version_status": version.status if version else None},
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


# --- Operators and integrations: enroll contacts, pause, resume, stats ----------------------------
# Keys with journeys:write change journeys; support's escalation journeys are read here but
# changed only through support.


def _conflict(detail: str) -> Response:
    return Response({"type": "client_error", "errors": [{"code": "conflict", "detail": detail, "attr": None}]},
                    status=status.HTTP_409_CONFLICT)


def _journey_to_change(request, key: str) -> Journey | Response:
    """The journey this key may change, or the 403 to answer."""
    journey = get_object_or_404(Journey, key=key)
    if journey.key.startswith(PROTECTED_PREFIXES):
        return _forbidden("support escalation journeys are managed in support")
    return journey


class EnrollmentsInSerializer(InputSerializer):
    external_ids = serializers.ListField(
        child=serializers.CharField(min_length=1, max_length=128), min_length=1,
        max_length=settings.JOURNEYS_ENROLL_PER_REQUEST,
    )


class EnrollmentOutcomeSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    outcome = serializers.CharField(help_text="entered, unknown_contact, or the entry rule that refused it "
                                    "(reentry_rule, already_enrolled, ...)")
    detail = serializers.CharField()
    enrollment_id = serializers.IntegerField(allow_null=True)
    control = serializers.BooleanField(help_text="In the holdout: tracked to the goal, sent nothing")


class EnrollmentsOutSerializer(serializers.Serializer):
    entered = serializers.IntegerField()
    refused = serializers.IntegerField()
    unknown = serializers.IntegerField()
    results = EnrollmentOutcomeSerializer(many=True)


UNKNOWN_CONTACT = "unknown_contact"


class JourneyEnrollView(APIView):
    required_scopes = {"POST": "journeys:write"}

    @extend_schema(
        request=EnrollmentsInSerializer,
        responses={202: EnrollmentsOutSerializer, 200: EnrollmentsOutSerializer,
                   403: OpenApiResponse(description="Key not allowed, or a journey support owns"),
                   409: OpenApiResponse(description="The journey is not active")},
        operation_id="journeys_enroll",
        description="Enroll contacts (by external id) now, as an operator would: re-entry rules apply and every "
        "refusal is recorded. One outcome per contact, in the order given; unknown (or merged, erased) contacts "
        "are reported, not enrolled. 202 when any entered (the next tick runs their first step), else 200.",
    )
    def post(self, request, key: str):
        journey = _journey_to_change(request, key)
        if isinstance(journey, Response):
            return journey
        serializer = EnrollmentsInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        wanted = list(dict.fromkeys(serializer.validated_data["external_ids"]))
        found = {c.external_id: c for c in Contact.objects.filter(external_id__any=wanted, merged_into__isnull=True,
                                                                  erased_at__isnull=True)}
        try:
            report = services.enrollments_enroll_report(journey=journey, contacts=list(found.values()),
                                                        actor=request.auth)
        except services.JourneyError as error:
            return _conflict(str(error))
        results = []
        for external_id in wanted:
            if external_id not in found:
                results.append({"external_id": external_id, "outcome": UNKNOWN_CONTACT, "detail": "no active contact "
                                "has this external id", "enrollment_id": None, "control": False})
                continue
            outcome, detail, enrollment = report.outcome_of(found[external_id])
            results.append({"external_id": external_id, "outcome": outcome, "detail": detail,
                            "enrollment_id": enrollment.pk if enrollment else None,
                            "control": bool(enrollment and enrollment.is_control)})
        body = {"entered": len(report.entered), "refused": len(found) - len(report.entered),
                "unknown": len(wanted) - len(found), "results": results}
        return Response(body, status=status.HTTP_202_ACCEPTED if report.entered else status.HTTP_200_OK)


class JourneyStateSerializer(serializers.Serializer):
    key = serializers.CharField()
    status = serializers.CharField()


class _JourneyTransitionView(APIView):
    """Pause or resume (the subclass names the service)."""

    transition: Callable[..., Journey]

    def post(self, request, key: str):
        journey = _journey_to_change(request, key)
        if isinstance(journey, Response):
            return journey
        try:
            journey = self.transition(journey=journey, actor=request.auth)
        except services.JourneyError as error:
            return _conflict(str(error))
        return Response({"key": journey.key, "status": journey.status})


class JourneyPauseView(_JourneyTransitionView):
    required_scopes = {"POST": "journeys:write"}

    transition = staticmethod(services.journey_pause)

    @extend_schema(request=None, responses={200: JourneyStateSerializer, 409: OpenApiResponse(
        description="Not active")}, operation_id="journeys_pause",
        description="Pause: every enrollment keeps its place and the journey's waiting messages are held.")
    def post(self, request, key: str):
        return super().post(request, key)


class JourneyResumeView(_JourneyTransitionView):
    required_scopes = {"POST": "journeys:write"}

    transition = staticmethod(services.journey_resume)

    @extend_schema(request=None, responses={200: JourneyStateSerializer, 409: OpenApiResponse(
        description="Not paused")}, operation_id="journeys_resume",
        description="Resume: enrollments carry on by each step's rules (passed windows are skipped).")
    def post(self, request, key: str):
        return super().post(request, key)


class JourneyStatsView(APIView):
    required_scopes = {"GET": "journeys:read"}

    @extend_schema(
        responses={200: OpenApiResponse(description="totals, steps, lift (overall and by_version)"),
                   403: OpenApiResponse(description="Key not allowed")},
        operation_id="journeys_stats",
        description="Enrollment totals by status; per step: waiting now, executed, sent, converted after passing "
        "it; holdout lift (treatment against control: enrolled, converted, conversion rates, absolute and "
        "relative lift, two-sided p-value of a two-proportion z-test, 95 % intervals: Newcombe's hybrid score "
        "interval for the absolute lift, Katz's log interval for the relative), overall and per version. Rates and "
        "lifts are fractions (0.25 = 25 %); null where there is nothing to divide by.",
    )
    def get(self, request, key: str):
        journey = get_object_or_404(Journey.objects.select_related("live_version"), key=key)
        lift = selectors.holdout_lift(journey)
        steps = {step: vars(counts) for step, counts in selectors.step_counts(journey).items()}
        return Response({
            "key": journey.key, "status": journey.status,
            "live_version": journey.live_version.number if journey.live_version else None,
            "totals": selectors.journey_totals(journey), "steps": steps,
            "lift": {**lift.overall.as_dict(),
                     "by_version": {str(n): part.as_dict() for n, part in lift.by_version.items()}},
        })


# --- Reading journeys, versions and enrollments; exiting contacts ---------------------------------

class JourneySerializer(serializers.ModelSerializer):
    live_version = serializers.IntegerField(source="live_version.number", allow_null=True, default=None)

    class Meta:
        model = Journey
        fields = ["key", "name", "description", "message_class", "priority", "status", "live_version",
                  "created_at", "updated_at"]


class JourneyVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = JourneyVersion
        fields = ["number", "status", "message_class", "created_by", "created_at", "reviewed_by", "reviewed_at",
                  "review_note"]


class JourneyVersionDetailSerializer(JourneyVersionSerializer):
    class Meta(JourneyVersionSerializer.Meta):
        fields = [*JourneyVersionSerializer.Meta.fields, "definition"]


class JourneyDetailSerializer(JourneySerializer):
    versions = JourneyVersionSerializer(many=True)

    class Meta(JourneySerializer.Meta):
        fields = [*JourneySerializer.Meta.fields, "versions"]


class EnrollmentSerializer(serializers.ModelSerializer):
    journey = serializers.CharField(source="journey.key")
    version = serializers.IntegerField(source="version.number")
    contact = serializers.CharField(source="contact.external_id")

    class Meta:
        model = Enrollment
        fields = ["id", "journey", "version", "contact", "status", "is_control", "current_step", "next_run_at",
                  "entered_at", "ended_at", "end_reason"]


JOURNEY_EXAMPLE = {"key": "payment-recovery", "name": "Payment recovery", "description": "",
                   "message_class": "operational", "priority": 70, "status": "active", "live_version": 2,
                   "created_at": "2026-11-02T09:00:00Z", "updated_at": "2026-11-20T14:10:00Z"}
ENROLLMENT_EXAMPLE = {"id": 8812, "journey": "payment-recovery", "version": 2, "contact": "cus_1001",
                      "status": "active", "is_control": False, "current_step": "wait-1d",
                      "next_run_at": "2026-12-07T09:00:00Z", "entered_at": "2026-12-06T09:00:00Z",
                      "ended_at": None, "end_reason": ""}


class ByKey(pagination.CursorPagination):
    ordering = "key"


class NewestVersionFirst(pagination.CursorPagination):
    ordering = "-number"


class NewestEnrollmentFirst(pagination.CursorPagination):
    ordering = "-id"


class JourneyListView(generics.ListAPIView):
    required_scopes = {"GET": "journeys:read"}
    serializer_class = JourneySerializer
    pagination_class = ByKey
    filterset_fields = ["status", "message_class"]
    queryset = Journey.objects.select_related("live_version")

    @extend_schema(operation_id="journeys_list", description="Every journey by key; filter by `status` and "
                   "`message_class`.", examples=[OpenApiExample("One page", response_only=True, value={
                       "next": None, "previous": None, "results": [JOURNEY_EXAMPLE]})])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class JourneyDetailView(generics.RetrieveAPIView):
    required_scopes = {"GET": "journeys:read"}
    serializer_class = JourneyDetailSerializer
    lookup_field = "key"
    queryset = Journey.objects.select_related("live_version").prefetch_related("versions")

    @extend_schema(operation_id="journeys_retrieve", description="One journey with its versions, newest first.",
                   examples=[OpenApiExample("A live journey", response_only=True, value={
                       **JOURNEY_EXAMPLE, "versions": [{
                           "number": 2, "status": "approved", "message_class": "operational",
                           "created_by": "user:mia_marketer", "created_at": "2026-11-20T14:00:00Z",
                           "reviewed_by": "user:rob_reviewer", "reviewed_at": "2026-11-20T14:10:00Z",
                           "review_note": ""}]})])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class JourneyVersionListView(generics.ListAPIView):
    required_scopes = {"GET": "journeys:read"}
    serializer_class = JourneyVersionSerializer
    pagination_class = NewestVersionFirst

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return JourneyVersion.objects.none()
        return get_object_or_404(Journey, key=self.kwargs["key"]).versions.all()

    @extend_schema(operation_id="journeys_versions_list", description="A journey's published versions, newest "
                   "first, with their review status.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class JourneyVersionDetailView(generics.RetrieveAPIView):
    required_scopes = {"GET": "journeys:read"}
    serializer_class = JourneyVersionDetailSerializer

    def get_object(self):
        return get_object_or_404(JourneyVersion, journey__key=self.kwargs["key"], number=self.kwargs["number"])

    @extend_schema(operation_id="journeys_versions_retrieve", description="One version, with the definition "
                   "(trigger, exits, steps) it froze.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def enrollments_page(request, view, queryset):
    """A cursor page of enrollments, filtered by `contact` (external id) and `status`."""
    wanted_status = request.query_params.get("status")
    if wanted_status:
        if wanted_status not in EnrollmentStatus.values:
            raise serializers.ValidationError({"status": f"Use one of {', '.join(EnrollmentStatus.values)}."})
        queryset = queryset.filter(status=wanted_status)
    if request.query_params.get("contact"):
        queryset = queryset.filter(contact__external_id=request.query_params["contact"])
    paginator = NewestEnrollmentFirst()
    page = paginator.paginate_queryset(queryset.select_related("journey", "version", "contact"), request, view=view)
    return paginator.get_paginated_response(EnrollmentSerializer(page, many=True).data)


ENROLLMENT_FILTERS = [
    OpenApiParameter("contact", str, description="Contact external id"),
    OpenApiParameter("status", str, enum=EnrollmentStatus.values),
    OpenApiParameter("cursor", str, description="From the previous page's next link"),
]
PAGINATED_ENROLLMENTS = inline_serializer("PaginatedEnrollmentList", fields={
    "next": serializers.URLField(allow_null=True), "previous": serializers.URLField(allow_null=True),
    "results": EnrollmentSerializer(many=True),
})


class JourneyEnrollmentsView(JourneyEnrollView):
    """POST enrolls (JourneyEnrollView), GET lists."""

    required_scopes = {"POST": "journeys:write", "GET": "journeys:read"}

    @extend_schema(parameters=ENROLLMENT_FILTERS, responses={200: PAGINATED_ENROLLMENTS,
                                                             400: ErrorResponseSerializer},
                   operation_id="journeys_enrollments_list",
                   examples=[OpenApiExample("One page", response_only=True, value={
                       "next": None, "previous": None, "results": [ENROLLMENT_EXAMPLE]})],
                   description="A journey's enrollments, newest first; filter by `contact` and `status`.")
    def get(self, request, key: str):
        journey = get_object_or_404(Journey, key=key)
        return enrollments_page(request, self, Enrollment.objects.filter(journey=journey))


class EnrollmentDetailView(generics.RetrieveAPIView):
    required_scopes = {"GET": "journeys:read"}
    serializer_class = EnrollmentSerializer
    queryset = Enrollment.objects.select_related("journey", "version", "contact")

    @extend_schema(operation_id="enrollments_retrieve", description="One enrollment: where the contact is in "
                   "the journey, and how it ended.",
                   examples=[OpenApiExample("Waiting a day", response_only=True, value=ENROLLMENT_EXAMPLE)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ExitsInSerializer(InputSerializer):
    external_ids = serializers.ListField(
        child=serializers.CharField(min_length=1, max_length=128), min_length=1,
        max_length=settings.JOURNEYS_ENROLL_PER_REQUEST,
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200)


class ExitOutcomeSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["exited", "not_enrolled", UNKNOWN_CONTACT])


class ExitsOutSerializer(serializers.Serializer):
    exited = serializers.IntegerField()
    results = ExitOutcomeSerializer(many=True)


class JourneyExitsView(APIView):
    required_scopes = {"POST": "journeys:write"}

    @extend_schema(
        request=ExitsInSerializer, responses={200: ExitsOutSerializer,
                                              403: OpenApiResponse(description="A journey support owns")},
        operation_id="journeys_exit",
        description="End these contacts' open enrollments in the journey (as an operator would in the admin) and "
        "cancel their unsent messages. One outcome per contact, in the order given: `exited`, `not_enrolled` "
        "(nothing open here) or `unknown_contact`.",
        examples=[OpenApiExample("Exit one contact", request_only=True,
                                 value={"external_ids": ["cus_1001"], "reason": "cancelled the order"})],
    )
    def post(self, request, key: str):
        journey = _journey_to_change(request, key)
        if isinstance(journey, Response):
            return journey
        serializer = ExitsInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        wanted = list(dict.fromkeys(serializer.validated_data["external_ids"]))
        found = {c.external_id: c for c in Contact.objects.filter(external_id__any=wanted)}
        exited = services.enrollments_exit_contacts(
            journey=journey, contacts=list(found.values()), actor=request.auth,
            reason=serializer.validated_data.get("reason", ""),
        )
        results = [{"external_id": external_id,
                    "outcome": UNKNOWN_CONTACT if external_id not in found
                    else "exited" if found[external_id].pk in exited else "not_enrolled"}
                   for external_id in wanted]
        return Response({"exited": len(exited), "results": results})
