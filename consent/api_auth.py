"""API key authentication. djangorestframework-api-key's HasAPIKey is only a
permission (request.user stays anonymous and the schema shows no scheme), so
authentication sets request.auth to the key and the permission checks it."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, parsers, permissions
from rest_framework_api_key.models import APIKey

KEYWORD = "Api-Key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD or not key.strip():
            raise exceptions.AuthenticationFailed(f"Use the header 'Authorization: {KEYWORD} <key>'.")
        try:
            api_key = APIKey.objects.get_from_key(key.strip())
        except APIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("Unknown API key.") from None
        if not api_key.is_valid(key.strip()):
            raise exceptions.AuthenticationFailed("This API key is revoked or expired.")
        return (AnonymousUser(), api_key)

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing.
        return KEYWORD


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, APIKey)


class BoundedJSONParser(parsers.JSONParser):
    """DRF reads the request stream directly, so Django's body size limit never
    applies to the API; this parser enforces it and answers 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        length = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            raise exceptions.ParseError(f"Request body too large: {length} bytes, the limit is {limit}.")
        return super().parse(stream, media_type, parser_context)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "consent.api_auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`{KEYWORD} <key>`; create one with `python manage.py create_api_key NAME`.",
        }

