"""The weekly audit export of a seeded week: each file's rows and columns, the
manifest's counts and hashes, who may download (and that each download is
logged), a failure that leaves nothing complete, and its retry."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from analytics import services
from analytics.models import AuditExport, AuditExportDownload, ExportStatus
from channels.models import DeliveryEvent, OutboundMessage
from config import roles
from consent.models import ConsentRecord
from tests.analytics.conftest import WEEK_START, ZONE
from tests.consent.factories import ContactFactory
from tests.journeys.factories import live_journey, template

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(settings, tmp_path):
    settings.WORKSPACE_TIMEZONE = ZONE
    settings.AUDIT_EXPORT_ROOT = tmp_path / "exports"
    settings.ANALYTICS_EXPORT_PROGRESS_EVERY = 2
    email = template("welcome-email", "email").live_version
    journey = live_journey("seeded", [{"key": "mail", "type": "send", "template": "welcome-email"}],
                           trigger={"event": "user.signed_up"}, message_class="marketing")
    contact = ContactFactory(external_id="cus_1", email="jane.doe@example.com")
    inside = WEEK_START + dt.timedelta(days=2)
    consent = ConsentRecord.objects.create(contact=contact, channel="email", purpose="marketing", status="granted",
                                           source="form", recorded_at=inside, evidence={"form": "/signup"})
    sent = OutboundMessage.objects.create(
        contact=contact, channel="email", address="jane.doe@example.com", origin_kind="journey",
        origin_journey_version_id=journey.live_version.pk, origin_step_key="mail", template_key="welcome-email",
        template_version=email, consent_record=consent, idempotency_key="m1", status="delivered",
        status_changed_at=inside, created_at=inside, message_class="marketing", decision_reason="allowed")
    held = OutboundMessage.objects.create(
        contact=contact, channel="sms", address="+447700900123", origin_kind="api", origin_label="api key crm",
        idempotency_key="m2", status="suppressed", status_changed_at=inside, created_at=inside,
        decision_reason="consent_missing", template_key="=HYPERLINK(\"http://evil\")")
    DeliveryEvent.objects.create(message=held, kind="status", status="suppressed",
                                 detail="consent_missing: sms/marketing", received_at=inside)
    OutboundMessage.objects.create(contact=contact, channel="email", origin_kind="api", idempotency_key="m3",
                                   status="sent", status_changed_at=inside, created_at=WEEK_START - dt.timedelta(
                                       seconds=1))  # the Sunday before, in New York: not this week
    return {"journey": journey, "sent": sent, "held": held, "template": email}


def read_csv(export: AuditExport, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO((Path(export.directory) / f"{name}.csv").read_text())))


def test_the_export_of_a_seeded_week_holds_every_file_and_its_manifest(seeded):
    export = services.run_export(services.request_export("2026-W47", requested_by="rob").pk)

    assert export.status == ExportStatus.COMPLETE
    messages = read_csv(export, "messages")
    assert [row["message_id"] for row in messages] == [str(seeded["sent"].pk), str(seeded["held"].pk)]
    sent, held = messages
    assert sent["address_masked"] == "j***@example.com" and "jane" not in json.dumps(messages)
    assert (sent["journey"], sent["journey_version"], sent["step"]) == ("seeded", "1", "mail")
    assert sent["template_version"] == str(seeded["template"].number)
    assert sent["template_approved_by"] == seeded["template"].approved_by.username
    assert (sent["consent_status"], sent["consent_source"]) == ("granted", "form")
    assert sent["final_status"] == "delivered"
    assert (held["origin_label"], held["address_masked"], held["final_status"]) == (
        "api key crm", "+44********23", "suppressed")

    decisions = read_csv(export, "decisions")
    assert [(d["decision"], d["reason"]) for d in decisions] == [("suppressed", "consent_missing")]
    consent = read_csv(export, "consent_changes")
    assert [(c["channel"], c["status"], json.loads(c["evidence"])) for c in consent] == [
        ("email", "granted", {"form": "/signup"})]
    reviews = read_csv(export, "template_reviews")
    assert reviews == []  # the template and journey were approved outside the week (now)

    manifest = json.loads((Path(export.directory) / "manifest.json").read_text())
    assert manifest == export.manifest
    files = {entry["file"]: entry for entry in manifest["files"]}
    assert set(files) == {"messages.csv", "decisions.csv", "consent_changes.csv", "template_reviews.csv",
                          "permission_changes.csv", "admin_changes.csv", "audit-2026-W47.xlsx"}
    for name, entry in files.items():
        content = (Path(export.directory) / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["bytes"] == len(content)
    assert files["messages.csv"]["rows"] == 2 and files["decisions.csv"]["rows"] == 1

    workbook = load_workbook(Path(export.directory) / "audit-2026-W47.xlsx", read_only=True)
    rows = list(workbook["messages"].values)
    assert rows[0][0] == "message_id" and len(rows) == 3
    key = rows[2][rows[0].index("template_key")]
    assert key == '=HYPERLINK("http://evil")'  # kept as text, never a formula


def test_the_week_s_review_permission_and_admin_changes_are_exported(settings, tmp_path, reviewer, operator):
    settings.AUDIT_EXPORT_ROOT = tmp_path
    operator.groups.add(Group.objects.get(name=roles.AGENT))
    template("welcome-sms", "sms")  # approved now, by the factory's reviewer
    now = dt.datetime.now(dt.UTC)
    week = services.week_of(services.local_today(now))
    export = services.run_export(services.request_export(week, requested_by="rob").pk)

    reviews = read_csv(export, "template_reviews")
    assert [(r["kind"], r["key"], r["decision"]) for r in reviews] == [("template", "welcome-sms", "approved")]
    permissions = read_csv(export, "permission_changes")
    assert {"action": "added", "subject": "user:otto_operator",
            "what": f"group:{roles.AGENT}"}.items() <= next(
        p for p in permissions if p["what"] == f"group:{roles.AGENT}").items()
    changes = read_csv(export, "admin_changes")
    assert {("templates.Template", "created")} <= {(c["model"], c["change"]) for c in changes}


def test_only_reviewers_and_operators_download_and_every_download_is_logged(client, seeded, reviewer, operator,
                                                                             marketer, agent):
    export = services.run_export(services.request_export("2026-W47", requested_by="rob").pk)
    url = reverse("admin:analytics_auditexport_download", args=[export.pk, "messages.csv"])
    for person in (marketer, agent):
        client.force_login(person)
        assert client.get(url).status_code == 403
    for person in (reviewer, operator):
        client.force_login(person)
        response = client.get(url)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == (Path(export.directory) / "messages.csv").read_bytes()
    assert list(AuditExportDownload.objects.order_by("at").values_list("user__username", "file")) == [
        (reviewer.username, "messages.csv"), (operator.username, "messages.csv")]
    client.force_login(reviewer)
    outside = reverse("admin:analytics_auditexport_download", args=[export.pk, "..%2Fsecret"])
    assert client.get(outside).status_code == 302 and AuditExportDownload.objects.count() == 2


def test_the_export_page_links_every_file_with_its_rows_and_hash(client, seeded, reviewer):
    export = services.run_export(services.request_export("2026-W47", requested_by="rob").pk)
    client.force_login(reviewer)
    page = client.get(reverse("admin:analytics_auditexport_change", args=[export.pk])).content.decode()
    for entry in export.manifest["files"]:
        link = reverse("admin:analytics_auditexport_download", args=[export.pk, entry["file"]])
        assert f'href="{link}"' in page
        assert f'title="{entry["sha256"]}"' in page
    assert reverse("admin:analytics_auditexport_download", args=[export.pk, "manifest.json"]) in page


def test_a_failed_run_leaves_nothing_complete_and_a_retry_finishes_it(seeded, monkeypatch):
    export = services.request_export("2026-W47", requested_by="rob")
    calls = []

    def breaks_on_the_second(address):
        calls.append(address)
        if len(calls) == 2:
            raise OSError("disk full")
        return "x"

    monkeypatch.setattr(services, "mask_address", breaks_on_the_second)
    with pytest.raises(OSError):
        services.run_export(export.pk)
    export.refresh_from_db()
    assert (export.status, export.manifest, export.directory) == (ExportStatus.FAILED, {}, "")
    assert "disk full" in export.error
    assert not list(Path(services.export_root()).rglob("*.csv"))

    monkeypatch.undo()
    export = services.run_export(services.retry_export(export).pk)
    assert (export.status, export.attempt) == (ExportStatus.COMPLETE, 2)
    assert "/attempt-2-" in export.directory and export.manifest["files"][0]["rows"] == 2


def test_the_export_page_offers_retry_on_a_failed_export_only(client, reviewer, settings, tmp_path):
    settings.AUDIT_EXPORT_ROOT = tmp_path
    client.force_login(reviewer)
    now = timezone.now()
    failed = AuditExport.objects.create(week="2026-W46", status=ExportStatus.FAILED, error="full", requested_at=now)
    running = AuditExport.objects.create(week="2026-W47", status=ExportStatus.RUNNING, requested_at=now, started_at=now)

    def page(export):
        return client.get(reverse("admin:analytics_auditexport_change", args=[export.pk])).content.decode()

    assert reverse("admin:analytics_auditexport_retry", args=[failed.pk]) in page(failed)
    running_page = page(running)
    assert reverse("admin:analytics_auditexport_retry", args=[running.pk]) not in running_page
    assert "counting the week&#x27;s rows" in running_page


def test_reviewers_request_exports_from_the_admin_with_clear_errors(client, reviewer, marketer, settings, tmp_path):
    settings.AUDIT_EXPORT_ROOT = tmp_path
    client.force_login(reviewer)
    add = reverse("admin:analytics_auditexport_add")
    response = client.post(add, {"week": "2026-47"})
    assert "is not an ISO week" in response.content.decode() and not AuditExport.objects.exists()
    response = client.post(add, {"week": "2025-W53"})
    assert "has no week 53" in response.content.decode()
    response = client.post(add, {"week": "2026-W47"})
    export = AuditExport.objects.get()
    assert response.status_code == 302 and export.requested_by == f"user:{reviewer.username}"
    page = client.get(reverse("admin:analytics_auditexport_change", args=[export.pk])).content.decode()
    assert 'http-equiv="refresh"' in page  # pending: the page follows its progress
    client.force_login(marketer)
    assert client.get(add).status_code == 403


def test_the_command_exports_a_week_and_refuses_a_bad_one(seeded, capsys):
    call_command("export_audit", "--week", "2026-W47")
    out = capsys.readouterr().out
    assert "messages.csv" in out and "2 rows" in out
    with pytest.raises(CommandError, match="not an ISO week"):
        call_command("export_audit", "--week", "47")
    with pytest.raises(CommandError, match="either"):
        call_command("export_audit")


def test_beat_makes_one_export_per_week_on_monday_morning(settings, tmp_path):
    settings.WORKSPACE_TIMEZONE = ZONE
    settings.AUDIT_EXPORT_ROOT = tmp_path
    monday_1am = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)  # 01:00 in New York
    assert services.schedule_weekly_export(now=monday_1am) is None
    export = services.schedule_weekly_export(now=monday_1am + dt.timedelta(hours=1))
    assert (export.week, export.scheduled) == ("2026-W47", True)
    assert services.schedule_weekly_export(now=monday_1am + dt.timedelta(hours=5)) is None
    assert AuditExport.objects.filter(scheduled=True).count() == 1


def test_an_export_whose_worker_vanished_is_marked_failed(settings):
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    export = AuditExport.objects.create(week="2026-W47", requested_at=now, status=ExportStatus.RUNNING,
                                        heartbeat_at=now - dt.timedelta(hours=1))
    assert services.fail_lost_exports(now=now) == 1
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and "retry" in export.error
