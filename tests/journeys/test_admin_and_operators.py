from __future__ import annotations

import datetime as dt
import importlib

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django_celery_beat.models import PeriodicTask
from guardian.shortcuts import assign_perm

from channels.models import OutboundMessage
from config import roles
from journeys import selectors, services
from journeys.models import Enrollment, EnrollmentStatus, EntryDecision, Event, Journey, JourneyStatus, StepExecution
from journeys.simulate import SimEvent, simulate
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import grant, live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("email_template")]

STEPS = [
    {"key": "mail", "type": "send", "template": "welcome-email"},
    {"key": "pause", "type": "wait", "duration": "1d"},
    {"key": "again", "type": "send", "template": "welcome-email"},
]


@pytest.fixture
def journey(db):
    return live_journey("onb", STEPS, trigger={"event": "user.signed_up"}, goal_events=["user.activated"])


def test_the_data_migration_creates_one_beat_tick_however_often_it_runs():
    from django.apps import apps

    migration = importlib.import_module("journeys.migrations.0002_tick_periodic_task")
    migration.create_tick(apps, None)
    migration.create_tick(apps, None)

    task = PeriodicTask.objects.get(name="journeys: tick")
    assert task.task == "journeys.tick"
    assert (task.interval.every, task.interval.period) == (5, "seconds")


def test_the_tick_task_processes_events_and_advances(journey):
    from journeys.tasks import tick

    contact = ContactFactory()
    emit(contact, "user.signed_up", dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))

    counts = tick.run()

    assert (counts["events"], counts["advanced"], counts["webhooks"]) == (1, 1, 0)
    assert counts["support.first_response_sla"] == 0, "tick hooks of other apps run on the same tick"
    assert OutboundMessage.objects.filter(contact=contact).count() == 1


def test_the_journey_page_shows_a_diagram_with_live_counts(admin_client, journey, t0):
    for contact in ContactFactory.create_batch(3):
        emit(contact, "user.signed_up", t0)
    run(t0)

    page = admin_client.get(reverse("admin:journeys_journey_change", args=[journey.pk]))
    svg = admin_client.get(reverse("admin:journeys_journey_diagram", args=[journey.pk]))

    assert page.status_code == 200
    assert b"<svg" in page.content
    assert svg["Content-Type"] == "image/svg+xml"
    text = svg.content.decode()
    assert 'data-step="pause"' in text
    assert "waiting 3 · done 0 · converted 0" in text
    assert "waiting 0 · done 3 · sent 3 · converted 0" in text


def test_simulate_shows_the_timeline_and_writes_nothing(journey, t0):
    contact = ContactFactory(timezone="UTC")
    counts_before = {m: m.objects.count() for m in (Event, Enrollment, StepExecution, EntryDecision, OutboundMessage)}

    timeline = simulate(journey=journey, contact=contact, draft=False, events=[
        SimEvent("user.signed_up", t0), SimEvent("user.activated", t0 + dt.timedelta(hours=30))])

    assert {m: m.objects.count() for m in counts_before} == counts_before
    assert Journey.objects.get(pk=journey.pk).live_version.number == 1
    messages = [(e.at, e.channel, e.outcome) for e in timeline if e.kind == "message"]
    assert messages == [(t0, "email", "sent"), (t0 + dt.timedelta(days=1), "email", "sent")]
    assert [e.what for e in timeline if e.kind == "event"] == ["user.signed_up", "user.activated"]
    assert [e.kind for e in timeline if e.at == t0][:4] == ["event", "entry", "step", "message"], "causal order"


def test_simulate_names_the_rule_that_stopped_a_message(journey, t0):
    from journeys.models import CapRule

    CapRule.objects.create(name="one a week", max_messages=1, window_hours=168)
    contact = ContactFactory(timezone="UTC")

    timeline = simulate(journey=journey, contact=contact, draft=False, events=[SimEvent("user.signed_up", t0)])

    outcomes = [(e.outcome, e.reason) for e in timeline if e.kind == "message"]
    assert outcomes == [("sent", "no_consent_needed"), ("deferred", "frequency_cap")]


