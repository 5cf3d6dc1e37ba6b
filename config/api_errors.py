"""The API's exception handler class (DRF_STANDARDIZED_ERRORS
EXCEPTION_HANDLER_CLASS): drf-standardized-errors' shape, plus the body-size
error Django raises when something read request.body first. Kept apart from
api_auth, which DRF imports while rest_framework.views loads."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views import defaults
from drf_standardized_errors.handler import ExceptionHandler
from rest_framework import exceptions


class ApiExceptionHandler(ExceptionHandler):
    def convert_known_exceptions(self, exc: Exception) -> Exception:
        if isinstance(exc, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return exceptions.ParseError(f"Request body too large: the limit is {limit} bytes.")
        return super().convert_known_exceptions(exc)


def _api_error(status: int, code: str, detail: str, kind: str = "client_error") -> JsonResponse:
    return JsonResponse({"type": kind, "errors": [{"code": code, "detail": detail, "attr": None}]}, status=status)


def not_found(request, exception=None):
    """Django's 404 (an unknown URL) in the API's error shape under /api/."""
    if request.path.startswith("/api/"):
        return _api_error(404, "not_found", "No such endpoint; see /api/docs/.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith("/api/"):
        return _api_error(500, "error", "A server error occurred.", kind="server_error")
    return defaults.server_error(request)
