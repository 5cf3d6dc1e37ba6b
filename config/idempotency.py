"""The Idempotency-Key header on API writes, with Stripe's meaning: a repeat
with the same key and the same request returns the first response; the same
key with a different request is a 409, and so is a repeat while the first is
still running. Keys belong to the credentials that sent them and are
forgotten after API_IDEMPOTENCY_TTL_HOURS.

A middleware, not a view mixin, so no endpoint can forget it; it needs no
key lookup of its own because the owner is a hash of the Authorization header."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from config.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
KEY_PATTERN = re.compile(r"^[!-~]+$")  # visible ASCII: a header value survives every proxy unchanged
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/v1/"
# Not kept, so the caller may fix the request and retry with the same key (Stripe
# keeps only what an endpoint began to execute; a 5xx here rolled back whole).
NOT_KEPT = frozenset({400, 401, 403, 405, 409, 413, 415, 429})


def _error(status: int, code: str, detail: str, kind: str = "client_error") -> JsonResponse:
    return JsonResponse({"type": kind, "errors": [{"code": code, "detail": detail, "attr": HEADER}]}, status=status)


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def claim(*, owner: str, key: str, fingerprint: str, now: dt.datetime) -> tuple[IdempotencyRecord, bool]:
    """The record for this key, and whether this request is the first (it
    then runs; others wait for its stored response). Expired records are
    replaced."""
    expired_before = now - dt.timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)
    IdempotencyRecord.objects.filter(owner=owner, key=key, created_at__lt=expired_before).delete()
    while True:
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    owner=owner, key=key, fingerprint=fingerprint, created_at=now
                )
            return record, True
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(owner=owner, key=key).first()
            if existing is not None:
                return existing, False
            # The first request was refused and let its key go in between: claim it again.


def prune(*, now: dt.datetime) -> int:
    expired_before = now - dt.timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=expired_before).delete()
    return deleted


def replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(bytes(record.body), status=record.status_code, content_type=record.content_type or None)
    response[REPLAYED_HEADER] = "true"
    return response


class IdempotencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get(HEADER)
        if key is None or request.method not in WRITE_METHODS or not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if len(key) > MAX_KEY_LENGTH or not KEY_PATTERN.match(key):
            return _error(400, "invalid", f"{HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters.",
                          kind="validation_error")
        authorization = request.headers.get("Authorization", "")
        if not authorization:
            return self.get_response(request)  # answered 401 by the API; nothing to remember
        try:
            body = request.body
        except RequestDataTooBig:
            return self.get_response(request)  # the API answers 400, and nothing is kept
        owner = _sha256(authorization.encode())
        fingerprint = _sha256(request.method.encode(), request.get_full_path().encode(), body)
        record, first = claim(owner=owner, key=key, fingerprint=fingerprint, now=timezone.now())
        if not first:
            if record.fingerprint != fingerprint:
                return _error(409, "idempotency_key_reused",
                              f"This {HEADER} was used with a different request; use a new key for a new request.")
            if record.status_code is None:
                return _error(409, "idempotency_key_in_use",
                              f"A request with this {HEADER} is still being processed; retry later.")
            return replay(record)
        try:
            response = self.get_response(request)
        except BaseException:
            record.delete()
            raise
        if response.status_code in NOT_KEPT or response.status_code >= 500 or response.streaming:
            record.delete()
        else:
            record.status_code = response.status_code
            record.content_type = response.get("Content-Type", "")
            record.body = response.content
            record.save(update_fields=["status_code", "content_type", "body"])
        return response