def test_the_simulate_page_runs_a_dry_run(admin_client, journey):
    contact = ContactFactory()
    url = reverse("admin:journeys_journey_simulate", args=[journey.pk])

    assert b"| user.signed_up | {}</textarea>" in admin_client.get(url).content, "the trigger's event, ready to edit"
    bad = admin_client.post(url, {"contact": contact.external_id, "events": "yesterday | x"})
    good = admin_client.post(url, {"contact": contact.external_id,
                                   "events": '2026-03-02T09:00:00Z | user.signed_up | {"plan": "pro"}'})

    assert b"expected &#x27;ISO time" in bad.content
    assert good.status_code == 200
    assert b"welcome-email (mail)" in good.content
    assert not Enrollment.objects.exists()


def test_why_not_explains_from_recorded_decisions(journey, t0, marketing_email):
    contact = ContactFactory()
    emit(contact, "user.activated", t0)
    run(t0)
    emit(contact, "user.signed_up", t0 - dt.timedelta(hours=1))
    run(t0 + dt.timedelta(minutes=1))
    promo = live_journey("promo", [{"key": "p", "type": "send", "template": "promo-email"}],
                         message_class="marketing", trigger={"event": "promo.go"})
    emit(contact, "promo.go", t0 + dt.timedelta(minutes=2))
    run(t0 + dt.timedelta(minutes=2))

    onboarding = selectors.why_not(contact=contact, journey=journey)
    marketing = selectors.why_not(contact=contact, journey=promo)

    assert onboarding[0].what.startswith("not enrolled on event")
    assert "an exit or goal event had already happened" in onboarding[0].why
    assert any("suppressed" in r.what and r.why.startswith("no_marketing_consent") for r in marketing)


def test_the_why_not_page_answers_for_a_contact(admin_client, journey):
    contact = ContactFactory()

    page = admin_client.get(reverse("admin:journeys_journey_why_not", args=[journey.pk]),
                            {"contact": contact.external_id})

    assert page.status_code == 200
    assert b"never considered" in page.content


def test_an_operator_can_pause_and_exit_but_a_marketer_cannot_exit(client, operator, marketer, journey, t0):
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)
    enrollment = Enrollment.objects.get()

    client.force_login(marketer)
    denied = client.post(reverse("admin:journeys_enrollment_exit_enrollment", args=[enrollment.pk]),
                         {"reason": "no", "_form_submitted": "1"})
    assert Enrollment.objects.get().status == EnrollmentStatus.ACTIVE
    assert denied.status_code in (302, 403)

    client.force_login(operator)
    client.post(reverse("admin:journeys_enrollment_exit_enrollment", args=[enrollment.pk]),
                {"reason": "asked", "_form_submitted": "1"})
    client.get(reverse("admin:journeys_journey_pause", args=[journey.pk]))

    assert Enrollment.objects.get().status == EnrollmentStatus.EXITED
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.PAUSED


def test_a_reviewer_approves_a_version_in_the_admin_but_not_one_they_edited(client, reviewer):
    journey = services.journey_create(key="rev", name="Rev", message_class="marketing", actor=reviewer,
                                      definition={"steps": STEPS})
    version = services.journey_publish(journey=journey, actor="mia")
    other = services.journey_create(key="rev2", name="Rev2", message_class="marketing", actor="mia",
                                    definition={"steps": STEPS})
    other_version = services.journey_publish(journey=other, actor="mia")
    client.force_login(reviewer)

    approve = "admin:journeys_journeyversion_approve"
    client.post(reverse(approve, args=[version.pk]), {"note": "", "_form_submitted": "1"})
    client.post(reverse(approve, args=[other_version.pk]), {"note": "ok", "_form_submitted": "1"})

    version.refresh_from_db()
    other_version.refresh_from_db()
    assert version.status == "in_review"
    assert other_version.status == "approved"


