from __future__ import annotations

import textwrap

import pytest
import yaml
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from config.models import ApiKey
from journeys.as_code import export_yaml, import_yaml
from journeys.definition import validate
from journeys.models import Journey, VersionStatus
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("email_template")]

GOOD = textwrap.dedent("""
    key: hello
    name: Hello
    message_class: operational
    priority: 40
    trigger: {event: user.signed_up}
    goal_events: [user.activated]
    steps:
      - {key: mail, type: send, template: welcome-email}
      - {key: pause, type: wait, duration: 1d}
""")


def test_export_then_import_round_trips_a_journey():
    journey = live_journey("round", [{"key": "mail", "type": "send", "template": "welcome-email"}],
                           trigger={"event": "user.signed_up"}, reentry={"cooldown": "7d"})
    text = export_yaml(journey)
    document = yaml.safe_load(text)
    assert document["templates"] == ["welcome-email"]
    assert document["reentry"] == {"cooldown": "7d"}
    Journey.objects.filter(pk=journey.pk).update(key="round-old")

    result = import_yaml(text=text, actor="ci")

    assert result.problems == []
    assert result.created
    assert result.journey.definition == journey.live_version.definition


def test_import_reports_every_problem_with_its_location():
    text = textwrap.dedent("""
        key: broken
        name: Broken
        message_class: marketing
        colour: blue
        steps:
          - {key: a, type: send, template: spring-promo-email}
          - {key: b, type: teleport}
          - {key: c, type: branch, branches: [{when: [{field: contact.x, op: equals, value: 1}], next: ghost}]}
    """)

    result = import_yaml(text=text, actor="ci")

    found = {(p.location, p.message) for p in result.problems}
    assert ("colour", "unknown field") in found
    assert ("steps[0] (a).template", "unknown template 'spring-promo-email'") in found
    assert any(loc == "steps[1] (b).type" for loc, _ in found)
    assert ("steps[2] (c).branches[0].next", "unknown step 'ghost'") in found
    assert not Journey.objects.filter(key="broken").exists()


def test_validation_finds_unreachable_steps_and_loops_without_a_wait():
    definition = {"steps": [
        {"key": "a", "type": "update_attribute", "attribute": "n", "value": 1},
        {"key": "b", "type": "branch", "branches": [{"when": [{"seen": "x"}], "next": "a"}], "else": "end"},
        {"key": "orphan", "type": "wait", "duration": "1h"},
    ]}

    problems = {str(p) for p in validate(definition)}

    assert "steps[2] (orphan): unreachable from the first step" in problems
    assert "steps: loop with no wait: a -> b -> a" in problems


def test_a_loop_through_a_wait_is_allowed():
    definition = {"steps": [
        {"key": "a", "type": "wait", "duration": "1d"},
        {"key": "b", "type": "branch", "branches": [{"when": [{"seen": "x"}], "next": "end"}], "else": "a"},
    ]}

    assert validate(definition) == []


def test_a_send_whose_template_has_no_approved_version_is_reported(db):
    from templates.services import template_create
    from tests.templates.factories import factory_author

    template_create(key="draft-only", name="Draft only", channel="email", message_class="marketing",
                    actor=factory_author())
    result = import_yaml(text=GOOD.replace("welcome-email", "draft-only"), actor="ci")

    assert [str(p) for p in result.problems] == [
        "steps[0] (mail).template: template 'draft-only' has no approved version"]


def test_invalid_yaml_is_reported_with_its_line():
    result = import_yaml(text="key: [unclosed\nname: x", actor="ci")

    assert result.problems[0].location.startswith("line ")


def test_import_command_publishes_for_review_and_export_command_writes_yaml(tmp_path):
    source = tmp_path / "hello.yaml"
    source.write_text(GOOD)

    call_command("import_journey", str(source), "--publish")

    journey = Journey.objects.get(key="hello")
    assert journey.versions.get().status == VersionStatus.IN_REVIEW
    target = tmp_path / "out.yaml"
    call_command("export_journey", "hello", "--draft", "--output", str(target))
    assert yaml.safe_load(target.read_text())["steps"][1] == {"key": "pause", "type": "wait", "duration": "1d"}


def test_import_command_lists_problems_and_imports_nothing(tmp_path):
    source = tmp_path / "bad.yaml"
    source.write_text(GOOD.replace("duration: 1d", "duration: soon"))

    with pytest.raises(CommandError, match=r"steps\[1\] \(pause\)\.duration"):
        call_command("import_journey", str(source))
    assert not Journey.objects.exists()


def test_export_command_refuses_an_unknown_key():
    with pytest.raises(CommandError, match="no journey"):
        call_command("export_journey", "nope")


@pytest.fixture
def importer(api):
    """The test API key, which holds every scope."""
    return api


def test_an_api_key_without_the_journeys_scopes_is_refused(db):
    _, secret = ApiKey.objects.create_key(name="crm", scopes=["events:write", "contacts:write"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    live_journey("hello", [{"key": "pause", "type": "wait", "duration": "1d"}])

    imported = api.post("/api/v1/journeys/import/", {"yaml": GOOD.replace("priority: 40", "priority: 99"),
                                                     "publish": True}, format="json")
    exported = api.get("/api/v1/journeys/hello/export/")

    assert (imported.status_code, exported.status_code) == (403, 403)
    assert imported.json()["errors"][0]["detail"] == "This API key lacks the scope 'journeys:write'."
    assert Journey.objects.get(key="hello").priority == 50


def test_no_api_key_may_import_a_support_escalation_journey(importer):
    yaml_text = GOOD.replace("key: hello", "key: support-escalation-default-opened")

    response = importer.post("/api/v1/journeys/import/", {"yaml": yaml_text, "publish": True}, format="json")

    assert response.status_code == 403
    assert "support" in response.json()["errors"][0]["detail"]
    assert not Journey.objects.exists()


def test_the_api_imports_and_exports_yaml(importer):
    api = importer
    response = api.post("/api/v1/journeys/import/", {"yaml": GOOD, "publish": True}, format="json")
    assert response.status_code == 201
    assert response.json() == {"key": "hello", "created": True, "version": 1, "version_status": "in_review"}

    exported = api.get("/api/v1/journeys/hello/export/")
    assert exported.status_code == 200
    assert yaml.safe_load(exported.json()["yaml"])["key"] == "hello"


def test_the_api_answers_400_with_located_problems(importer):
    api = importer
    response = api.post("/api/v1/journeys/import/", {"yaml": GOOD.replace("welcome-email", "ghost")}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"code": "invalid", "detail": "unknown template 'ghost'", "attr": "steps[0] (mail).template"}]


def test_the_api_answers_409_when_a_version_already_waits_for_review(importer):
    api = importer
    api.post("/api/v1/journeys/import/", {"yaml": GOOD, "publish": True}, format="json")

    response = api.post("/api/v1/journeys/import/", {"yaml": GOOD, "publish": True}, format="json")

    assert response.status_code == 409
