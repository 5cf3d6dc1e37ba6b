"""REST API: events in, journeys as code. Views parse, call a service, answer."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from consent.api import ContactInSerializer
from consent.services import IdentityConflict
from journeys import as_code, services
from journeys.events import EventIn
from journeys.models import Journey

EVENT_NAME = r"^[A-Za-z0-9_.:-]+$"
# Clock skew tolerated on occurred_at.
FUTURE_SKEW = dt.timedelta(minutes=5)


class EventContactSerializer(ContactInSerializer):
    external_id = serializers.CharField(min_length=1, max_length=128)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Devices are registered through the contacts API, not with events.
        self.fields.pop("push_devices")


class EventInSerializer(serializers.Serializer):
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


class EventBatchSerializer(serializers.Serializer):
    events = EventInSerializer(many=True, min_length=1, max_length=settings.JOURNEYS_EVENTS_PER_REQUEST)


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
    if type(item) is not dict:
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


class JourneyYamlSerializer(serializers.Serializer):
    yaml = serializers.CharField(min_length=1)
    publish = serializers.BooleanField(default=False)


class JourneyImportedSerializer(serializers.Serializer):
    key = serializers.CharField()
    created = serializers.BooleanField()
    version = serializers.IntegerField(allow_null=True)
    version_status = serializers.CharField(allow_null=True)


# Journeys the support app owns (case escalation policies): edited through support, never by import.
PROTECTED_PREFIXES = ("support-escalation-",)


def key_may_manage_journeys(api_key) -> bool:
    """Only API keys named in JOURNEYS_API_IMPORT_KEYS (exact name, or a
    prefix ending in "*") may export or import journeys; by default none."""
    name = getattr(api_key, "name", "") or ""
    for allowed in settings.JOURNEYS_API_IMPORT_KEYS:
        if allowed.endswith("*") and allowed[:-1] and name.startswith(allowed[:-1]):
            return True
        if name and name == allowed:
            return True
    return False


def _forbidden(detail: str) -> Response:
    return Response({"type": "client_error", "errors": [{"code": "permission_denied", "detail": detail,
                                                         "attr": None}]}, status=status.HTTP_403_FORBIDDEN)


_NOT_ALLOWED = "this API key may not export or import journeys (JOURNEYS_API_IMPORT_KEYS)"


class JourneyExportView(APIView):
    @extend_schema(responses={200: JourneyYamlSerializer, 403: OpenApiResponse(description="Key not allowed")},
                   operation_id="journeys_export")
    def get(self, request, key: str):
        if not key_may_manage_journeys(request.auth):
            return _forbidden(_NOT_ALLOWED)
        journey = get_object_or_404(Journey.objects.select_related("live_version"), key=key)
        return Response({"yaml": as_code.export_yaml(journey), "publish": False})


class JourneyImportView(APIView):
    @extend_schema(
        request=JourneyYamlSerializer,
        responses={200: JourneyImportedSerializer, 201: JourneyImportedSerializer,
                   403: OpenApiResponse(description="Key not allowed, or a journey support owns")},
        operation_id="journeys_import",
        description="Create or update a journey's draft from YAML (journeys as code). Every problem is "
        "reported with its location (`attr`), and nothing is written unless there is none. `publish` freezes "
        "the draft as a version, which may wait for a compliance reviewer. Only keys listed in "
        "JOURNEYS_API_IMPORT_KEYS may call it, and never for `support-escalation-*` journeys.",
    )
    def post(self, request):
        if not key_may_manage_journeys(request.auth):
            return _forbidden(_NOT_ALLOWED)
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
# The same keys as journeys as code (JOURNEYS_API_IMPORT_KEYS) may call these; support's
# escalation journeys are read here but changed only through support. (Imports are local so
# this section stays apart from the events views above.)

from collections.abc import Callable  # noqa: E402

_NOT_MANAGER = "this API key may not manage journeys (JOURNEYS_API_IMPORT_KEYS)"


def _conflict(detail: str) -> Response:
    return Response({"type": "client_error", "errors": [{"code": "conflict", "detail": detail, "attr": None}]},
                    status=status.HTTP_409_CONFLICT)


def _journey_to_change(request, key: str) -> Journey | Response:
    """The journey this key may change, or the 403 to answer."""
    if not key_may_manage_journeys(request.auth):
        return _forbidden(_NOT_MANAGER)
    journey = get_object_or_404(Journey, key=key)
    if journey.key.startswith(PROTECTED_PREFIXES):
        return _forbidden("support escalation journeys are managed in support")
    return journey


class EnrollmentsInSerializer(serializers.Serializer):
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


class JourneyEnrollmentsView(APIView):
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
        from consent.models import Contact

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
    transition = staticmethod(services.journey_pause)

    @extend_schema(request=None, responses={200: JourneyStateSerializer, 409: OpenApiResponse(
        description="Not active")}, operation_id="journeys_pause",
        description="Pause: every enrollment keeps its place and the journey's waiting messages are held.")
    def post(self, request, key: str):
        return super().post(request, key)


class JourneyResumeView(_JourneyTransitionView):
    transition = staticmethod(services.journey_resume)

    @extend_schema(request=None, responses={200: JourneyStateSerializer, 409: OpenApiResponse(
        description="Not paused")}, operation_id="journeys_resume",
        description="Resume: enrollments carry on by each step's rules (passed windows are skipped).")
    def post(self, request, key: str):
        return super().post(request, key)


class JourneyStatsView(APIView):
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
        from journeys import selectors

        if not key_may_manage_journeys(request.auth):
            return _forbidden(_NOT_MANAGER)
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
