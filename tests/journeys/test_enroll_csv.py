"""Manual enrollment from a CSV upload in the admin: the file is read and
every problem listed by line, then the operator confirms and a background
import enrolls the contacts it named through enrollments_enroll (re-entry
rules apply), a chunk at a time, with a progress bar and a result per row."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from journeys import services
from journeys.models import Enrollment, EnrollmentImport, EntryDecision, ImportStatus
from tests.consent.factories import ContactFactory
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("email_template")]

STEPS = [{"key": "mail", "type": "send", "template": "welcome-email"},
         {"key": "pause", "type": "wait", "duration": "1d"}]


@pytest.fixture
def journey(db):
    return live_journey("onb", STEPS, trigger={"event": "user.signed_up"})


def upload(client, journey, text: str):
    url = reverse("admin:journeys_journey_enroll_csv", args=[journey.pk])
    return client.post(url, {"file": SimpleUploadedFile("contacts.csv", text.encode(), content_type="text/csv")})


def confirm(client, journey, preview):
    token = re.search(r'name="confirm" value="([^"]+)"', preview.content.decode()).group(1)
    return client.post(reverse("admin:journeys_journey_enroll_csv", args=[journey.pk]), {"confirm": token})


def confirm_and_run(client, journey, preview):
    """Confirm, do the worker's job, and read the import's page."""
    answer = confirm(client, journey, preview)
    assert answer.status_code == 302, text_of(answer)
    job = EnrollmentImport.objects.get()
    assert answer["Location"] == reverse("admin:journeys_enrollmentimport_change", args=[job.pk])
    waiting = client.get(answer["Location"]).content.decode()
    assert "waiting for a worker" in waiting and 'http-equiv="refresh"' in waiting  # it reloads until done
    services.enrollment_import_run(import_id=job.pk)
    done = client.get(answer["Location"])
    assert 'http-equiv="refresh"' not in done.content.decode()
    return done


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode().replace("&#x27;", "'"))


def problem_rows(page: str) -> list[tuple[str, ...]]:
    """The preview's problems table, each row as its cells' text."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page.split("Problems, by line", 1)[1])
    cells = (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows)
    return [tuple(c.strip() for c in row) for row in cells if row]


def test_the_file_is_read_with_each_problem_by_line_and_enrolled_only_on_confirmation(admin_client, journey):
    first, second = ContactFactory(), ContactFactory()
    csv_text = (f"External_ID,name\n{first.external_id},Ana\nghost,Nobody\n\n{second.external_id},Bo\n"
                f"a,b,c\n{first.external_id},Ana again\n,Someone\n")

    preview = upload(admin_client, journey, csv_text)

    page = text_of(preview)
    assert "Read 6 rows" in page
    assert "To enroll: 2" in page and "Unknown contacts: 1" in page and "Bad rows: 2" in page
    assert problem_rows(page) == [("3", "unknown contact", "no contact has external_id 'ghost'"),
                                  ("6", "bad row", "3 cells but the header names 2 columns"),
                                  ("8", "bad row", "no external_id, email or phone on this row")]
    assert "Enroll 2 contacts, skipping the rows listed below" in page
    assert not Enrollment.objects.exists()

    result = text_of(confirm_and_run(admin_client, journey, preview))

    job = EnrollmentImport.objects.get()
    assert (job.status, job.total, job.processed, job.entered, job.refused, job.skipped) == ("done", 2, 2, 2, 0, 3)
    assert "2 of 2 contacts" in result
    assert f"<td>2</td><td>{first.external_id}</td><td>entered</td>" in result
    assert "<td>3</td><td>-</td><td>unknown_contact</td><td>no contact has external_id 'ghost'</td>" in result
    assert "<td>6</td><td>-</td><td>bad_row</td><td>3 cells but the header names 2 columns</td>" in result
    assert f"<td>5</td><td>{second.external_id}</td><td>entered</td>" in result
    assert set(Enrollment.objects.values_list("contact", flat=True)) == {first.pk, second.pk}
    assert EntryDecision.objects.filter(outcome="entered", event__isnull=True).count() == 2


def test_contacts_are_found_by_email_or_phone_and_the_reentry_rule_still_refuses(admin_client, journey, t0):
    again, new, merged_away = ContactFactory(), ContactFactory(), ContactFactory()
    services.enrollments_enroll(journey=journey, contacts=[again], actor="earlier", now=t0)
    merged_away.merged_into = new
    merged_away.save(update_fields=["merged_into"])
    csv_text = (f"email,phone\n{again.email.upper()},\n,{new.phone}\n,not-a-phone\n"
                f"{merged_away.email},\n")

    preview = upload(admin_client, journey, csv_text)
    page = text_of(preview)
    result = text_of(confirm_and_run(admin_client, journey, preview))

    assert "To enroll: 2" in page
    assert any(row[:2] == ("4", "bad row") and row[2].startswith("'not-a-phone' is not a phone number")
               for row in problem_rows(page))
    assert f"was merged into '{new.external_id}'" in page
    job = EnrollmentImport.objects.get()
    assert (job.entered, job.refused) == (1, 1)
    assert (f"<td>2</td><td>{again.external_id}</td><td>already_enrolled</td>"
            "<td>an enrollment in this journey is still open</td>") in result
    assert Enrollment.objects.filter(contact=new).exists()
    assert Enrollment.objects.filter(contact=again).count() == 1


