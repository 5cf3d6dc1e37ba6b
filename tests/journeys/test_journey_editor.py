"""The journey editor: the draft's steps as rows of an inline on the journey
page, the journey-level settings as YAML, one service writing both, and the
rows rebuilt from the definition whatever wrote it."""

from __future__ import annotations

import importlib

import pytest
from django.urls import reverse

from journeys import services
from journeys.as_code import import_yaml
from journeys.models import Journey, JourneyStep
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("email_template")]

STEPS = [
    {"key": "mail", "type": "send", "template": "welcome-email"},
    {"key": "pause", "type": "wait", "duration": "1d"},
    {"key": "check", "type": "branch", "branches": [{"when": [{"field": "contact.plan", "op": "equals",
                                                              "value": "pro"}], "next": "end"}],
     "else": "again"},
    {"key": "again", "type": "send", "template": "welcome-email", "next": "end"},
]


@pytest.fixture
def journey(db):
    return live_journey("onb", STEPS, trigger={"event": "user.signed_up"}, goal_events=["user.activated"])


def rows(journey: Journey) -> list[dict]:
    return [row.as_step() for row in JourneyStep.objects.filter(journey=journey)]


def change_url(journey: Journey) -> str:
    return reverse("admin:journeys_journey_change", args=[journey.pk])


def form_data(response) -> dict:
    """What the browser would post back unchanged: the journey form and every
    inline formset (management form included), from the rendered page."""
    data: dict = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        forms += formset.forms
    for form in forms:
        for name, field in form.fields.items():
            value = form[name].value()
            if field.disabled or value is None or value is False:
                continue
            data[form.add_prefix(name)] = value
    return data


def step_errors(response) -> list[dict]:
    [steps] = [i.formset for i in response.context["inline_admin_formsets"] if i.formset.prefix == "steps"]
    return [dict(form.errors) for form in steps.forms]


def steps_above_the_table(response) -> list[str]:
    [steps] = [i.formset for i in response.context["inline_admin_formsets"] if i.formset.prefix == "steps"]
    return list(steps.non_form_errors())


def test_every_written_definition_has_its_steps_as_rows_in_order(journey):
    assert rows(journey) == STEPS
    row = JourneyStep.objects.get(journey=journey, key="check")
    assert (row.position, row.type, row.next, row.template) == (2, "branch", "", "")
    assert set(row.options) == {"branches", "else"}


def test_the_journey_page_shows_one_row_per_step(admin_client, journey):
    page = admin_client.get(change_url(journey))

    assert page.status_code == 200
    content = page.content.decode()
    assert 'name="steps-1-duration"' in content
    assert 'value="1d"' in content
    assert 'name="settings_yaml"' in content
    assert "goal_events:" in content
    assert 'name="definition_yaml"' not in content


def test_saving_the_rows_rebuilds_the_draft_definition(admin_client, journey):
    data = form_data(admin_client.get(change_url(journey)))
    data["steps-1-duration"] = "2d"
    data["steps-3-DELETE"] = "on"
    data["steps-2-options_yaml"] = "branches: [{when: [{field: contact.plan, op: equals, value: pro}], next: end}]"
    # drag "pause" before "mail"
    data["steps-0-position"], data["steps-1-position"] = "1", "0"
    # a new row goes last
    data["steps-TOTAL_FORMS"] = "5"
    data.update({"steps-4-key": "bye", "steps-4-type": "exit", "steps-4-options_yaml": "reason: done"})
    data["settings_yaml"] = "trigger: {event: user.signed_up}\ngoal_events: [user.activated]\nholdout_percent: 10\n"

    response = admin_client.post(change_url(journey), data)

    assert response.status_code == 302, step_errors(response)
    journey.refresh_from_db()
    assert [s["key"] for s in journey.definition["steps"]] == ["pause", "mail", "check", "bye"]
    assert journey.definition["steps"][0] == {"key": "pause", "type": "wait", "duration": "2d"}
    assert journey.definition["steps"][3] == {"key": "bye", "type": "exit", "reason": "done"}
    assert journey.definition["holdout_percent"] == 10
    assert rows(journey) == journey.definition["steps"]
    assert journey.live_version.definition["steps"] == STEPS, "the live version is untouched until activated"
    assert journey.history.first().history_change_reason == "edited by user:admin"


