"""Postprocessing hooks of the API schema: the Idempotency-Key header, with
its 400 and 409, on every write operation (a middleware, config.idempotency,
handles it for every view), and error locations inside lists and dicts."""

from __future__ import annotations

import re

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


def _error_schema(kind: str, codes: list[str]) -> dict:
    return {
        "type": "object",
        "required": ["type", "errors"],
        "properties": {
            "type": {"type": "string", "enum": [kind]},
            "errors": {"type": "array", "items": {
                "type": "object",
                "required": ["code", "detail", "attr"],
                "properties": {
                    "code": {"type": "string", "enum": codes},
                    "detail": {"type": "string"},
                    "attr": {"type": "string", "enum": [idempotency.HEADER]},
                },
            }},
        },
    }


IDEMPOTENCY_INVALID = _error_schema("validation_error", ["invalid"])
# A view's own 4xx documented by description only (conflicts, refusals) still answers in the one shape.
ANY_ERROR = {
    "type": "object",
    "required": ["type", "errors"],
    "properties": {
        "type": {"type": "string", "enum": ["validation_error", "client_error"]},
        "errors": {"type": "array", "items": {
            "type": "object",
            "required": ["code", "detail", "attr"],
            "properties": {"code": {"type": "string"}, "detail": {"type": "string"},
                           "attr": {"type": "string", "nullable": True}},
        }},
    },
}
IDEMPOTENCY_CONFLICT = _error_schema("client_error", ["idempotency_key_reused", "idempotency_key_in_use"])


def _also_answer(responses: dict, status: str, schema: dict, description: str) -> None:
    """Add `schema` as one more possible body of the status, keeping the view's own."""
    response = responses.setdefault(status, {"description": description})
    for media in response.setdefault("content", {"application/json": {}}).values():
        existing = media.get("schema")
        media["schema"] = {"anyOf": [existing, schema]} if existing else schema


def add_idempotency_key(result, generator, request, public):
    """Postprocessing hook: the header on every write, and its 400 and 409;
    the error shape on 4xx responses documented without a body."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                if status.startswith("4") and not response.get("content"):
                    response["content"] = {"application/json": {"schema": ANY_ERROR}}
            if method not in WRITE_METHODS:
                continue
            operation.setdefault("parameters", []).append(IDEMPOTENCY_HEADER)
            responses = operation.setdefault("responses", {})
            _also_answer(responses, "400", IDEMPOTENCY_INVALID, "Invalid Idempotency-Key")
            _also_answer(responses, "409", IDEMPOTENCY_CONFLICT, "Idempotency-Key conflict")
    return result


# drf-standardized-errors names the error of a list item `ladder.INDEX.channel`
# and of a dict value `data.KEY`; the API answers `ladder.0.channel`, `data.amount`.
_PLACEHOLDERS = {"INDEX": r"\d+", "KEY": r"[^.]+"}


def _attr_pattern(names: list[str]) -> str:
    alternatives = []
    for name in names:
        parts = name.split(".")
        # A null list item is reported at `ladder.0`, not `ladder.0.non_field_errors`.
        optional_tail = parts[-2:] == ["INDEX", "non_field_errors"]
        if optional_tail:
            parts = parts[:-1]
        pattern = r"\.".join(_PLACEHOLDERS.get(part, re.escape(part)) for part in parts)
        alternatives.append(pattern + (r"(\.non_field_errors)?" if optional_tail else ""))
    return "^(" + "|".join(alternatives) + ")$"


def match_error_locations(result, generator, request, public):
    """Postprocessing hook: an error location enum naming INDEX or KEY becomes a pattern."""
    for schema in result.get("components", {}).get("schemas", {}).values():
        attr = schema.get("properties", {}).get("attr") if isinstance(schema, dict) else None
        names = attr.get("enum") if isinstance(attr, dict) else None
        if names and any(part in _PLACEHOLDERS for name in names for part in str(name).split(".")):
            schema["properties"]["attr"] = {"type": "string", "pattern": _attr_pattern(names)}
    return result
