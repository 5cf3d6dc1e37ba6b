"""Agents see only the cases assigned to them or their team, by every route:
the admin list, the change page by URL, the history page, the object
permissions page, every case action, and the API. Supervisors and operators
see all; an integration's API key sees all; an outsider sees none."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from support import services
from support.models import CaseNote, CaseStatus
from tests.support import factories

ADMIN = "/admin/support/supportcase/"


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def cases(billing_case, tech_case):
    return billing_case, tech_case


def test_an_agent_lists_only_their_team_cases(ada, cases):
    billing_case, tech_case = cases
    page = browser(ada).get(ADMIN)
    assert page.status_code == 200
    assert billing_case.number in page.content.decode()
    assert tech_case.number not in page.content.decode()


def test_an_agent_opens_their_team_case_page(ada, billing_case):
    page = browser(ada).get(f"{ADMIN}{billing_case.pk}/change/")
    assert page.status_code == 200
    assert billing_case.subject in page.content.decode()


@pytest.mark.parametrize("route", ["change/", "history/", "permissions/"])
def test_an_agent_cannot_open_another_team_case_page_by_url(ada, tech_case, route):
    page = browser(ada).get(f"{ADMIN}{tech_case.pk}/{route}", follow=True)
    assert tech_case.subject not in page.content.decode()
    assert page.status_code in (200, 403, 404)  # 200 only as the admin index after a redirect
    if page.status_code == 200:
        assert page.redirect_chain and not page.redirect_chain[-1][0].endswith(f"{tech_case.pk}/{route}")


@pytest.mark.parametrize(
    ("route", "data"),
    [("reply/", {"channel": "email", "text": "hello"}), ("note/", {"body": "peek"}),
     ("status/", {"status": "closed"}), ("priority/", {"priority": "low"}), ("assign/", {})],
)
def test_an_agent_cannot_act_on_another_team_case(ada, tech_case, route, data):
    response = browser(ada).post(f"{ADMIN}{tech_case.pk}/{route}", {**data, "_form_submitted": "on"})
    assert response.status_code in (403, 404)
    tech_case.refresh_from_db()
    assert tech_case.status == CaseStatus.OPEN and tech_case.priority == "normal"
    assert not CaseNote.objects.filter(case=tech_case).exists()


def test_an_agent_adds_a_note_to_their_own_case_through_the_admin(ada, billing_case):
    response = browser(ada).post(f"{ADMIN}{billing_case.pk}/note/", {"body": "Called back", "_form_submitted": "on"})
    assert response.status_code == 302
    assert CaseNote.objects.get(case=billing_case).body == "Called back"


def test_an_agent_assigned_personally_sees_a_case_outside_their_team(ada, tech, tom, tech_case):
    services.case_assign(case=tech_case, team=None, agent=ada, actor="test")
    assert browser(ada).get(f"{ADMIN}{tech_case.pk}/change/").status_code == 200


def test_the_api_hides_another_team_case_from_an_agent(ada, cases):
    billing_case, tech_case = cases
    client = api_as(ada)
    assert client.get(f"/api/v1/cases/{tech_case.number}/").status_code == 404
    assert client.patch(f"/api/v1/cases/{tech_case.number}/", {"status": "closed"}, format="json").status_code == 404
    listed = [c["number"] for c in client.get("/api/v1/cases/").json()["results"]]
    assert listed == [billing_case.number]
    assert client.get(f"/api/v1/cases/{billing_case.number}/").status_code == 200
    tech_case.refresh_from_db()
    assert tech_case.status == CaseStatus.OPEN


def test_an_agent_changes_their_team_case_through_the_api(ada, billing_case):
    response = api_as(ada).patch(f"/api/v1/cases/{billing_case.number}/", {"status": "pending_customer"},
                                 format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "pending_customer"


def test_a_supervisor_sees_every_team_case(sam, cases):
    billing_case, tech_case = cases
    assert browser(sam).get(f"{ADMIN}{tech_case.pk}/change/").status_code == 200
    listed = {c["number"] for c in api_as(sam).get("/api/v1/cases/").json()["results"]}
    assert listed == {billing_case.number, tech_case.number}


def test_an_operator_sees_and_changes_every_case(operator, tech_case):
    assert browser(operator).get(f"{ADMIN}{tech_case.pk}/change/").status_code == 200
    response = api_as(operator).patch(f"/api/v1/cases/{tech_case.number}/", {"priority": "high"}, format="json")
    assert response.status_code == 200 and response.json()["priority"] == "high"


def test_an_api_key_is_an_integration_and_sees_every_case(api, cases):
    listed = {c["number"] for c in api.get("/api/v1/cases/").json()["results"]}
    assert listed == {case.number for case in cases}


def test_an_outsider_sees_no_case_anywhere(outsider, tech_case):
    assert browser(outsider).get(ADMIN).status_code == 403
    assert browser(outsider).get(f"{ADMIN}{tech_case.pk}/change/").status_code in (302, 403)
    assert api_as(outsider).get(f"/api/v1/cases/{tech_case.number}/").status_code == 403
    assert APIClient().get("/api/v1/cases/").status_code in (401, 403)


def test_an_empty_queue_says_whose_cases_it_would_hold(ada, tom, operator, billing_case):
    newcomer = factories.person("nina_new")
    assert "You are in no support team yet" in browser(newcomer).get(ADMIN).content.decode()
    assert "Your queue is empty" in browser(tom).get(ADMIN).content.decode()
    assert "cases assigned to you and to Tech." in browser(tom).get(ADMIN).content.decode()

    searched = browser(ada).get(ADMIN, {"q": "no such subject"}).content.decode()
    assert "No case matches your search or filters" in searched and "Only the cases of your queue" in searched
    listed = browser(ada).get(ADMIN).content.decode()
    assert billing_case.number in listed and "data-empty-queue" not in listed
    billing_case.delete()
    assert "No cases yet" in browser(operator).get(ADMIN).content.decode()


JOURNEY_BROWSING = ["view_enrollment", "view_task", "change_task", "view_journey", "view_stepexecution"]


def test_the_agent_role_cannot_browse_journey_enrollments_or_tasks(ada):
    assert not any(ada.has_perm(f"journeys.{codename}") for codename in JOURNEY_BROWSING)
    for page in ("/admin/journeys/enrollment/", "/admin/journeys/task/"):
        assert browser(ada).get(page).status_code == 403


def test_the_case_page_shows_its_own_escalation_enrollment_but_not_another_case_one(ada, billing, case_templates):
    from support.demo import install_default_policy
    from support.models import Priority
    from tests.support import factories

    install_default_policy()
    contact = factories.contact()
    mine = factories.case(contact_=contact, team_=billing, priority=Priority.HIGH, subject="Refund")
    other = factories.case(contact_=contact, priority=Priority.HIGH, subject="Other team")
    html = browser(ada).get(f"{ADMIN}{mine.pk}/change/").content.decode()
    [block] = re.findall(r"Open journey enrollments</h2>\s*<ul[^>]*>(.*?)</ul>", html, re.S)
    # Both cases run the same escalation journey for this contact: only this case's row shows.
    assert other.escalations.get().journey_key == mine.escalations.get().journey_key
    assert block.count("<li>") == 1 and "this case's escalation" in block, block
