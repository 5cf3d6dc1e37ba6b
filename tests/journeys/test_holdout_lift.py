"""Holdout lift: control contacts are enrolled and tracked to the goal but
sent nothing; treatment and control conversion are compared per journey and
per version, with a two-proportion z-test."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from channels.models import OutboundMessage
from journeys import selectors, services
from journeys.events import in_holdout
from journeys.models import Enrollment, EnrollmentStatus, Journey
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import AUTHOR, REVIEWER, live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("email_template")]

STEPS = [{"key": "mail", "type": "send", "template": "welcome-email"},
         {"key": "pause", "type": "wait", "duration": "3d"}]


def test_the_p_value_is_the_two_sided_pooled_two_proportion_z_test():
    assert selectors.two_proportion_p_value(20, 40, 10, 40) == pytest.approx(0.020921, abs=1e-6)
    assert selectors.two_proportion_p_value(10, 40, 20, 40) == pytest.approx(0.020921, abs=1e-6)
    assert selectors.two_proportion_p_value(30, 100, 30, 100) == pytest.approx(1.0)
    assert selectors.two_proportion_p_value(0, 10, 0, 5) == 1.0
    assert selectors.two_proportion_p_value(3, 10, 0, 0) is None


def test_rates_and_lifts_are_none_where_there_is_nothing_to_divide_by():
    lift = selectors.Lift(treatment_enrolled=10, treatment_converted=4, control_enrolled=5, control_converted=0)

    assert (lift.treatment_rate, lift.control_rate) == (0.4, 0.0)
    assert lift.absolute_lift == pytest.approx(0.4)
    assert lift.relative_lift is None
    assert selectors.Lift().p_value is None


def enroll_and_convert(journey: Journey, contacts, at: dt.datetime, converting: set[str]) -> None:
    for contact in contacts:
        emit(contact, "user.signed_up", at)
    run(at)
    for contact in contacts:
        if contact.external_id in converting:
            emit(contact, "user.bought", at + dt.timedelta(hours=2))
    run(at + dt.timedelta(hours=2))


def split(journey: Journey, contacts, percent: int) -> tuple[list, list]:
    control = [c for c in contacts if in_holdout(journey.key, c.external_id, percent)]
    return [c for c in contacts if c not in control], control


@pytest.fixture
def journey(db):
    return live_journey("lift", STEPS, trigger={"event": "user.signed_up"}, goal_events=["user.bought"],
                        holdout_percent=50, reentry="always")


def test_a_holdout_run_measures_lift_per_journey_and_per_version(journey, t0):
    contacts = ContactFactory.create_batch(40)
    treatment, control = split(journey, contacts, 50)
    assert len(treatment) >= 8 and len(control) >= 8, "the seeded split gives both groups people"
    converting = {c.external_id for c in treatment[: len(treatment) // 2]} | {c.external_id for c in control[:2]}

    enroll_and_convert(journey, contacts, t0, converting)

    assert not OutboundMessage.objects.filter(origin_enrollment_id__in=Enrollment.objects.filter(
        is_control=True).values("pk")).exists(), "control contacts are sent nothing"
    assert OutboundMessage.objects.filter(contact__in=treatment).count() == len(treatment)
    assert Enrollment.objects.filter(status=EnrollmentStatus.CONVERTED, is_control=True).count() == 2
    lift = selectors.holdout_lift(journey)
    expected = selectors.Lift(len(treatment), len(treatment) // 2, len(control), 2)
    assert lift.overall == expected
    assert lift.by_version == {1: expected}
    assert lift.overall.absolute_lift == pytest.approx((len(treatment) // 2) / len(treatment) - 2 / len(control))
    assert lift.overall.p_value == selectors.two_proportion_p_value(len(treatment) // 2, len(treatment), 2,
                                                                     len(control))

    # Version 2 goes live; new enrollments count under it, old ones stay under v1.
    services.journey_update(journey=journey, actor=AUTHOR, definition={
        **journey.definition, "steps": [STEPS[0], {"key": "pause", "type": "wait", "duration": "5d"}]})
    services.journey_version_approve(version=services.journey_publish(journey=journey, actor=AUTHOR),
                                     actor=REVIEWER)
    later = ContactFactory.create_batch(10)
    treatment_2, control_2 = split(journey, later, 50)
    enroll_and_convert(journey, later, t0 + dt.timedelta(days=1), {c.external_id for c in later})

    lift = selectors.holdout_lift(journey)
    assert lift.by_version[1] == expected
    assert lift.by_version[2] == selectors.Lift(len(treatment_2), len(treatment_2), len(control_2), len(control_2))
    assert lift.overall == expected + lift.by_version[2]


def test_the_journey_page_shows_the_lift(admin_client, t0):
    journey = live_journey("lift", STEPS, trigger={"event": "user.signed_up"}, goal_events=["user.bought"],
                           holdout_percent=50)
    contacts = ContactFactory.create_batch(20)
    treatment, control = split(journey, contacts, 50)
    enroll_and_convert(journey, contacts, t0, {treatment[0].external_id, treatment[1].external_id})

    page = admin_client.get(reverse("admin:journeys_journey_change", args=[journey.pk])).content.decode()

    rate = 200 / len(treatment)
    assert f"treatment 2/{len(treatment)} converted ({rate:.1f} %)" in page
    assert f"control 0/{len(control)} (0.0 %)" in page
    assert f"lift +{rate:.1f} points" in page
    p_value = selectors.two_proportion_p_value(2, len(treatment), 0, len(control))
    assert f"p = {p_value:.3g}" in page


def test_a_journey_without_a_holdout_says_so(admin_client, t0):
    journey = live_journey("plain", STEPS, trigger={"event": "user.signed_up"})

    page = admin_client.get(reverse("admin:journeys_journey_change", args=[journey.pk])).content.decode()

    assert "No holdout enrollments yet" in page