def test_a_bad_setting_shows_on_its_row_and_nothing_is_saved(admin_client, journey):
    data = form_data(admin_client.get(change_url(journey)))
    data["steps-1-duration"] = "never"

    response = admin_client.post(change_url(journey), data)

    assert response.status_code == 200
    errors = step_errors(response)
    assert errors[1] == {"duration": ["'never' is not a duration such as 30m, 24h, 7d or 1d12h"]}
    assert errors[0] == errors[2] == errors[3] == {}
    assert "is not a duration such as 30m" in response.content.decode().replace("&#x27;", "'")
    assert Journey.objects.get(pk=journey.pk).definition["steps"] == STEPS
    assert rows(journey) == STEPS


def test_an_unknown_target_or_template_shows_on_its_cell(admin_client, journey):
    data = form_data(admin_client.get(change_url(journey)))
    data["steps-0-template"] = "ghost-email"
    data["steps-3-next"] = "nowhere"
    data["steps-2-options_yaml"] = "branches: [{when: [], next: elsewhere}]"

    response = admin_client.post(change_url(journey), data)

    errors = step_errors(response)
    assert errors[0] == {"template": ["unknown template 'ghost-email'"]}
    assert errors[3] == {"next": ["unknown step 'nowhere'"]}
    assert errors[2] == {"options_yaml": ["branches[0].next: unknown step 'elsewhere'"]}


def test_a_template_with_no_approved_version_may_be_drafted_but_not_activated(admin_client, journey):
    from templates import services as template_services
    from tests.templates.factories import factory_author

    template_services.template_create(key="draft-email", name="Draft", channel="email",
                                      message_class="operational", actor=factory_author())
    data = form_data(admin_client.get(change_url(journey)))
    data["steps-0-template"] = "draft-email"

    saved = admin_client.post(change_url(journey), data)
    activated = admin_client.get(reverse("admin:journeys_journey_publish", args=[journey.pk]), follow=True)

    assert saved.status_code == 302
    assert "steps[0] (mail).template: template &#x27;draft-email&#x27; has no approved version" in \
        activated.content.decode()
    assert journey.versions.count() == 1


def test_graph_problems_show_above_the_steps(admin_client, journey):
    data = form_data(admin_client.get(change_url(journey)))
    data["steps-3-next"] = "mail"  # again -> mail -> pause(wait) ... fine; make a loop with no wait:
    data["steps-1-type"] = "task"
    data["steps-1-duration"] = ""
    data["steps-1-options_yaml"] = "title: call them"

    loop = admin_client.post(change_url(journey), data)

    assert steps_above_the_table(loop) == ["steps: loop with no wait: again -> mail -> pause -> check -> again"]
    assert "loop with no wait" in loop.content.decode()

    data = form_data(admin_client.get(change_url(journey)))
    data["steps-0-next"] = "check"  # nothing leads to pause any more

    unreachable = admin_client.post(change_url(journey), data)

    assert steps_above_the_table(unreachable) == ["steps[1] (pause): unreachable from the first step"]
    assert step_errors(unreachable)[1] == {"__all__": ["unreachable from the first step"]}
    assert Journey.objects.get(pk=journey.pk).definition["steps"] == STEPS


def test_journey_level_problems_show_on_the_settings(admin_client, journey):
    data = form_data(admin_client.get(change_url(journey)))
    data["settings_yaml"] = "holdout_percent: 150\non_cap: later\n"

    response = admin_client.post(change_url(journey), data)

    errors = response.context["adminform"].form.errors["settings_yaml"]
    assert errors == ["holdout_percent: a number from 0 to 99", "on_cap: defer or drop"]


def test_options_may_not_repeat_a_column(admin_client, journey):
    data = form_data(admin_client.get(change_url(journey)))
    data["steps-1-options_yaml"] = "duration: 3d"

    response = admin_client.post(change_url(journey), data)

    assert step_errors(response)[1] == {"options_yaml": ["Give duration in its own column."]}


def test_a_journey_is_created_with_its_steps_from_the_add_page(admin_client):
    add = admin_client.get(reverse("admin:journeys_journey_add"))
    data = form_data(add)
    data.update({"key": "new", "name": "New", "message_class": "operational", "priority": "50",
                 "settings_yaml": "trigger: {event: user.signed_up}",
                 "steps-0-key": "hello", "steps-0-type": "send", "steps-0-template": "welcome-email"})

    response = admin_client.post(reverse("admin:journeys_journey_add"), data)

    assert response.status_code == 302, step_errors(response)
    journey = Journey.objects.get(key="new")
    assert journey.definition == {"trigger": {"event": "user.signed_up"},
                                  "steps": [{"key": "hello", "type": "send", "template": "welcome-email"}]}
    assert rows(journey) == journey.definition["steps"]


