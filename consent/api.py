"""REST API for contacts and consent. Views parse, call a service, answer."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from config.serializers import InputSerializer
from consent import selectors, services
from consent.models import (
    Channel,
    ConsentSource,
    ConsentStatus,
    Contact,
    DevicePlatform,
    LifecycleStage,
    MessageClass,
    normalise_phone,
    validate_timezone,
)


class PushDeviceSerializer(InputSerializer):
    token = serializers.CharField(min_length=1, max_length=512)
    platform = serializers.ChoiceField(choices=DevicePlatform.choices)
    active = serializers.BooleanField(default=True)
    subscription = serializers.DictField(required=False, help_text="Web Push keys: p256dh, auth")


class PhoneField(serializers.CharField):
    """International format with the country code; stored as E.164."""

    def __init__(self, **kwargs):
        super().__init__(max_length=32, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            return normalise_phone(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None


class ContactInSerializer(InputSerializer):
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = PhoneField(required=False)
    whatsapp_id = PhoneField(required=False)
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    locale = serializers.RegexField(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", required=False, max_length=16)
    lifecycle_stage = serializers.ChoiceField(choices=LifecycleStage.choices, required=False)
    attributes = serializers.DictField(required=False)
    push_devices = PushDeviceSerializer(many=True, required=False)

    def validate_timezone(self, value: str) -> str:
        try:
            validate_timezone(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None
        return value


class ContactOutSerializer(serializers.ModelSerializer):
    push_devices = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = [
            "id", "external_id", "email", "phone", "whatsapp_id", "timezone", "locale", "lifecycle_stage",
            "attributes", "push_devices", "erased_at", "created_at", "updated_at",
        ]

    def get_push_devices(self, contact: Contact) -> list[dict]:
        return [{"platform": d.platform, "token": d.token, "active": d.active} for d in contact.push_devices.all()]


class ConflictSerializer(serializers.Serializer):
    type = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField())
    conflicting_contact = serializers.DictField()


def conflict_response(error: services.IdentityConflict) -> Response:
    return Response(
        {
            "type": "client_error",
            "errors": [{"code": "identity_conflict", "detail": str(error), "attr": error.field}],
            "conflicting_contact": {"id": error.other.pk, "external_id": error.other.external_id},
        },
        status=status.HTTP_409_CONFLICT,
    )


class ContactView(APIView):
    required_scopes = {"GET": "contacts:read", "PUT": "contacts:write", "DELETE": "contacts:write"}

    @extend_schema(responses={200: ContactOutSerializer}, operation_id="contacts_retrieve")
    def get(self, request, external_id: str):
        contact = get_object_or_404(Contact.objects.prefetch_related("push_devices"), external_id=external_id)
        return Response(ContactOutSerializer(contact).data)

    @extend_schema(
        request=ContactInSerializer,
        responses={200: ContactOutSerializer, 201: ContactOutSerializer, 409: ConflictSerializer},
        operation_id="contacts_upsert",
        description="Create or update by external id. Fields left out keep their value. An email or phone "
        "that belongs to another contact answers 409 with that contact's id.",
    )
    def put(self, request, external_id: str):
        serializer = ContactInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        devices = data.pop("push_devices", None)
        try:
            contact, created = services.contact_upsert(
                external_id=external_id, data=data, push_devices=devices, actor=request.auth
            )
        except services.IdentityConflict as error:
            return conflict_response(error)
        status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(ContactOutSerializer(contact).data, status=status_code)

    @extend_schema(
        request=None, responses={200: ContactOutSerializer}, operation_id="contacts_erase",
        description="Erase the contact's personal data (right to erasure): addresses, attributes, devices and "
        "consent evidence are removed everywhere, history included; ids, consent decisions and message "
        "statuses stay so counts still add up. Answers the erased contact (`erased_at` set); the external id "
        "goes too, so a repeat answers 404.",
    )
    def delete(self, request, external_id: str):
        return erase(request, external_id)


class ConsentInSerializer(InputSerializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    purpose = serializers.ChoiceField(choices=MessageClass.choices)
    status = serializers.ChoiceField(choices=[ConsentStatus.GRANTED, ConsentStatus.REVOKED])
    source = serializers.ChoiceField(
        choices=[ConsentSource.API, ConsentSource.FORM, ConsentSource.IMPORT, ConsentSource.UNSUBSCRIBE],
        default=ConsentSource.API,
    )
    evidence = serializers.DictField(required=False, help_text="Form URL, IP, keyword, agent…")
    wording_version = serializers.CharField(required=False, allow_blank=True, max_length=32)


class ConsentRecordSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField()
    purpose = serializers.CharField()
    status = serializers.CharField()
    source = serializers.CharField()
    evidence = serializers.DictField()
    wording_version = serializers.CharField()
    recorded_at = serializers.DateTimeField()
    recorded_by = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)


class ConsentCellSerializer(serializers.Serializer):
    channel = serializers.CharField()
    purpose = serializers.CharField()
    state = serializers.CharField()
    since = serializers.DateTimeField(allow_null=True)
    record_id = serializers.IntegerField(allow_null=True)


class ConsentOutSerializer(serializers.Serializer):
    state = ConsentCellSerializer(many=True)
    ledger = ConsentRecordSerializer(many=True)


class ConsentRecordedSerializer(ConsentRecordSerializer):
    confirmation_url = serializers.CharField(required=False)


class ContactConsentView(APIView):
    required_scopes = {"GET": "contacts:read", "POST": "consent:write"}

    @extend_schema(responses={200: ConsentOutSerializer}, operation_id="contacts_consent_list")
    def get(self, request, external_id: str):
        contact = get_object_or_404(Contact, external_id=external_id)
        return Response(
            {
                "state": ConsentCellSerializer(selectors.consent_state(contact), many=True).data,
                "ledger": ConsentRecordSerializer(contact.consent_records.all(), many=True).data,
            }
        )

    @extend_schema(
        request=ConsentInSerializer,
        responses={201: ConsentRecordedSerializer},
        operation_id="contacts_consent_create",
        description="Append one record to the ledger. A grant on a double opt-in channel and purpose is "
        "stored as `pending` and returns the confirmation link to send the person.",
    )
    def post(self, request, external_id: str):
        contact = get_object_or_404(Contact, external_id=external_id)
        serializer = ConsentInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            record = services.consent_record(contact=contact, actor=request.auth, **serializer.validated_data)
        data = ConsentRecordSerializer(record).data
        if record.status == ConsentStatus.PENDING:
            data["confirmation_url"] = services.consent_confirmation_url(record)
        return Response(data, status=status.HTTP_201_CREATED)


def erase(request, external_id: str) -> Response:
    contact = get_object_or_404(Contact, external_id=external_id)
    contact = services.contact_erase(contact=contact, actor=request.auth)
    return Response(ContactOutSerializer(contact).data)


class ContactEraseView(APIView):
    required_scopes = {"POST": "contacts:write"}

    @extend_schema(request=None, responses={200: ContactOutSerializer}, deprecated=True,
                   description="Deprecated: use `DELETE /api/v1/contacts/{external_id}/`.")
    def post(self, request, external_id: str):
        return erase(request, external_id)
