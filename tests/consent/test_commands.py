"""The commands a new user runs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from config import roles
from config.models import ApiKey
from consent.models import ConsentRecord, Contact

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seed_demo_loads_contacts_with_consent_and_a_second_run_adds_nothing():
    run("seed_demo")
    counts = (Contact.objects.count(), ConsentRecord.objects.count())
    assert counts[0] >= 8 and counts[1] > 0
    run("seed_demo")
    assert (Contact.objects.count(), ConsentRecord.objects.count()) == counts


def test_setup_roles_creates_the_four_groups_and_is_idempotent():
    run("setup_roles")
    run("setup_roles")
    assert set(Group.objects.values_list("name", flat=True)) >= set(roles.ROLES)
    operator = Group.objects.get(name=roles.OPERATOR)
    assert operator.permissions.filter(codename="add_suppression").exists()
    marketer = Group.objects.get(name=roles.MARKETER)
    assert not marketer.permissions.filter(codename="add_suppression").exists()


def test_create_api_key_prints_a_working_key_once_and_stores_only_its_hash():
    output = run("create_api_key", "billing-crm", "--scope", "events:write", "--scope", "contacts:read")
    key = output.splitlines()[1]
    stored = ApiKey.objects.get(name="billing-crm")
    assert stored.is_valid(key)
    assert key not in stored.hashed_key
    assert stored.scopes == ["events:write", "contacts:read"]


def test_create_api_key_needs_known_scopes():
    with pytest.raises(CommandError, match="at least one --scope"):
        run("create_api_key", "crm")
    with pytest.raises(CommandError, match="Unknown scope"):
        run("create_api_key", "crm", "--scope", "events:delete")
    assert not ApiKey.objects.exists()


def test_create_api_key_refuses_a_duplicate_active_name():
    run("create_api_key", "crm", "--scope", "all")
    with pytest.raises(CommandError, match="active key named"):
        run("create_api_key", "crm", "--scope", "all")


def test_ensure_admin_prints_a_login_once():
    first = run("ensure_admin")
    assert "password:" in first and "/admin/" in first
    assert User.objects.get(username="admin").is_superuser
    assert "password:" not in run("ensure_admin")


def test_production_settings_pass_the_deploy_check():
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(64),
           "ALLOWED_HOSTS": "backoffice.example.com"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["DEBUG"] = "false"
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_nonsense_boolean_setting_fails_loudly():
    env = {**os.environ, "DEBUG": "maybe"}
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert "DEBUG must be a boolean" in result.stderr
