"""The API's front door: keys with scopes, and the replay store behind the
Idempotency-Key header. Apps never import these; config.api_auth does."""

from __future__ import annotations

from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, APIKeyManager

from config.scopes import SCOPES


class ApiKey(AbstractAPIKey):
    """An integration's key: only its hash is stored (djangorestframework-api-key)."""

    scopes = models.JSONField(default=list, blank=True, help_text="What the key may do; see the API guide")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty: API_RATE_LIMIT_PER_MINUTE"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = APIKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or ())

    def unknown_scopes(self) -> list[str]:
        return [scope for scope in self.scopes or () if scope not in SCOPES]


class IdempotencyRecord(models.Model):
    """One write request made with an Idempotency-Key: its fingerprint, and
    once it finished, the response to replay (Stripe's semantics)."""

    owner = models.CharField(max_length=64, help_text="SHA-256 of the Authorization header")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path, query and body")
    status_code = models.PositiveSmallIntegerField(null=True, help_text="Empty while the first request runs")
    content_type = models.CharField(max_length=100, blank=True)
    body = models.BinaryField(default=b"")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="idempotency_owner_key_unique")]
