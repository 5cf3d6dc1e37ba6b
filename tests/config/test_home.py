"""/admin/ lands each role on its own work: operators on the dashboard,
agents on their case queue, marketers on their journeys and drafts,
reviewers on what waits for their review and the recent audit exports."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics.models import AuditExport
from journeys.models import Journey
from templates import services
from tests.templates.factories import draft_version

pytestmark = pytest.mark.django_db

HOME = "/admin/"


@pytest.fixture
def sms_draft(marketer):
    template = services.template_create(key="reminder-sms", name="Reminder SMS", channel="sms",
                                        message_class="operational", actor=marketer)
    return draft_version(template, author=marketer, content={"body": "See you soon"}, locales=("en",))


def test_operators_land_on_the_operations_dashboard(client, operator):
    client.force_login(operator)

    assert 'id="operations-dashboard"' in client.get(HOME).content.decode()


def test_agents_land_on_their_case_queue(client, agent):
    client.force_login(agent)

    response = client.get(HOME)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:support_supportcase_changelist")


def test_marketers_land_on_their_journeys_and_drafts(client, marketer, sms_draft):
    Journey.objects.create(key="welcome", name="Welcome series", owner=marketer)
    Journey.objects.create(key="others", name="Someone else's", owner=None)
    client.force_login(marketer)

    page = client.get(HOME).content.decode()

    assert "Your journeys" in page and "Welcome series" in page and "Someone else" not in page
    assert "Journey drafts" in page
    assert "Your template drafts" in page and "reminder-sms v1" in page
    assert reverse("admin:journeys_journey_add") in page
    assert "Review queue" not in page and 'id="operations-dashboard"' not in page


def test_reviewers_land_on_what_waits_for_their_review_and_recent_exports(client, reviewer, marketer, sms_draft):
    services.version_submit(version=sms_draft, actor=marketer)
    AuditExport.objects.create(week="2026-W48", requested_at=timezone.now() - dt.timedelta(days=1))
    client.force_login(reviewer)

    page = client.get(HOME).content.decode()

    assert "Templates waiting for your review" in page and "reminder-sms v1" in page
    assert "Recent audit exports" in page and "Week 2026-W48" in page
    assert "Your template drafts" not in page and "New journey" not in page


def test_the_dashboard_keeps_its_own_address_for_everyone_allowed(client, marketer):
    client.force_login(marketer)

    assert 'id="operations-dashboard"' in client.get(reverse("dashboard")).content.decode()
