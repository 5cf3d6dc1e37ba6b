"""The Idempotency-Key header, with its 409s, on every write operation of the
API schema (a middleware, config.idempotency, handles it for every view)."""

from __future__ import annotations

from config import idempotency

WRITE_METHODS = {method.lower() for method in idempotency.WRITE_METHODS}

IDEMPOTENCY_HEADER = {
    "in": "header",
    "name": idempotency.HEADER,
    "required": False,
    "schema": {"type": "string", "pattern": idempotency.KEY_PATTERN.pattern, "minLength": 1,
               "maxLength": idempotency.MAX_KEY_LENGTH},
    "description": "Makes a retry safe: a repeat with the same key and request returns the first response "
    "(header `Idempotent-Replayed: true`); the same key with a different request, or while the first still "
    "runs, answers 409. Keys are kept for API_IDEMPOTENCY_TTL_HOURS (24 h).",
}
IDEMPOTENCY_CONFLICT = {
    "type": "object",
    "required": ["type", "errors"],
    "properties": {
        "type": {"type": "string", "enum": ["client_error"]},
        "errors": {"type": "array", "items": {
            "type": "object",
            "required": ["code", "detail", "attr"],
            "properties": {
                "code": {"type": "string", "enum": ["idempotency_key_reused", "idempotency_key_in_use"]},
                "detail": {"type": "string"},
                "attr": {"type": "string", "enum": [idempotency.HEADER]},
            },
        }},
    },
}


def add_idempotency_key(result, generator, request, public):
    """Postprocessing hook: the header on every write, and its 409."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in WRITE_METHODS:
                continue
            operation.setdefault("parameters", []).append(IDEMPOTENCY_HEADER)
            responses = operation.setdefault("responses", {})
            conflict = responses.get("409")
            if conflict is None:
                responses["409"] = {"description": "Idempotency-Key conflict",
                                    "content": {"application/json": {"schema": IDEMPOTENCY_CONFLICT}}}
                continue
            for media in conflict.setdefault("content", {"application/json": {}}).values():
                existing = media.get("schema")
                media["schema"] = {"anyOf": [existing, IDEMPOTENCY_CONFLICT]} if existing else IDEMPOTENCY_CONFLICT
    return result