def test_marketers_change_only_journeys_granted_to_them_or_their_team(marketer, outsider, journey):
    theirs = services.journey_create(key="mine", name="Mine", message_class="marketing", actor=marketer,
                                     owner=marketer, definition={"steps": STEPS})
    team = Group.objects.create(name="lifecycle")
    shared = services.journey_create(key="shared", name="Shared", message_class="marketing", actor="x", team=team,
                                     definition={"steps": STEPS})
    marketer.groups.add(team)
    marketer = type(marketer).objects.get(pk=marketer.pk)

    changeable = set(selectors.journeys_for_user(marketer, action="change"))
    visible = set(selectors.journeys_for_user(marketer))

    assert changeable == {theirs, shared}
    assert journey in visible
    assert set(selectors.journeys_for_user(outsider)) == set()
    assign_perm("view_journey", outsider, journey)
    assert set(selectors.journeys_for_user(type(outsider).objects.get(pk=outsider.pk))) == {journey}


def test_activating_in_the_admin_reports_template_problems(admin_client):
    journey = services.journey_create(key="x", name="X", message_class="marketing", actor="mia", definition={
        "steps": [{"key": "a", "type": "send", "template": "ghost"}]})

    response = admin_client.get(reverse("admin:journeys_journey_publish", args=[journey.pk]), follow=True)

    assert b"unknown template" in response.content
    assert not journey.versions.exists()


@pytest.mark.parametrize("model", ["journey", "journeyversion", "enrollment", "event", "entrydecision", "caprule",
                                   "task", "webhookcall"])
def test_every_journeys_admin_list_renders(admin_client, journey, model):
    assert admin_client.get(reverse(f"admin:journeys_{model}_changelist")).status_code == 200


def test_roles_grant_journey_permissions():
    roles.sync_roles()
    reviewer_perms = set(Group.objects.get(name=roles.REVIEWER).permissions.values_list("codename", flat=True))
    operator_perms = set(Group.objects.get(name=roles.OPERATOR).permissions.values_list("codename", flat=True))

    assert "approve_journeyversion" in reviewer_perms
    assert {"pause_journey", "exit_enrollment", "change_caprule"} <= operator_perms
    assert "approve_journeyversion" not in operator_perms


def test_marketing_journeys_exit_when_the_contact_unsubscribed(t0, marketing_email):
    live_journey("promo", [
        {"key": "p1", "type": "send", "template": "promo-email"},
        {"key": "pause", "type": "wait", "duration": "1d"},
        {"key": "p2", "type": "send", "template": "promo-email"},
    ], message_class="marketing", trigger={"event": "promo.go"})
    contact = ContactFactory()
    grant(contact, "email", at=t0 - dt.timedelta(days=2))
    emit(contact, "promo.go", t0)
    run(t0)
    from tests.journeys.factories import revoke

    revoke(contact, "email", at=t0 + dt.timedelta(hours=1))
    run(t0 + dt.timedelta(days=1))

    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.status == EnrollmentStatus.EXITED
    assert enrollment.end_reason == "unsubscribed (consent_revoked)"


def test_manual_enrollment_from_the_admin_by_pasted_external_ids(admin_client, journey):
    first, second = ContactFactory(), ContactFactory()
    url = reverse("admin:journeys_journey_enroll", args=[journey.pk])

    refused = admin_client.post(url, {"external_ids": "ghost", "_form_submitted": "1"})
    admin_client.post(url, {"external_ids": f"external_id\n{first.external_id},{second.external_id}",
                            "_form_submitted": "1"})

    again = admin_client.post(url, {"external_ids": first.external_id, "_form_submitted": "1"}, follow=True)

    assert b"Unknown external ids: ghost" in refused.content
    assert set(Enrollment.objects.values_list("contact", flat=True)) == {first.pk, second.pk}
    assert "Entered: 0; refused by rule: 1" in again.content.decode()


