"""Reading journeys, their versions and enrollments, and exiting contacts,
as an integration does: cursor-paginated lists, 404s, per-contact outcomes."""

from __future__ import annotations

import pytest

from journeys import api as journeys_api
from journeys.models import Enrollment, EnrollmentStatus
from tests.consent.factories import ContactFactory
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("email_template")]

STEPS = [{"key": "mail", "type": "send", "template": "welcome-email"},
         {"key": "pause", "type": "wait", "duration": "1d"}]


@pytest.fixture
def journey(db):
    return live_journey("onb", STEPS, trigger={"event": "user.signed_up"})


def test_journeys_are_listed_by_key_a_page_at_a_time_and_read_with_their_versions(api, journey, monkeypatch):
    live_journey("winback", STEPS)
    monkeypatch.setattr(journeys_api.ByKey, "page_size", 1)
    first = api.get("/api/v1/journeys/").json()
    second = api.get(first["next"]).json()
    assert [j["key"] for j in first["results"] + second["results"]] == ["onb", "winback"]
    assert first["results"][0]["live_version"] == 1
    detail = api.get("/api/v1/journeys/onb/").json()
    assert [v["number"] for v in detail["versions"]] == [1]
    assert detail["versions"][0]["status"] == "approved"
    version = api.get("/api/v1/journeys/onb/versions/1/").json()
    assert [step["key"] for step in version["definition"]["steps"]] == ["mail", "pause"]
    assert api.get("/api/v1/journeys/onb/versions/").json()["results"][0]["number"] == 1
    assert api.get("/api/v1/journeys/onb/versions/9/").status_code == 404
    assert api.get("/api/v1/journeys/ghost/").status_code == 404


def test_enrollments_are_read_by_journey_contact_and_status(api, journey):
    ana, ben = ContactFactory(external_id="cus_ana"), ContactFactory(external_id="cus_ben")
    api.post("/api/v1/journeys/onb/enrollments/", {"external_ids": ["cus_ana", "cus_ben"]}, format="json")
    listed = api.get("/api/v1/journeys/onb/enrollments/").json()["results"]
    assert {e["contact"] for e in listed} == {"cus_ana", "cus_ben"}
    only_ana = api.get("/api/v1/journeys/onb/enrollments/?contact=cus_ana").json()["results"]
    assert [e["contact"] for e in only_ana] == ["cus_ana"]
    one = api.get(f"/api/v1/enrollments/{only_ana[0]['id']}/").json()
    assert (one["journey"], one["version"], one["status"]) == ("onb", 1, "active")
    assert api.get("/api/v1/journeys/onb/enrollments/?status=exited").json()["results"] == []
    bad = api.get("/api/v1/journeys/onb/enrollments/?status=gone")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["attr"] == "status"
    assert Enrollment.objects.filter(contact__in=[ana, ben]).count() == 2


def test_exiting_contacts_ends_their_open_enrollments_and_says_so_for_each(api, journey):
    ContactFactory(external_id="cus_ana")
    ContactFactory(external_id="cus_ben")
    api.post("/api/v1/journeys/onb/enrollments/", {"external_ids": ["cus_ana"]}, format="json")
    response = api.post("/api/v1/journeys/onb/exits/", {"external_ids": ["cus_ana", "cus_ben", "ghost"],
                                                          "reason": "cancelled"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"exited": 1, "results": [
        {"external_id": "cus_ana", "outcome": "exited"}, {"external_id": "cus_ben", "outcome": "not_enrolled"},
        {"external_id": "ghost", "outcome": "unknown_contact"}]}
    ended = Enrollment.objects.get(contact__external_id="cus_ana")
    assert ended.status == EnrollmentStatus.EXITED
    assert ended.end_reason == "exited by api-key:test-integration: cancelled"


def test_support_journeys_are_not_exited_through_the_api(api):
    live_journey("support-escalation-default-opened", STEPS)
    response = api.post("/api/v1/journeys/support-escalation-default-opened/exits/",
                        {"external_ids": ["x"]}, format="json")
    assert response.status_code == 403
