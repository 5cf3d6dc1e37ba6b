"""A compliance reviewer runs the audit export of the demo's week from the browser: a
wrong week is refused on the form, the request is written by a real Celery
worker while the page shows its progress, and the files download."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from analytics.models import AuditExport, ExportStatus
from analytics.services import week_of
from analytics.tasks import run_audit_export
from channels.models import OutboundMessage
from config import roles
from consent.models import workspace_timezone
from tests.conftest import staff_user

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="session")
def celery_includes():
    return ["analytics.tasks"]


def test_a_reviewer_runs_and_downloads_an_audit_export(demo, sign_in, shot, celery_app, celery_worker, settings,
                                                       tmp_path):
    settings.AUDIT_EXPORT_ROOT = tmp_path
    # A test app made after an earlier worker test in this process can miss our
    # shared tasks (celery.contrib.pytest); name the one this flow needs, with its time limits.
    if run_audit_export.name not in celery_app.tasks:
        celery_app.task(name=run_audit_export.name, soft_time_limit=run_audit_export.soft_time_limit,
                        time_limit=run_audit_export.time_limit)(run_audit_export.run)
    # The week of the demo's newest messages (they are sent at each contact's last noon).
    newest = OutboundMessage.objects.latest("created_at").created_at
    demo_week = week_of(timezone.localdate(newest, workspace_timezone()))
    rob = sign_in(staff_user("rob_export", roles.REVIEWER))

    rob.locator("#your-work").get_by_role("link", name="All audit exports →").click()
    rob.get_by_role("link", name="Add audit export").first.click()
    rob.get_by_label("Week").fill(f"{timezone.now().year + 1}-W01")
    rob.get_by_role("button", name="Save", exact=True).click()
    expect(rob.get_by_text("has not started yet; pick a past or the current week.")).to_be_visible()
    assert not AuditExport.objects.exists()

    rob.get_by_label("Week").fill(demo_week)
    shot(rob, "reviewer-requests-an-export")
    rob.get_by_role("button", name="Save", exact=True).click()
    expect(rob.get_by_text("The export runs in the background; this page shows its progress.")).to_be_visible()

    # The page reloads itself while the worker writes; the files appear once it is complete.
    expect(rob.get_by_role("link", name="messages.csv")).to_be_visible(timeout=60_000)
    export = AuditExport.objects.get()
    assert (export.week, export.status, export.requested_by) == (demo_week, ExportStatus.COMPLETE, "user:rob_export")
    shot(rob, "reviewer-export-complete")

    with rob.expect_download() as download:
        rob.get_by_role("link", name="messages.csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert download.value.suggested_filename.endswith("messages.csv")
    assert rows and {"message_id", "contact", "channel", "address_masked", "final_status"} <= set(rows[0])
    assert all("@" not in row["address_masked"] or "***@" in row["address_masked"] for row in rows)
