"""Data the scenarios need, made the fast way where it is bulk (COPY, never
the ORM) and through the real services where it is configuration (approved
templates, live journeys), so the code under test sees what production sees."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator

from django.db import connection

AUTHOR = "bench_author"
REVIEWER = "bench_reviewer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- People and configuration, through the real services ----------------------------------


def _user(username: str, role: str):
    from django.contrib.auth.models import Group, User

    from config import roles

    roles.sync_roles()
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)


def superuser():
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username="bench_admin", defaults={"is_staff": True, "is_superuser": True})
    return user


def approved_template(key: str, channel: str, message_class: str, content: dict, variables: Iterable = ()):
    """A template whose live version an author wrote and a reviewer approved."""
    from config import roles
    from templates import services
    from templates.models import Template

    existing = Template.objects.filter(key=key).first()
    if existing is not None and existing.live_version_id:
        return existing
    author, reviewer = _user(AUTHOR, roles.MARKETER), _user(REVIEWER, roles.REVIEWER)
    template = existing or services.template_create(
        key=key, name=key.replace("-", " ").capitalize(), channel=channel, message_class=message_class, actor=author
    )
    version = services.version_create_draft(template=template, actor=author)
    version_fields, variant_fields, _status = services.content_to_fields(content)
    if version_fields:
        services.version_update(version=version, actor=author, **version_fields)
    services.variant_save(version=version, actor=author, locale="en", **variant_fields)
    for variable in variables:
        services.variable_save(version=version, actor=author, **variable)
    services.version_submit(version=version, actor=author)
    services.version_approve(version=version, actor=reviewer, comment="approved for the benchmark")
    template.refresh_from_db()
    return template


def live_journey(key: str, definition: dict, message_class: str = "operational"):
    """An active journey whose version a reviewer (not its author) approved."""
    from journeys import services
    from journeys.models import Journey, VersionStatus

    journey = Journey.objects.filter(key=key).first()
    if journey is not None and journey.live_version_id:
        return journey
    journey = services.journey_create(key=key, name=key, message_class=message_class, definition=definition,
                                      actor=AUTHOR)
    version = services.journey_publish(journey=journey, actor=AUTHOR)
    if version.status == VersionStatus.IN_REVIEW:
        services.journey_version_approve(version=version, actor=REVIEWER)
    journey.refresh_from_db()
    return journey


FIRST_NAME = [{"path": "contact.first_name", "fallback": "there"}]
SMS_CONTENT = {"body": "Hi {{ contact.first_name }}, your appointment is tomorrow at 10:00. Reply C to confirm."}
EMAIL_CONTENT = {
    "subject": "Hello {{ contact.first_name }}",
    "html": "<p>Hello {{ contact.first_name }},</p><p>Your appointment is tomorrow at 10:00.</p>",
}


# --- Bulk rows with COPY ----------------------------------------------------------------


def _copy_text(value) -> str:
    if value is None:
        return r"\N"
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_rows(table: str, columns: list[str], rows: Iterator[tuple], chunk: int = 20_000) -> int:
    """COPY rows (text format, built in large chunks: write_row per row costs
    more Python time than PostgreSQL does). Runs in the current transaction."""
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            buffer: list[str] = []
            for row in rows:
                buffer.append("\t".join(_copy_text(v) for v in row))
                count += 1
                if len(buffer) >= chunk:
                    copy.write("\n".join(buffer) + "\n")
                    buffer.clear()
            if buffer:
                copy.write("\n".join(buffer) + "\n")
    return count


def _default_text(field) -> object:
    value = field.get_default()
    if field.get_internal_type() == "JSONField":
        return json.dumps(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    return value


def copy_model_rows(model, columns: list[str], rows: Iterator[tuple], chunk: int = 20_000) -> int:
    """copy_rows into a model's table, filling every other NOT NULL column
    that has a Django default with that default (Django defaults are not
    database defaults, and the apps add such columns as they grow)."""
    extra = [f for f in model._meta.concrete_fields
             if f.column not in columns and not f.primary_key and not f.null and f.has_default()]
    tail = tuple(_default_text(f) for f in extra)
    return copy_rows(model._meta.db_table, [*columns, *(f.column for f in extra)],
                     (row + tail for row in rows), chunk=chunk)


def zone_at_local_hour(hour: int) -> str:
    """An Etc/GMT zone whose wall clock reads about `hour` now."""
    offset = (hour - dt.datetime.now(dt.UTC).hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


CONTACT_COLUMNS = ["external_id", "email", "phone", "whatsapp_id", "timezone", "locale", "lifecycle_stage",
                   "attributes", "created_at", "updated_at"]


def copy_contacts(n: int, *, prefix: str, timezone: str = "UTC") -> tuple[int, int]:
    """n contacts with email and phone; returns the (first, last) id made."""
    now = dt.datetime.now(dt.UTC).isoformat()
    attributes = json.dumps({"first_name": "Ana"})

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM consent_contact")
        before = cursor.fetchone()[0]

    def rows():
        # Phones are unique: number them after every contact made so far.
        for i in range(n):
            yield (f"{prefix}-{i}", f"{prefix}-{i}@example.com", f"+1{4_150_000_000 + before + i}", "", timezone,
                   "en", "customer", attributes, now, now)
    from consent.models import Contact

    copy_model_rows(Contact, CONTACT_COLUMNS, rows())
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM consent_contact WHERE id > %s", [before])
        first, last = cursor.fetchone()
    return first, last


def truncate(*tables: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


def analyze(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {table}")


def unique_tag() -> str:
    return uuid.uuid4().hex[:8]


def purge_broker() -> None:
    """Drop tasks a scenario published but no worker ran (the bench broker is ours alone)."""
    import redis

    from bench.common import BENCH_BROKER_URL

    redis.Redis.from_url(BENCH_BROKER_URL).flushdb()
