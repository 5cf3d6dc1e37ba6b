"""Case-scoped enrollments: one open enrollment per journey, contact and
scope, so a contact's second case gets its own escalation."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from journeys import services
from journeys.models import Enrollment, EnrollmentStatus, EntryDecision
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

STEPS = [{"key": "remind", "type": "wait", "duration": "1d"}]


@pytest.fixture
def escalation(db):
    return live_journey("escalate", STEPS, exit_events=["case.resolved"], reentry="always")


def test_a_contacts_second_case_gets_its_own_enrollment(escalation, t0):
    contact = ContactFactory()

    first = services.enrollment_start(journey=escalation, contact=contact, context={"case_id": 1}, now=t0,
                                      scope_key="case:1")
    second = services.enrollment_start(journey=escalation, contact=contact, context={"case_id": 2}, now=t0,
                                       scope_key="case:2")
    again = services.enrollment_start(journey=escalation, contact=contact, context={"case_id": 1}, now=t0,
                                      scope_key="case:1")

    assert first is not None and second is not None and first.pk != second.pk
    assert (first.scope_key, second.scope_key, first.context) == ("case:1", "case:2", {"case_id": 1})
    assert again is None
    assert EntryDecision.objects.filter(outcome="already_enrolled").count() == 1


def test_without_a_scope_one_open_enrollment_per_contact_and_journey_still_holds(escalation, t0):
    contact = ContactFactory()

    first = services.enrollment_start(journey=escalation, contact=contact, context={}, now=t0)
    second = services.enrollment_start(journey=escalation, contact=contact, context={}, now=t0)

    assert first is not None and second is None
    with pytest.raises(IntegrityError), transaction.atomic():
        Enrollment.objects.create(journey=escalation, version=first.version, contact=contact, entered_at=t0)


def test_the_database_refuses_a_second_open_enrollment_in_the_same_scope(escalation, t0):
    contact = ContactFactory()
    first = services.enrollment_start(journey=escalation, contact=contact, context={}, now=t0, scope_key="case:7")

    with pytest.raises(IntegrityError), transaction.atomic():
        Enrollment.objects.create(journey=escalation, version=first.version, contact=contact, entered_at=t0,
                                  scope_key="case:7")


def test_an_exit_event_naming_a_scope_ends_only_that_cases_enrollment(escalation, t0):
    contact = ContactFactory()
    one = services.enrollment_start(journey=escalation, contact=contact, context={}, now=t0, scope_key="case:1")
    two = services.enrollment_start(journey=escalation, contact=contact, context={}, now=t0, scope_key="case:2")

    emit(contact, "case.resolved", t0 + dt.timedelta(minutes=5), scope_key="case:1")
    run(t0 + dt.timedelta(minutes=5))

    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.status, two.status) == (EnrollmentStatus.EXITED, EnrollmentStatus.ACTIVE)


def test_the_tick_applies_a_scoped_exit_event_to_its_own_case_only(escalation, t0):
    from journeys.engine import advance

    contact = ContactFactory()
    one = services.enrollment_start(journey=escalation, contact=contact, context={}, now=t0, scope_key="case:1")
    two = services.enrollment_start(journey=escalation, contact=contact, context={}, now=t0, scope_key="case:2")
    emit(contact, "case.resolved", t0 + dt.timedelta(minutes=1), scope_key="case:2")  # not processed yet

    advance(now=t0 + dt.timedelta(minutes=2))

    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.status, two.status) == (EnrollmentStatus.ACTIVE, EnrollmentStatus.EXITED)


def test_an_inactive_journey_starts_nothing(escalation, t0):
    services.journey_pause(journey=escalation, actor="otto")

    assert services.enrollment_start(journey=escalation, contact=ContactFactory(), context={}, now=t0,
                                     scope_key="case:1") is None
