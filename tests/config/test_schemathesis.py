"""schemathesis against our own OpenAPI schema, over every operation, on a
live server with the demo data: no 5xx, and every response (status code,
content type, body) as the schema documents it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from config.models import ApiKey
from config.scopes import SCOPES

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "20")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_every_operation_survives_schemathesis(live_server, tmp_path):
    call_command("setup_roles", verbosity=0)
    call_command("seed_demo", verbosity=0)
    _, key = ApiKey.objects.create_key(name="schemathesis", scopes=list(SCOPES), rate_limit_per_minute=10**6)
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{live_server.url}/api/schema/",
        "--url", live_server.url, "-H", f"Authorization: Api-Key {key}", "--checks", CHECKS,
        "--max-examples", MAX_EXAMPLES, "--phases", "examples,coverage,fuzzing", "--workers", "2",
        "--seed", "21", "--no-color", "--generation-database", "none", "--request-timeout", "30",
        "--report-dir", str(tmp_path),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
