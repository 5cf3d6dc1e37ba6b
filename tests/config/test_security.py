"""Admin hardening: lockout, password rules, CSP header, deploy checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command

BASE_DIR = Path(__file__).resolve().parents[2]
LOGIN_URL = "/admin/login/?next=/admin/"


def _login(client, username, password):
    return client.post(LOGIN_URL, {"username": username, "password": password})


@pytest.mark.django_db
def test_admin_login_locks_after_failures_and_shows_a_message(client, operator, settings):
    operator.set_password("correct-horse-battery-42")
    operator.save()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, operator.username, "wrong-password")
    response = _login(client, operator.username, "correct-horse-battery-42")
    assert response.status_code == 429
    assert b"Account locked" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_axes_reset_unlocks(client, operator, settings):
    operator.set_password("correct-horse-battery-42")
    operator.save()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, operator.username, "wrong-password")
    assert AccessAttempt.objects.filter(username=operator.username).exists()
    call_command("axes_reset")
    response = _login(client, operator.username, "correct-horse-battery-42")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(operator.pk)


@pytest.mark.django_db
def test_api_keys_are_not_locked_out(api, operator, settings, client):
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        _login(client, operator.username, "wrong-password")
    response = api.get("/api/v1/journeys/")
    assert response.status_code == 200


@pytest.mark.parametrize("password", ["short-pw-1", "123456789012345", "password12345"])
def test_weak_passwords_are_refused(password):
    with pytest.raises(ValidationError):
        validate_password(password)


def test_long_uncommon_password_is_accepted():
    validate_password("violet-tram-88-orbit")


@pytest.mark.django_db
def test_admin_pages_carry_a_content_security_policy(client):
    policy = client.get(LOGIN_URL).headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'self'",
                      "form-action 'self'"):
        assert directive in policy


def test_check_deploy_is_clean_with_production_settings():
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "p" * 20 + "roduction-secret-key-that-is-long-and-random-9f8e7d6c5b4a",
        "ALLOWED_HOSTS": "backoffice.example.com",
        "SITE_URL": "https://backoffice.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
