"""The admin home is the operations dashboard, read from the rollups; the
journey page shows its funnel and lift from them too."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from analytics import services
from analytics.models import ChannelDay, JourneyDay, SupportDay

pytestmark = pytest.mark.django_db


def seed_rollups(days: int, journey=None) -> None:
    today = services.local_today()
    for n in range(days):
        day = today - dt.timedelta(days=n)
        ChannelDay.objects.create(day=day, channel="sms", provider="twilio", sent=100, delivered=90, failed=5,
                                  bounced=5, decisions={"suppressed": {"quiet_hours": 3}}, suppressed=3, cost=1)
        ChannelDay.objects.create(day=day, channel="sms", provider="", opt_outs=2)
        SupportDay.objects.create(day=day, source="sms", category="billing", opened=4, sla_breaches=1,
                                  first_responses=2, first_response_minutes={"30": 1, "90": 1})
        if journey:
            recent = n < 7
            JourneyDay.objects.create(day=day, journey=journey, version=journey.live_version, entered=50,
                                      converted=10 if recent else 25, control_entered=50, control_converted=5)
            JourneyDay.objects.create(day=day, journey=journey, version=journey.live_version, step_key="mail",
                                      entered=50, converted=10, messages={"delivered": 45})


def test_operators_land_on_charts_and_numbers_of_the_chosen_days(client, operator, settings):
    from tests.journeys.factories import live_journey, template

    template("welcome-email", "email")
    journey = live_journey("falling", [{"key": "mail", "type": "send", "template": "welcome-email"}],
                           trigger={"event": "user.signed_up"})
    seed_rollups(14, journey)
    client.force_login(operator)
    page = client.get(reverse("admin:index")).content.decode()
    assert 'id="operations-dashboard"' in page
    assert page.count('data-type="line"') == 2 and page.count('data-type="bar"') == 1
    assert "1400" in page  # sent over the default 14 days
    assert "90.0 %" in page  # delivery rate
    assert "quiet_hours: 42" in page
    assert "Falling" in page and "20.0 %" in page and "50.0 %" in page  # 10/50 now against 25/50 before
    assert "median 30 min" in page

    today = services.local_today()
    page = client.get(reverse("admin:index"), {"from": today.isoformat(), "to": today.isoformat()}).content.decode()
    assert ">100<" in page

    page = client.get(reverse("admin:index"), {"from": "yesterday"}).content.decode()
    assert "Dates are written YYYY-MM-DD" in page and 'id="operations-dashboard"' in page


def test_the_dashboard_reads_rollups_in_a_flat_number_of_queries(client, operator):
    client.force_login(operator)
    seed_rollups(2)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("admin:index"))
    # More days, providers and categories: the same queries.
    ChannelDay.objects.filter(provider="twilio").update(provider="vonage")
    ChannelDay.objects.filter(provider="").update(channel="email")
    SupportDay.objects.update(category="other")
    seed_rollups(5)
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("admin:index"))
    assert len(many) == len(few)


def test_people_without_the_dashboard_permission_see_only_their_apps(client, agent):
    client.force_login(agent)
    page = client.get(reverse("admin:index")).content.decode()
    assert 'id="operations-dashboard"' not in page


def test_the_journey_page_shows_its_funnel_and_lift(client, operator):
    from tests.journeys.factories import live_journey, template

    template("welcome-email", "email")
    journey = live_journey("funnel", [{"key": "mail", "type": "send", "template": "welcome-email"}],
                           trigger={"event": "user.signed_up"})
    seed_rollups(3, journey)
    client.force_login(operator)
    page = client.get(reverse("admin:journeys_journey_change", args=[journey.pk])).content.decode()
    assert 'id="journey-funnel"' in page and "<td>mail</td><td>150</td>" in page
    assert "Newcombe hybrid score" in page and "treatment 30/150" in page
