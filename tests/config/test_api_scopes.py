"""Every operation of the API schema is closed to a key lacking its scope,
and every API view names a known scope for each of its methods, so a new
endpoint cannot ship open."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient
from rest_framework.views import APIView

from config.models import ApiKey
from config.scopes import SCOPES


def api_views() -> list[type[APIView]]:
    found = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and (prefix + str(pattern.pattern)).startswith("api/v1/"):
                view = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
                if view is not None:
                    found.append(view)

    walk(get_resolver().url_patterns)
    return found


def operations() -> list[tuple[str, str, str]]:
    """(method, path with placeholder values, scope) for every operation in the schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    result = []
    for path, methods in schema["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        concrete = path.replace("/cases/{number}/", "/cases/C-000001/")
        concrete = re.sub(r"\{(id|pk|number)\}", "1", concrete)
        concrete = re.sub(r"\{[^}]+\}", "x", concrete)
        for method in methods:
            result.append((method.upper(), concrete, path))
    return result


def test_every_api_view_names_a_known_scope_for_each_of_its_methods():
    views = api_views()
    assert len(views) >= 10
    for view in views:
        methods = [m.upper() for m in view.http_method_names if m not in ("options", "head", "trace")
                   and hasattr(view, m)]
        scopes = getattr(view, "required_scopes", {})
        for method in methods:
            assert scopes.get(method) in SCOPES, f"{view.__name__}.{method} names no known scope"


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "template"), operations())
def test_a_key_without_the_operations_scope_gets_403(method, path, template):
    match = get_resolver().resolve(path)
    needed = match.func.view_class.required_scopes[method]
    _, secret = ApiKey.objects.create_key(name="almost", scopes=[s for s in SCOPES if s != needed])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    response = client.generic(method, path, data="{}", content_type="application/json")
    assert response.status_code == 403, (template, response.content)
    assert response.json()["errors"][0]["detail"] == f"This API key lacks the scope {needed!r}."