def test_event_processing_costs_the_same_queries_for_ten_or_forty_events(journey, t0):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from journeys.events import process_events

    def queries_for(n: int, at: dt.datetime) -> int:
        for contact in ContactFactory.create_batch(n):
            emit(contact, "user.signed_up", at)
        with CaptureQueriesContext(connection) as captured:
            assert process_events(now=at) == n
        return len(captured)

    assert queries_for(10, t0) == queries_for(40, t0 + dt.timedelta(minutes=1))


def test_the_enrollment_list_costs_the_same_queries_for_few_or_many_rows(admin_client, journey, t0):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_with(n: int) -> int:
        for contact in ContactFactory.create_batch(n):
            emit(contact, "user.signed_up", t0)
        run(t0)
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse("admin:journeys_enrollment_changelist")).status_code == 200
        return len(captured)

    assert queries_with(2) == queries_with(20)


def test_an_unsubscribe_exits_marketing_journeys_on_that_channel_at_once(t0, marketing_email,
                                                                         django_capture_on_commit_callbacks):
    promo = live_journey("promo", [
        {"key": "pause", "type": "wait", "duration": "1d"},
        {"key": "p", "type": "send", "template": "promo-email"},
    ], message_class="marketing", trigger={"event": "promo.go"})
    live_journey("ops", [{"key": "pause", "type": "wait", "duration": "1d"}], trigger={"event": "promo.go"})
    contact = ContactFactory()
    grant(contact, "email", at=t0 - dt.timedelta(days=2))
    emit(contact, "promo.go", t0)
    run(t0)
    from tests.journeys.factories import revoke

    with django_capture_on_commit_callbacks(execute=True):
        revoke(contact, "sms", at=t0 + dt.timedelta(minutes=30))  # another channel: nothing happens
        revoke(contact, "email", at=t0 + dt.timedelta(hours=1))

    marketing = Enrollment.objects.get(contact=contact, journey=promo)
    assert (marketing.status, marketing.end_reason) == (EnrollmentStatus.EXITED, "unsubscribed from email marketing")
    assert Enrollment.objects.get(contact=contact, journey__key="ops").status == EnrollmentStatus.ACTIVE


def test_a_tick_costs_the_same_queries_for_five_or_twenty_waiting_enrollments(journey, t0):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from journeys.engine import advance

    live_journey("waits", [{"key": "a", "type": "wait", "duration": "1h"},
                           {"key": "b", "type": "wait_until", "local_time": "10:00"},
                           {"key": "c", "type": "split", "branches": [{"percent": 50, "next": "end"},
                                                                      {"percent": 50, "next": "end"}]}],
                 trigger={"event": "wait.go"})

    def queries_for(n: int, at: dt.datetime) -> int:
        for contact in ContactFactory.create_batch(n):
            emit(contact, "wait.go", at)
        run(at)
        with CaptureQueriesContext(connection) as captured:
            assert advance(now=at + dt.timedelta(hours=1)) == n
        run(at + dt.timedelta(days=1, hours=2))  # finish them
        assert not Enrollment.objects.filter(status="active", journey__key="waits").exists()
        return len(captured)

    assert queries_for(5, t0) == queries_for(20, t0 + dt.timedelta(days=2))


def test_a_marketer_opens_the_editor_of_their_journey_and_an_outsider_is_refused(client, marketer, outsider):
    mine = services.journey_create(key="mine", name="Mine", message_class="marketing", actor=marketer,
                                   owner=marketer, definition={"steps": STEPS})
    url = reverse("admin:journeys_journey_change", args=[mine.pk])

    client.force_login(marketer)
    allowed = client.get(url)
    added = client.get(reverse("admin:journeys_journey_add"))
    client.force_login(outsider)
    denied = client.get(url)

    assert allowed.status_code == 200
    assert b"settings_yaml" in allowed.content
    assert b'name="steps-0-key"' in allowed.content
    assert added.status_code == 200
    assert denied.status_code in (302, 403)


