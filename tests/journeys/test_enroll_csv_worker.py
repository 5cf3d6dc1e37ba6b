"""A confirmed CSV upload is enrolled by a real Celery worker through Redis
once the request commits; its page shows the progress bar while it runs and
stops reloading once every row has its result."""

from __future__ import annotations

import re
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from journeys.models import Enrollment, EnrollmentImport, ImportStatus
from tests.consent.factories import ContactFactory
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.usefixtures("email_template")]



@pytest.fixture(scope="session")
def celery_includes():
    return ["journeys.tasks"]

@pytest.mark.django_db(transaction=True)
def test_an_upload_confirmed_in_the_admin_is_enrolled_by_the_worker_in_chunks(admin_client, celery_worker,
                                                                               settings):
    settings.JOURNEYS_IMPORT_CHUNK_SIZE = 3
    journey = live_journey("csv-worker", [{"key": "mail", "type": "send", "template": "welcome-email"},
                                          {"key": "pause", "type": "wait", "duration": "1d"}])
    contacts = ContactFactory.create_batch(7)
    url = reverse("admin:journeys_journey_enroll_csv", args=[journey.pk])
    csv_text = "external_id\n" + "\n".join(c.external_id for c in contacts) + "\nghost\n"
    preview = admin_client.post(url, {"file": SimpleUploadedFile("crm.csv", csv_text.encode())})
    token = re.search(r'name="confirm" value="([^"]+)"', preview.content.decode()).group(1)

    answer = admin_client.post(url, {"confirm": token})

    job = EnrollmentImport.objects.get()
    assert answer["Location"] == reverse("admin:journeys_enrollmentimport_change", args=[job.pk])
    deadline = time.monotonic() + 30
    while EnrollmentImport.objects.get().status != ImportStatus.DONE and time.monotonic() < deadline:
        time.sleep(0.2)
    job.refresh_from_db()
    assert (job.status, job.file_name, job.processed, job.entered, job.skipped) == ("done", "crm.csv", 7, 7, 1)
    assert Enrollment.objects.filter(journey=journey).count() == 7
    page = admin_client.get(answer["Location"]).content.decode()
    assert "7 of 7 contacts" in page and 'http-equiv="refresh"' not in page
    assert "unknown_contact" in page and page.count("<td>entered</td>") == 7