def test_a_file_without_a_header_too_large_or_too_long_is_refused_whole(admin_client, journey, settings):
    contacts = ContactFactory.create_batch(3)
    no_header = upload(admin_client, journey, "\n".join(c.external_id for c in contacts))
    settings.JOURNEYS_ENROLL_CSV_MAX_ROWS = 2
    too_long = upload(admin_client, journey, "external_id\n" + "\n".join(c.external_id for c in contacts))
    settings.JOURNEYS_ENROLL_CSV_MAX_BYTES = 10
    too_big = upload(admin_client, journey, "external_id\n" + contacts[0].external_id)

    assert "the first line must be a header naming a column external_id, email or phone" in text_of(no_header)
    assert "more than 2 rows" in text_of(too_long)
    assert "The file is larger than 10 bytes." in text_of(too_big)
    assert 'name="confirm"' not in text_of(too_long)


def test_an_altered_confirmation_enrolls_nobody(admin_client, journey):
    preview = upload(admin_client, journey, f"external_id\n{ContactFactory().external_id}\n")
    token = re.search(r'name="confirm" value="([^"]+)"', preview.content.decode()).group(1)

    response = admin_client.post(reverse("admin:journeys_journey_enroll_csv", args=[journey.pk]),
                                 {"confirm": token[:-2] + "xx"})

    assert "The confirmation expired or was altered" in text_of(response)
    assert not Enrollment.objects.exists()


def test_only_someone_who_may_publish_the_journey_uploads(client, operator, marketer, journey):
    url = reverse("admin:journeys_journey_enroll_csv", args=[journey.pk])
    mine = live_journey("mine", STEPS)
    services.journey_update(journey=mine, actor="x", owner=marketer)

    client.force_login(operator)
    operator_answer = client.get(url)
    client.force_login(marketer)
    not_theirs = client.get(url)
    theirs = client.get(reverse("admin:journeys_journey_enroll_csv", args=[mine.pk]))

    assert (operator_answer.status_code, not_theirs.status_code, theirs.status_code) == (403, 403, 200)


def test_a_paused_journey_takes_no_csv_enrollment(admin_client, journey):
    preview = upload(admin_client, journey, f"external_id\n{ContactFactory().external_id}\n")
    services.journey_pause(journey=journey, actor="ops")

    response = confirm(admin_client, journey, preview)

    assert "only an active journey takes enrollments" in text_of(response)
    assert not Enrollment.objects.exists() and not EnrollmentImport.objects.exists()


def import_of_five_stopped_after_its_first_chunk(client, journey, settings) -> EnrollmentImport:
    """A confirmed import of five contacts whose worker committed one chunk of two, then stopped."""
    settings.JOURNEYS_IMPORT_CHUNK_SIZE = 2
    contacts = ContactFactory.create_batch(5)
    confirm(client, journey, upload(client, journey, "external_id\n" + "\n".join(c.external_id for c in contacts)))
    job = EnrollmentImport.objects.get()
    with transaction.atomic():
        locked = EnrollmentImport.objects.select_for_update().get(pk=job.pk)
        services._import_chunk(locked, 2, timezone.now())
        locked.save()
    return job


def test_a_journey_paused_while_its_import_runs_stops_it_with_what_was_done(admin_client, journey, settings):
    job = import_of_five_stopped_after_its_first_chunk(admin_client, journey, settings)
    services.journey_pause(journey=journey, actor="ops")

    job = services.enrollment_import_run(import_id=job.pk)

    assert (job.status, job.processed, job.entered) == (ImportStatus.FAILED, 2, 2)
    assert "stopped after 2 of 5 contacts" in job.error
    assert Enrollment.objects.count() == 2


def test_a_stopped_import_resumes_where_it_left_off_and_enrolls_each_contact_once(admin_client, journey, settings):
    job = import_of_five_stopped_after_its_first_chunk(admin_client, journey, settings)

    job = services.enrollment_import_run(import_id=job.pk)
    services.enrollment_import_run(import_id=job.pk)  # a redelivered task finds it done

    assert (job.status, job.processed, job.entered, job.refused) == (ImportStatus.DONE, 5, 5, 0)
    assert job.rows.count() == 5 and Enrollment.objects.count() == 5
    assert list(job.rows.values_list("line", flat=True)) == [2, 3, 4, 5, 6]


def test_confirming_costs_the_same_queries_for_five_or_twenty_contacts(admin_client, journey):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(n: int) -> int:
        contacts = ContactFactory.create_batch(n)
        preview = upload(admin_client, journey, "external_id\n" + "\n".join(c.external_id for c in contacts))
        EnrollmentImport.objects.all().delete()
        confirm(admin_client, journey, preview)
        job = EnrollmentImport.objects.get()
        with CaptureQueriesContext(connection) as captured:
            assert services.enrollment_import_run(import_id=job.pk).entered == n
        return len(captured)

    assert queries_for(5) == queries_for(20)