def test_a_tick_of_sends_costs_a_fixed_overhead_plus_the_same_per_send_at_any_size(t0):
    """What grows with the batch is channels.send's own work per message (its
    duplicate check, consent facts, template lookup and render, the outbox
    and delivery-event inserts, its savepoint) plus the one savepoint that
    isolates each enrollment; everything journeys reads is loaded per batch."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from journeys.engine import advance

    live_journey("sends", [{"key": "w", "type": "wait", "duration": "1h"},
                           {"key": "mail", "type": "send", "template": "welcome-email"}],
                 trigger={"event": "send.go"})

    def queries_for(n: int, at: dt.datetime) -> int:
        for contact in ContactFactory.create_batch(n):
            emit(contact, "send.go", at)
        run(at)
        with CaptureQueriesContext(connection) as captured:
            assert advance(now=at + dt.timedelta(hours=1)) == n
        assert OutboundMessage.objects.filter(created_at=at + dt.timedelta(hours=1)).count() == n
        return len(captured)

    three, six, twelve = (queries_for(n, t0 + dt.timedelta(days=day)) for n, day in ((3, 0), (6, 2), (12, 4)))
    per_send = (six - three) // 3
    assert six - three == 3 * per_send
    assert twelve - six == 6 * per_send
    assert per_send <= 17


def test_exit_and_goal_events_cost_the_same_queries_for_five_or_twenty(t0):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from journeys.events import process_events

    live_journey("exits", [{"key": "w", "type": "wait", "duration": "1d"}], trigger={"event": "exit.go"},
                 exit_events=["user.left"], goal_events=["user.bought"])

    def queries_for(n: int, at: dt.datetime) -> int:
        contacts = ContactFactory.create_batch(n)
        for contact in contacts:
            emit(contact, "exit.go", at)
        run(at)
        for index, contact in enumerate(contacts):
            emit(contact, "user.bought" if index % 2 else "user.left", at + dt.timedelta(minutes=1))
        with CaptureQueriesContext(connection) as captured:
            assert process_events(now=at + dt.timedelta(minutes=1)) == n
        ended = Enrollment.objects.filter(contact__in=contacts).values_list("status", flat=True)
        assert sorted(set(ended)) == [EnrollmentStatus.CONVERTED, EnrollmentStatus.EXITED]
        return len(captured)

    assert queries_for(5, t0) == queries_for(20, t0 + dt.timedelta(days=2))


def test_a_support_agent_reads_no_journey_enrollments_or_tasks_and_an_operator_does(client, agent, operator,
                                                                                      journey, t0):
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)
    pages = ["admin:journeys_enrollment_changelist", "admin:journeys_task_changelist",
             "admin:journeys_journey_changelist"]

    client.force_login(agent)
    denied = [client.get(reverse(page)).status_code for page in pages]
    client.force_login(operator)
    allowed = [client.get(reverse(page)).status_code for page in pages]

    assert all(code in (302, 403) for code in denied)
    assert not agent.has_perm("journeys.view_enrollment")
    assert not agent.has_perm("journeys.view_task")
    assert allowed == [200, 200, 200]


def test_a_read_only_journey_page_shows_the_journey_settings(client, reviewer):
    journey = services.journey_create(key="ro", name="Read only", message_class="marketing", actor="mia",
                                      definition={"exit_events": ["order.completed"], "steps": STEPS})
    client.force_login(reviewer)

    page = client.get(reverse("admin:journeys_journey_change", args=[journey.pk])).content.decode()

    assert 'name="settings_yaml"' not in page  # read-only: no field to edit
    assert "<pre>exit_events:\n- order.completed\n</pre>" in page
