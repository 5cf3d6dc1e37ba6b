"""The cases API: open, read, change (status through its transition, 409 when
illegal), list with filters, and clear 400s for bad input."""

from __future__ import annotations

import datetime as dt

from django.core.management import call_command

from channels.models import MessageStatus, OutboundMessage
from support import services
from support.demo import install_default_policy
from support.models import CaseEventKind, CaseSource, CaseStatus, SupportCase
from tests.support import factories


def test_an_integration_opens_a_case_for_a_contact_by_external_id(api, billing):
    customer = factories.contact()
    response = api.post("/api/v1/cases/", {"contact": customer.external_id, "subject": "Wrong invoice",
                                           "category": "billing", "priority": "high"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["number"].startswith("C-") and body["status"] == "open" and body["source"] == "api"
    case = SupportCase.objects.get(number=body["number"])
    assert case.contact == customer and case.source == CaseSource.API
    assert case.events.filter(kind=CaseEventKind.OPENED, actor__startswith="api-key:").exists()


def test_opening_a_case_for_an_unknown_contact_is_a_field_error(api):
    response = api.post("/api/v1/cases/", {"contact": "nobody", "subject": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "contact"


def test_a_bad_priority_and_a_missing_subject_are_field_errors(api):
    customer = factories.contact()
    response = api.post("/api/v1/cases/", {"contact": customer.external_id, "priority": "asap"}, format="json")
    assert response.status_code == 400
    assert {e["attr"] for e in response.json()["errors"]} == {"priority", "subject"}


def test_a_case_is_read_by_its_number(api, billing_case):
    response = api.get(f"/api/v1/cases/{billing_case.number}/")
    assert response.status_code == 200
    assert response.json()["team"] == "Billing" and response.json()["contact"] == billing_case.contact.external_id
    assert api.get("/api/v1/cases/C-999999/").status_code == 404


def test_an_illegal_transition_answers_409_and_changes_nothing(api, billing_case):
    services.case_close(case=billing_case, actor="test")
    response = api.patch(f"/api/v1/cases/{billing_case.number}/", {"status": "open", "priority": "urgent"},
                         format="json")
    assert response.status_code == 409
    assert "cannot move from closed to open" in response.json()["errors"][0]["detail"]
    billing_case.refresh_from_db()
    assert billing_case.status == CaseStatus.CLOSED and billing_case.priority == "normal"


def test_priority_and_assignment_change_together(api, billing_case, ada):
    response = api.patch(f"/api/v1/cases/{billing_case.number}/",
                         {"priority": "urgent", "assigned_agent": "ada_billing"}, format="json")
    assert response.status_code == 200
    assert response.json()["priority"] == "urgent" and response.json()["assigned_agent"] == "ada_billing"


def test_assignment_errors_name_the_field(api, billing_case, tom):
    unknown = api.patch(f"/api/v1/cases/{billing_case.number}/", {"assigned_agent": "ghost"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["attr"] == "assigned_agent"
    wrong_team = api.patch(f"/api/v1/cases/{billing_case.number}/", {"assigned_agent": "tom_tech", "team": "Billing"},
                           format="json")
    assert wrong_team.status_code == 400
    nothing = api.patch(f"/api/v1/cases/{billing_case.number}/", {}, format="json")
    assert nothing.status_code == 400


def test_the_list_filters_by_contact_and_status(api, billing_case, tech_case):
    services.case_resolve(case=tech_case, actor="test")
    by_status = api.get("/api/v1/cases/?status=resolved").json()["results"]
    assert [c["number"] for c in by_status] == [tech_case.number]
    by_contact = api.get(f"/api/v1/cases/?contact={billing_case.contact.external_id}").json()["results"]
    assert [c["number"] for c in by_contact] == [billing_case.number]
    assert api.get("/api/v1/cases/?status=solved").status_code == 400


def test_a_helpdesk_resolving_through_the_api_stops_the_escalation_at_once(api, billing, case_templates,
                                                                             time_machine):
    install_default_policy()
    start = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
    case = factories.case(team_=billing, priority="high", now=start)
    call_command("advance_journeys", now=start.isoformat())
    call_command("advance_journeys", now=(start + dt.timedelta(minutes=30)).isoformat())
    queued = OutboundMessage.objects.filter(contact=case.contact, status=MessageStatus.QUEUED)
    assert queued.count() == 2
    time_machine.move_to(start + dt.timedelta(minutes=31), tick=False)
    response = api.patch(f"/api/v1/cases/{case.number}/", {"status": "resolved"}, format="json")
    assert response.status_code == 200
    assert not OutboundMessage.objects.filter(contact=case.contact, status=MessageStatus.QUEUED).exists()
    assert OutboundMessage.objects.filter(contact=case.contact, status=MessageStatus.CANCELLED).count() == 2


def test_the_schema_documents_the_cases_endpoints(client):
    schema = client.get("/api/schema/").content.decode()
    assert "/api/v1/cases/{number}/" in schema and "cases_update" in schema
