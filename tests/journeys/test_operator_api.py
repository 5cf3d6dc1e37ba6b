"""The operators' and integrations' journeys API: enroll contacts, pause,
resume, stats (step counts and holdout lift). Keys with the journeys:write
scope change journeys, journeys:read reads them."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from config.models import ApiKey
from journeys import selectors
from journeys.models import Enrollment, EnrollmentStatus, EntryDecision, Journey, JourneyStatus
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("email_template")]

STEPS = [{"key": "mail", "type": "send", "template": "welcome-email"},
         {"key": "pause", "type": "wait", "duration": "1d"}]


@pytest.fixture
def manager(api):
    """The test API key, which holds every scope."""
    return api


def key_with(*scopes: str) -> APIClient:
    _, secret = ApiKey.objects.create_key(name="limited", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


@pytest.fixture
def journey(db):
    return live_journey("onb", STEPS, trigger={"event": "user.signed_up"}, goal_events=["user.activated"])


def test_enrolling_answers_each_contacts_outcome(manager, journey):
    first, second = ContactFactory(), ContactFactory()
    Enrollment.objects.create(journey=journey, version=journey.live_version, contact=second,
                              entered_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))

    response = manager.post("/api/v1/journeys/onb/enrollments/",
                            {"external_ids": [first.external_id, "ghost", second.external_id]}, format="json")

    assert response.status_code == 202
    body = response.json()
    assert (body["entered"], body["refused"], body["unknown"]) == (1, 1, 1)
    entered, ghost, refused = body["results"]
    assert entered["outcome"] == "entered"
    assert entered["enrollment_id"] == Enrollment.objects.get(contact=first).pk
    assert ghost == {"external_id": "ghost", "outcome": "unknown_contact",
                     "detail": "no active contact has this external id", "enrollment_id": None, "control": False}
    assert (refused["outcome"], refused["detail"]) == (
        "already_enrolled", "an enrollment in this journey is still open")
    assert EntryDecision.objects.filter(contact=second, outcome="already_enrolled").exists()


def test_enrolling_again_is_refused_by_the_reentry_rule_with_200(manager, journey, t0):
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)
    emit(contact, "user.activated", t0 + dt.timedelta(minutes=1))
    run(t0 + dt.timedelta(minutes=1))
    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.CONVERTED

    response = manager.post("/api/v1/journeys/onb/enrollments/", {"external_ids": [contact.external_id]},
                            format="json")

    assert response.status_code == 200
    assert response.json()["results"][0]["outcome"] == "reentry_rule"
    assert Enrollment.objects.filter(contact=contact).count() == 1


def test_bad_enrollment_input_is_400_with_field_errors(manager, journey, settings):
    settings.JOURNEYS_ENROLL_PER_REQUEST = 2
    cases = [{}, {"external_ids": []}, {"external_ids": ["ok", ""]}, {"external_ids": "cus_1"}]

    answers = [manager.post("/api/v1/journeys/onb/enrollments/", body, format="json") for body in cases]

    assert [a.status_code for a in answers] == [400, 400, 400, 400]
    assert [a.json()["errors"][0]["attr"] for a in answers] == [
        "external_ids", "external_ids", "external_ids.1", "external_ids"]
    assert not Enrollment.objects.exists()


def test_a_journey_that_is_not_active_takes_no_enrollments(manager, journey):
    manager.post("/api/v1/journeys/onb/pause/")

    response = manager.post("/api/v1/journeys/onb/enrollments/", {"external_ids": [ContactFactory().external_id]},
                            format="json")

    assert response.status_code == 409
    assert not Enrollment.objects.exists()


def test_pause_and_resume(manager, journey):
    paused = manager.post("/api/v1/journeys/onb/pause/")
    again = manager.post("/api/v1/journeys/onb/pause/")
    resumed = manager.post("/api/v1/journeys/onb/resume/")

    assert (paused.status_code, paused.json()) == (200, {"key": "onb", "status": "paused"})
    assert again.status_code == 409
    assert resumed.json() == {"key": "onb", "status": "active"}
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.ACTIVE
    assert Journey.objects.get(pk=journey.pk).history.first().history_change_reason == \
        "active by api-key:test-integration"


def test_stats_give_step_counts_and_lift(manager, t0):
    journey = live_journey("held", STEPS, trigger={"event": "user.signed_up"}, goal_events=["user.activated"],
                           holdout_percent=50)
    contacts = ContactFactory.create_batch(12)
    for contact in contacts:
        emit(contact, "user.signed_up", t0)
    run(t0)
    emit(contacts[0], "user.activated", t0 + dt.timedelta(hours=1))
    run(t0 + dt.timedelta(hours=1))

    response = manager.get("/api/v1/journeys/held/stats/")

    assert response.status_code == 200
    body = response.json()
    lift = selectors.holdout_lift(journey).overall
    assert body["lift"]["treatment"] == {"enrolled": lift.treatment_enrolled, "converted": lift.treatment_converted,
                                         "conversion_rate": lift.treatment_rate}
    assert body["lift"]["control"]["enrolled"] == lift.control_enrolled == 12 - lift.treatment_enrolled
    assert body["lift"]["p_value"] == lift.p_value
    assert body["lift"]["by_version"]["1"]["treatment"]["enrolled"] == lift.treatment_enrolled
    assert body["steps"]["pause"]["waiting"] == 11
    assert body["steps"]["mail"]["sent"] == lift.treatment_enrolled
    assert body["totals"]["converted"] == 1
    assert (body["status"], body["live_version"]) == ("active", 1)


def test_keys_without_the_scope_are_refused_and_support_journeys_are_not_changed(manager, journey):
    live_journey("support-escalation-default-opened", STEPS)
    refused = manager.post("/api/v1/journeys/support-escalation-default-opened/pause/")
    reader, writer = key_with("journeys:read"), key_with("journeys:write")
    calls = [reader.post("/api/v1/journeys/onb/enrollments/", {"external_ids": ["x"]}, format="json"),
             reader.post("/api/v1/journeys/onb/pause/"), reader.post("/api/v1/journeys/onb/resume/"),
             writer.get("/api/v1/journeys/onb/stats/")]

    assert refused.status_code == 403
    assert [c.status_code for c in calls] == [403, 403, 403, 403]
    assert reader.get("/api/v1/journeys/onb/stats/").status_code == 200
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.ACTIVE


def test_an_unknown_journey_is_404_and_no_key_is_401(manager, client):
    assert manager.get("/api/v1/journeys/ghost/stats/").status_code == 404
    assert client.post("/api/v1/journeys/ghost/pause/").status_code == 401


def test_enrolling_by_api_and_reading_stats_cost_the_same_queries_for_five_or_twenty(manager, journey):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(n: int) -> tuple[int, int]:
        ids = [c.external_id for c in ContactFactory.create_batch(n)]
        with CaptureQueriesContext(connection) as enrolling:
            assert manager.post("/api/v1/journeys/onb/enrollments/", {"external_ids": ids},
                                format="json").json()["entered"] == n
        with CaptureQueriesContext(connection) as reading:
            assert manager.get("/api/v1/journeys/onb/stats/").status_code == 200
        return len(enrolling), len(reading)

    manager.get("/api/v1/journeys/onb/stats/")  # the key's first use of the minute also records last_used_at
    assert queries_for(5) == queries_for(20)
