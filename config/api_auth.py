"""API key authentication, scopes and per-key rate limits.
djangorestframework-api-key's HasAPIKey is only a permission (request.user
stays anonymous and the schema shows no scheme), so authentication sets
request.auth to the key and the permission checks its scopes."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, parsers, permissions, throttling

from config.models import ApiKey

KEYWORD = "Api-Key"
# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme != KEYWORD or not key:
            raise exceptions.AuthenticationFailed(f"Use the header 'Authorization: {KEYWORD} <key>'.")
        api_key = ApiKey.objects.filter(prefix=key.partition(".")[0]).first()
        if api_key is None or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed("Unknown API key.")
        if api_key.revoked or api_key.has_expired:
            raise exceptions.AuthenticationFailed("This API key is revoked or expired.")
        _mark_used(api_key)
        return (AnonymousUser(), api_key)

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing.
        return KEYWORD


def _mark_used(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def required_scope(view, method: str) -> str | None:
    """The scope the view names for this method (HEAD and OPTIONS as GET)."""
    scopes = getattr(view, "required_scopes", None) or {}
    if method in ("HEAD", "OPTIONS"):
        method = "GET"
    return scopes.get(method)


def key_may_call(request, view) -> bool:
    """True when request.auth is a key holding the scope the view names; sets
    the permission's message otherwise. Views without a scope are closed."""
    api_key = request.auth
    if not isinstance(api_key, ApiKey):
        return False
    scope = required_scope(view, request.method)
    if scope is None:
        raise exceptions.PermissionDenied("This endpoint is not open to API keys.")
    if not api_key.has_scope(scope):
        raise exceptions.PermissionDenied(f"This API key lacks the scope {scope!r}.")
    return True


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return key_may_call(request, view)


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    """Requests per minute per key (the key's own limit or the default), in
    the shared cache so the limit holds across web processes. DRF answers 429
    with Retry-After."""

    scope = "api_key"

    def get_rate(self) -> str:
        return f"{settings.API_RATE_LIMIT_PER_MINUTE}/min"

    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        limit = api_key.rate_limit_per_minute or settings.API_RATE_LIMIT_PER_MINUTE
        self.num_requests, self.duration = limit, 60
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}


class BoundedJSONParser(parsers.JSONParser):
    """DRF reads the request stream directly, so Django's body size limit never
    applies to the API; this parser enforces it and answers 400, as it does
    for JSON nested deeper than Python's recursion limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        length = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            raise exceptions.ParseError(f"Request body too large: {length} bytes, the limit is {limit}.")
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "config.api_auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`{KEYWORD} <key>`; create one with `python manage.py create_api_key NAME --scope ...`.",
        }
