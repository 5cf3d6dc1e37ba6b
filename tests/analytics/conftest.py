"""A generated week of raw rows (messages with their status events, consent
changes, enrollments and step executions, cases) written straight to the
tables, and the same facts kept in memory to check the rollups against."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from channels.models import DeliveryEvent, OutboundMessage
from consent.models import ConsentRecord
from journeys.models import Enrollment, StepExecution
from support.models import CaseEvent, SupportCase
from tests.consent.factories import ContactFactory
from tests.journeys.factories import live_journey, template

ZONE = "America/New_York"
WEEK_START = dt.datetime(2026, 11, 16, 5, 0, tzinfo=dt.UTC)  # Monday 00:00 in New York


@dataclass
class Week:
    journey: object
    version: object
    messages: list = field(default_factory=list)  # (created_at, channel, provider, moves[(at, old, new, detail)])
    enrollments: list = field(default_factory=list)
    executions: list = field(default_factory=list)
    revocations: list = field(default_factory=list)
    cases: list = field(default_factory=list)


def _at(rng: random.Random) -> dt.datetime:
    return WEEK_START + dt.timedelta(seconds=rng.randrange(7 * 86400))


@pytest.fixture
def week(db, settings) -> Week:
    settings.WORKSPACE_TIMEZONE = ZONE
    rng = random.Random(2047)
    template("welcome-email", "email")
    journey = live_journey("week", [{"key": "mail", "type": "send", "template": "welcome-email"},
                                    {"key": "pause", "type": "wait", "duration": "3d"}],
                           trigger={"event": "user.signed_up"}, goal_events=["user.bought"])
    version = journey.live_version
    contacts = ContactFactory.create_batch(30)
    generated = Week(journey, version)
    events = []
    for n in range(300):
        created = _at(rng)
        channel, provider = rng.choice([("email", "postmark"), ("sms", "twilio"), ("sms", "vonage")])
        path = rng.choice(["delivered", "failed", "bounced", "suppressed", "deferred", "queued"])
        moves = [(created, "", "queued", "allowed")]
        if path == "suppressed":
            moves = [(created, "", "suppressed", rng.choice(["quiet_hours: 22:00", "consent_missing: sms/marketing"]))]
        elif path == "deferred":
            moves = [(created, "", "deferred", "quiet_hours: until 08:00"),
                     (created + dt.timedelta(hours=9), "deferred", "queued", "released")]
        elif path != "queued":
            sent = created + dt.timedelta(minutes=rng.randrange(1, 600))
            moves += [(sent, "queued", "sending", ""), (sent, "sending", "sent", "")]
            moves.append((sent + dt.timedelta(minutes=3), "sent", path, ""))
        message = OutboundMessage.objects.create(
            contact=rng.choice(contacts), channel=channel, provider=provider, origin_kind="journey",
            origin_journey_version_id=version.pk, origin_step_key="mail", idempotency_key=f"gen-{n}",
            status=moves[-1][2], status_changed_at=moves[-1][0], created_at=created,
            sent_at=next((at for at, _, new, _ in moves if new == "sent"), None),
            cost_estimate=Decimal("0.01") if path in ("delivered", "failed", "bounced") else None,
            first_opened_at=created + dt.timedelta(hours=1) if path == "delivered" and n % 3 == 0 else None)
        events += [DeliveryEvent(message=message, kind="status", old_status=old, status=new, detail=detail,
                                 received_at=at) for at, old, new, detail in moves]
        generated.messages.append((created, channel, provider, moves, message))
    DeliveryEvent.objects.bulk_create(events)
    for n in range(80):
        entered = _at(rng)
        status = rng.choice(["active", "converted", "exited", "completed"])
        ended = entered + dt.timedelta(minutes=rng.randrange(5, 3000)) if status != "active" else None
        enrollment = Enrollment.objects.create(journey=journey, version=version, contact=contacts[n % 30],
                                               status=status, is_control=n % 5 == 0, entered_at=entered,
                                               ended_at=ended, scope_key=f"gen-{n}")
        generated.enrollments.append(enrollment)
        if not enrollment.is_control:
            executed = entered + dt.timedelta(minutes=1)
            StepExecution.objects.create(enrollment=enrollment, step_key="mail", step_type="send",
                                         idempotency_key=f"gen-{n}-mail", outcome="sent", executed_at=executed)
            generated.executions.append((executed, enrollment))
    for n in range(20):
        at = _at(rng)
        ConsentRecord.objects.create(contact=contacts[n], channel=rng.choice(["email", "sms"]), purpose="marketing",
                                     status="revoked", source="keyword", recorded_at=at)
        generated.revocations.append((at, ConsentRecord.objects.latest("id").channel))
    for n in range(25):
        opened = _at(rng)
        answered = opened + dt.timedelta(minutes=rng.randrange(1, 500)) if n % 4 else None
        resolved = opened + dt.timedelta(minutes=rng.randrange(600, 3000)) if n % 3 == 0 else None
        case = SupportCase.objects.create(contact=contacts[n], subject="help", source=rng.choice(["sms", "email"]),
                                          category=rng.choice(["billing", "other"]), opened_at=opened,
                                          first_response_at=answered, resolved_at=resolved, status_changed_at=opened)
        if answered:
            CaseEvent.objects.create(case=case, kind="agent_reply", at=answered)
        if n % 5 == 0:
            CaseEvent.objects.create(case=case, kind="sla_breach", at=opened + dt.timedelta(hours=2))
        generated.cases.append(case)
    return generated


@pytest.fixture(scope="session")
def celery_includes():
    return ["analytics.tasks"]
