"""REST API for message templates: what integrations may send, i.e. the
approved (live) templates. Drafts and reviews stay in the admin."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, pagination, serializers

from templates.models import Template, TemplateVariant


class TemplateSerializer(serializers.ModelSerializer):
    approved_version = serializers.IntegerField(source="live_version.number")
    approved_at = serializers.DateTimeField(source="live_version.approved_at", allow_null=True)
    locales = serializers.SerializerMethodField()

    class Meta:
        model = Template
        fields = ["key", "name", "channel", "message_class", "approved_version", "approved_at", "locales"]

    def get_locales(self, template: Template) -> list[str]:
        return sorted(variant.locale for variant in template.live_version.variants.all())


class ByKey(pagination.CursorPagination):
    ordering = "key"


class ApprovedTemplateListView(generics.ListAPIView):
    required_scopes = {"GET": "templates:read"}
    serializer_class = TemplateSerializer
    pagination_class = ByKey
    filterset_fields = ["channel", "message_class"]
    queryset = Template.objects.filter(live_version__isnull=False).select_related("live_version").prefetch_related(
        Prefetch("live_version__variants", queryset=TemplateVariant.objects.only("locale", "version_id"))
    )

    @extend_schema(
        operation_id="templates_list",
        description="Approved templates (each one's live version), by key; filter by `channel` and "
        "`message_class`. The messages API sends transactional and operational ones.",
        examples=[OpenApiExample("An approved SMS template", response_only=True, value={
            "next": None, "previous": None, "results": [{
                "key": "payment-failed-sms", "name": "Payment failed sms", "channel": "sms",
                "message_class": "operational", "approved_version": 1, "approved_at": "2026-11-02T09:30:00Z",
                "locales": ["en", "pt"]}]})],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