def test_the_add_page_refuses_a_bad_step_with_its_location(admin_client):
    data = form_data(admin_client.get(reverse("admin:journeys_journey_add")))
    data.update({"key": "new", "name": "New", "message_class": "marketing", "priority": "50",
                 "steps-0-key": "a", "steps-0-type": "wait", "steps-0-duration": "never"})

    response = admin_client.post(reverse("admin:journeys_journey_add"), data)

    assert response.status_code == 200
    assert step_errors(response)[0] == {"duration": ["'never' is not a duration such as 30m, 24h, 7d or 1d12h"]}
    assert not Journey.objects.filter(key="new").exists()


def test_a_marketer_edits_the_steps_of_their_journey_but_not_of_another(client, marketer):
    mine = services.journey_create(key="mine", name="Mine", message_class="marketing", actor=marketer,
                                   owner=marketer, definition={"steps": STEPS})
    theirs = services.journey_create(key="theirs", name="Theirs", message_class="marketing", actor="x",
                                     definition={"steps": STEPS})
    client.force_login(marketer)

    data = form_data(client.get(change_url(mine)))
    data["steps-1-duration"] = "3d"
    allowed = client.post(change_url(mine), data)
    theirs_page = client.get(change_url(theirs))
    refused = client.post(change_url(theirs), {**data, "key": "theirs"})

    assert allowed.status_code == 302
    assert Journey.objects.get(pk=mine.pk).definition["steps"][1]["duration"] == "3d"
    assert theirs_page.status_code == 200
    assert 'name="steps-1-duration"' not in theirs_page.content.decode(), "read-only rows"
    assert refused.status_code == 403
    assert Journey.objects.get(pk=theirs.pk).definition["steps"] == STEPS


def test_an_archived_journeys_steps_are_read_only(admin_client, journey):
    services.journey_archive(journey=journey, actor="ops")

    page = admin_client.get(change_url(journey))

    assert page.status_code == 200
    assert 'name="steps-1-duration"' not in page.content.decode()
    assert "contact.plan" in page.content.decode(), "a read-only row still shows its other settings"


def test_import_and_update_rebuild_the_rows(journey):
    import_yaml(text="key: onb\nname: Onb\nmessage_class: operational\nsteps:\n"
                     "  - {key: only, type: wait, duration: 5d}\n", actor="ci")
    assert rows(journey) == [{"key": "only", "type": "wait", "duration": "5d"}]

    services.journey_update(journey=Journey.objects.get(pk=journey.pk), actor="x", definition={"steps": STEPS})
    assert rows(journey) == STEPS

    services.journey_update(journey=Journey.objects.get(pk=journey.pk), actor="x", name="Renamed")
    assert rows(journey) == STEPS, "an edit that leaves the definition alone leaves the rows alone"


def test_a_setting_that_is_not_text_stays_in_the_options_as_given(db):
    step = {"key": "w", "type": "wait", "duration": 3600, "next": "end"}
    journey = services.journey_create(key="secs", name="Secs", message_class="operational", actor="x",
                                      definition={"steps": [step]})

    row = JourneyStep.objects.get(journey=journey)
    assert (row.duration, row.next, row.options) == ("", "end", {"duration": 3600})
    assert row.as_step() == step


def test_the_starter_journeys_load_with_their_rows(db):
    from journeys import demo
    from templates import demo as template_demo

    template_demo.seed()
    demo.seed()

    for journey in Journey.objects.all():
        assert rows(journey) == journey.definition["steps"], journey.key
    assert JourneyStep.objects.count() >= len(demo.starter_files())


def test_the_migration_backfills_rows_from_definitions_and_reverses(journey):
    from django.apps import apps

    migration = importlib.import_module("journeys.migrations.0005_journey_step")
    JourneyStep.objects.all().delete()

    migration.backfill_steps(apps, None)
    assert rows(journey) == STEPS

    migration.drop_steps(apps, None)
    assert not JourneyStep.objects.exists()


def test_the_journey_page_costs_the_same_queries_for_two_or_eight_steps(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(n: int) -> int:
        steps = [{"key": f"wait-{i}", "type": "wait", "duration": "1d"} for i in range(n)]
        journey = live_journey(f"steps-{n}", steps, holdout_percent=10)
        with CaptureQueriesContext(connection) as captured:
            page = admin_client.get(change_url(journey))
        assert f'name="steps-{n - 1}-duration"' in page.content.decode()
        return len(captured)

    assert queries_for(2) == queries_for(8)
