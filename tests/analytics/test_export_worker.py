"""A reviewer's request in the admin is run by a real Celery worker through
Redis, after the request's transaction commits."""

import time

import pytest
from django.urls import reverse

from analytics.models import AuditExport, ExportStatus


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_export_requested_in_the_admin_is_written_by_the_worker(client, reviewer, celery_worker, settings,
                                                                   tmp_path):
    settings.AUDIT_EXPORT_ROOT = tmp_path
    client.force_login(reviewer)
    response = client.post(reverse("admin:analytics_auditexport_add"), {"week": "2026-W47"})
    assert response.status_code == 302
    deadline = time.monotonic() + 30
    while AuditExport.objects.get().status != ExportStatus.COMPLETE and time.monotonic() < deadline:
        time.sleep(0.2)
    export = AuditExport.objects.get()
    assert export.status == ExportStatus.COMPLETE, export.error
    assert {entry["file"] for entry in export.manifest["files"]} >= {"messages.csv", "audit-2026-W47.xlsx"}
    page = client.get(reverse("admin:analytics_auditexport_change", args=[export.pk])).content.decode()
    assert "messages.csv" in page and 'http-equiv="refresh"' not in page
