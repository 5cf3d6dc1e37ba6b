"""The API's exception handler: drf-standardized-errors' shape, plus the
body-size error Django raises when something read request.body first.
Kept apart from api_auth, which DRF imports while rest_framework.views loads."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_standardized_errors.handler import ExceptionHandler
from rest_framework import exceptions


class ApiExceptionHandler(ExceptionHandler):
    def convert_known_exceptions(self, exc: Exception) -> Exception:
        if isinstance(exc, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return exceptions.ParseError(f"Request body too large: the limit is {limit} bytes.")
        return super().convert_known_exceptions(exc)


def exception_handler(exc, context):
    return ApiExceptionHandler(exc, context).run()
