"""The base of the API's input serializers: DRF ignores keys it does not
know, so a typo (`"emial"`) would be silently dropped; here it is a 400
naming the field."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


class InputSerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in data if name not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {"non_field_errors": [f"Unknown field(s): {', '.join(unknown)}. Known: {', '.join(self.fields)}."]}
                )
        return super().to_internal_value(data)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    attr = serializers.CharField(allow_null=True, help_text="Where: a field path such as `events.3.contact.phone`")


class ErrorResponseSerializer(serializers.Serializer):
    """The one error shape (drf-standardized-errors), for responses whose
    codes and locations are not known in advance (YAML problems, conflicts)."""

    type = serializers.ChoiceField(choices=["validation_error", "client_error", "server_error"])
    errors = ErrorSerializer(many=True)
