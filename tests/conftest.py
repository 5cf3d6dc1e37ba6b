"""Shared fixtures: the fixed cast of people, an API client with a key, and
the skip rules for tests that need PostgreSQL or Redis."""

from __future__ import annotations

import os
import time

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection
from rest_framework.test import APIClient

from config import celery_app, roles
from config.models import ApiKey
from config.scopes import SCOPES


def _isolate_redis_per_xdist_worker() -> None:
    """Under pytest-xdist each worker has its own test database; give it its
    own Redis databases too, or one worker's Celery worker consumes another's
    tasks. Subprocess workers read the environment, so set it there as well."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not settings.CELERY_BROKER_URL.startswith("redis"):
        return
    index = int(worker[2:])
    base = settings.CELERY_BROKER_URL.rsplit("/", 1)[0]
    broker, shared = f"{base}/{2 + 2 * index}", f"{base}/{3 + 2 * index}"
    settings.CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"] = broker
    settings.REDIS_URL = os.environ["REDIS_URL"] = shared
    celery_app.conf.broker_url = broker


_isolate_redis_per_xdist_worker()


def pytest_collection_modifyitems(config, items):
    redis_reason = _redis_unavailable()
    for item in items:
        if "redis" in item.keywords and redis_reason:
            item.add_marker(pytest.mark.skip(reason=redis_reason))


def _redis_unavailable() -> str:
    url = settings.REDIS_URL
    if not url:
        return "Redis is not configured (set REDIS_URL or a redis:// CELERY_BROKER_URL)"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        return f"Redis at {url} is unreachable: {error}"
    return ""


@pytest.fixture(autouse=True)
def _no_webhook_endpoints_cached():
    # Every test starts with no endpoint: say so to the per-process endpoint
    # cache, or its refresh query (every few seconds) lands at random inside
    # the query-count tests. Saving an endpoint clears the cache in-process.
    from channels import outbound_webhooks

    outbound_webhooks._endpoint_cache.update(until=time.monotonic() + 3600, endpoints=())


@pytest.fixture(autouse=True)
def _require_postgres(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL; this run uses {connection.vendor} (set DATABASE_URL)")


TEST_PASSWORD = "pw-for-tests-only"


def staff_user(username: str, group: str | None = None, **fields) -> User:
    """A staff member in one role's group (config.roles), or in none."""
    roles.sync_roles()
    user = User.objects.create_user(username=username, password=TEST_PASSWORD, is_staff=True, **fields)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


# The real Celery worker some tests start (celery.contrib.pytest's celery_worker),
# on the real Redis broker, acking late as production does. Each test folder or
# module names the task modules its worker loads (celery_includes).
@pytest.fixture(scope="session")
def celery_config():
    return {
        "broker_url": settings.CELERY_BROKER_URL,
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {"visibility_timeout": 3600},
    }


@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {"perform_ping_check": False, "queues": ("celery",)}


@pytest.fixture
def marketer(db) -> User:
    return staff_user("mia_marketer", roles.MARKETER)


@pytest.fixture
def reviewer(db) -> User:
    return staff_user("rob_reviewer", roles.REVIEWER)


@pytest.fixture
def agent(db) -> User:
    return staff_user("ada_agent", roles.AGENT)


@pytest.fixture
def operator(db) -> User:
    return staff_user("otto_operator", roles.OPERATOR)


@pytest.fixture
def outsider(db) -> User:
    return staff_user("olga_outsider", None)


@pytest.fixture
def api_key(db) -> tuple[ApiKey, str]:
    """A key holding every scope; scope tests make their own."""
    return ApiKey.objects.create_key(name="test-integration", scopes=list(SCOPES))


@pytest.fixture
def api(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key[1]}")
    return client
