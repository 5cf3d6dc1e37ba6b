"""REST API for messages: transactional/operational sends, a message with
its timeline, a contact's history. Views parse, call a service, answer."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, pagination, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from channels import selectors, services
from channels.models import DeliveryEvent, OutboundMessage
from config.serializers import InputSerializer
from consent.models import Channel, Contact, MessageClass
from templates.services import render_context

API_CLASSES = (MessageClass.TRANSACTIONAL, MessageClass.OPERATIONAL)
MAX_RUNGS = 6


class RungSerializer(InputSerializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    template_key = serializers.CharField(min_length=1, max_length=100)
    timeout_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=60, max_value=7 * 86400,
        help_text="Try the next rung if not delivered within this time; omit to wait for a failure only",
    )


def _check_template(key: str, channel: str | None = None) -> None:
    profile = services.template_profile(key)
    if profile is None:
        raise serializers.ValidationError(f"No template with key {key!r}.")
    if profile.message_class not in API_CLASSES:
        raise serializers.ValidationError(
            f"{key!r} is a {profile.message_class} template; the API sends transactional or operational only."
        )
    if channel and profile.channel != channel:
        raise serializers.ValidationError(f"{key!r} is a {profile.channel} template, not {channel}.")


class SendInSerializer(InputSerializer):
    contact = serializers.CharField(min_length=1, max_length=128, help_text="The contact's external id")
    template_key = serializers.CharField(min_length=1, max_length=100, required=False)
    ladder = serializers.ListField(child=RungSerializer(), required=False, min_length=1, max_length=MAX_RUNGS)
    data = serializers.DictField(required=False, default=dict, help_text="Event properties (`event.*` in templates)")
    idempotency_key = serializers.CharField(min_length=1, max_length=150, required=False)

    def validate_template_key(self, value: str) -> str:
        _check_template(value)
        return value

    def validate_ladder(self, value: list[dict]) -> list[dict]:
        errors = []
        for rung in value:
            try:
                _check_template(rung["template_key"], rung["channel"])
                errors.append({})
            except serializers.ValidationError as error:
                errors.append({"template_key": error.detail})
        if any(errors):
            raise serializers.ValidationError(errors)
        return value

    def validate(self, attrs: dict) -> dict:
        if ("template_key" in attrs) == ("ladder" in attrs):
            raise serializers.ValidationError("Give exactly one of template_key or ladder.")
        return attrs


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryEvent
        fields = ["kind", "status", "old_status", "detail", "provider", "occurred_at", "received_at"]


class MessageSerializer(serializers.ModelSerializer):
    contact = serializers.CharField(source="contact.external_id")

    class Meta:
        model = OutboundMessage
        fields = [
            "id", "contact", "channel", "template_key", "template_version", "locale", "message_class", "status",
            "decision_reason", "decision_detail", "deliver_after", "origin_kind", "origin_label", "intent", "rung",
            "is_test", "attempts", "error", "created_at", "sent_at", "delivered_at", "failed_at",
            "first_opened_at", "first_clicked_at", "replied_at",
        ]


class MessageDetailSerializer(MessageSerializer):
    timeline = EventSerializer(source="events", many=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "timeline"]


class DecisionSerializer(serializers.Serializer):
    outcome = serializers.CharField()
    reason = serializers.CharField()
    until = serializers.DateTimeField(allow_null=True)


class SendOutSerializer(serializers.Serializer):
    status = serializers.CharField()
    messages = MessageSerializer(many=True)
    decision = DecisionSerializer(required=False, help_text="Present when the gate or a guard refused or deferred")


def _decision(result: services.SendResult) -> dict | None:
    outcome = {services.SendStatus.SUPPRESSED: "suppress", services.SendStatus.DEFERRED: "defer",
               services.SendStatus.FAILED: "failed"}.get(result.status)
    if outcome is None:
        return None
    until = result.until.isoformat() if isinstance(result.until, dt.datetime) else None
    return {"outcome": outcome, "reason": result.reason, "until": until}


class MessageSendView(APIView):
    required_scopes = {"POST": "messages:send"}

    @extend_schema(
        request=SendInSerializer,
        responses={202: SendOutSerializer, 404: OpenApiResponse(description="Unknown contact")},
        operation_id="messages_send",
        description="Send an approved transactional or operational template, or a fallback ladder of them, to a "
        "contact. Answers 202 with the message(s) written; when the consent gate or a guard refuses or defers, "
        "`decision` says why. A repeated `idempotency_key` returns the first call's messages with status "
        "`duplicate`.",
    )
    def post(self, request):
        serializer = SendInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        contact = get_object_or_404(Contact, external_id=data["contact"])
        key = data.get("idempotency_key") or uuid.uuid4().hex
        ladder = [
            services.Rung(r["channel"], r["template_key"], _seconds(r.get("timeout_seconds")))
            for r in data.get("ladder", [])
        ] or None
        with transaction.atomic():
            result = services.send(
                contact=contact, data=_render_data(contact, data["data"]),
                origin=services.Origin(kind=services.OriginKind.API, label=f"api key {request.auth.name}"[:200]),
                idempotency_key=f"api:{request.auth.prefix}:{key}", template_key=data.get("template_key"),
                ladder=ladder,
            )
        body = {"status": result.status, "messages": MessageSerializer(result.messages, many=True).data}
        decision = _decision(result)
        if decision:
            body["decision"] = decision
        return Response(body, status=status.HTTP_202_ACCEPTED)


def _seconds(value: int | None) -> dt.timedelta | None:
    return dt.timedelta(seconds=value) if value else None


def _render_data(contact: Contact, event_properties: dict) -> dict:
    return render_context(contact, event_properties=event_properties)


class MessageDetailView(generics.RetrieveAPIView):
    required_scopes = {"GET": "messages:read"}
    serializer_class = MessageDetailSerializer
    queryset = selectors.message_with_timeline()

    @extend_schema(operation_id="messages_retrieve", description="One message with its status timeline.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class NewestFirst(pagination.CursorPagination):
    ordering = "-id"


class ContactMessagesView(generics.ListAPIView):
    required_scopes = {"GET": "messages:read"}
    serializer_class = MessageSerializer
    pagination_class = NewestFirst
    filterset_fields = ["channel", "status", "message_class"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no URL kwargs
            return OutboundMessage.objects.none()
        contact = get_object_or_404(Contact, external_id=self.kwargs["external_id"])
        return selectors.messages_for_contact(contact)

    @extend_schema(operation_id="contacts_messages_list", description="A contact's messages, newest first.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
