"""Escalation policies on the journeys engine, suppression rules, and the
marketing hold while a case is open.

One scheduling mechanism: each phase of a policy (after opening, after
resolution) is published as an operational journey (`support-escalation-
<policy id>-<phase>`); a case starts an enrollment in it with the case in
the enrollment context, so the journeys tick (Beat, or `advance_journeys
--now`) runs its waits and sends. Sends are ordinary journey send steps;
assignment and notification steps are journey `task` steps whose Task row
support picks up (`on_journey_task_created`). Resolving or closing the case
ends the enrollment and cancels its messages not yet handed to a provider."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from consent import policy as gate
from consent.models import MessageClass
from support import services
from support.models import (
    ACTIVE_STATUSES,
    CaseEscalation,
    CaseEventKind,
    CaseSource,
    CaseStatus,
    Category,
    EscalationAction,
    EscalationPolicy,
    EscalationStep,
    Phase,
    Priority,
    SupportCase,
    SuppressionRule,
)

logger = logging.getLogger(__name__)

REPLY_EVENT = "message.replied"  # journeys.hooks turns every inbound reply into this event
JOURNEY_KEY_PREFIX = "support-escalation-"
STEP_MARKER = "support-escalation-step:"
_MARKER_RE = re.compile(re.escape(STEP_MARKER) + r"(\d+)")
HOLD_REASON = "support_case_open"
SYSTEM = "support:escalation"


# --- Policies as journeys ---------------------------------------------------------


def journey_key(policy: EscalationPolicy, phase: str) -> str:
    return f"{JOURNEY_KEY_PREFIX}{policy.pk}-{phase}"


def _step_key(step: EscalationStep) -> str:
    return f"{step.action}-{step.pk}"


def policy_definition(policy: EscalationPolicy, phase: str) -> dict | None:
    """The journey definition for one phase: relative waits between steps
    ordered by delay; a step that waits for no customer reply is guarded
    by a branch on the `message.replied` event since the case opened."""
    steps = list(policy.steps.filter(phase=phase).order_by("delay_minutes", "id"))
    if not steps:
        return None
    previous = [0] + [step.delay_minutes for step in steps]  # previous[i]: the delay before steps[i]

    def entry(i: int) -> str:
        step = steps[i]
        if step.delay_minutes > previous[i]:
            return f"wait-{step.pk}"
        return f"check-{step.pk}" if step.unless_customer_replied else _step_key(step)

    out: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        after = entry(i + 1) if i + 1 < len(steps) else "end"
        if step.delay_minutes > previous[i]:
            out.append({"key": f"wait-{step.pk}", "type": "wait", "duration": f"{step.delay_minutes - previous[i]}m"})
        if step.unless_customer_replied:
            out.append({"key": f"check-{step.pk}", "type": "branch",
                        "branches": [{"when": [{"seen": REPLY_EVENT}], "next": after}]})
        out.append(_action_step(step, after))
    return {"reentry": "always", "steps": out}


def _action_step(step: EscalationStep, after: str) -> dict[str, Any]:
    if step.action == EscalationAction.SEND:
        return {"key": _step_key(step), "type": "send", "template": step.template_key, "next": after}
    return {"key": _step_key(step), "type": "task", "title": f"Case escalation: {step.get_action_display()}",
            "description": f"{STEP_MARKER}{step.pk}", "next": after}


def escalation_policy_publish(*, policy: EscalationPolicy, actor: Any, now: dt.datetime | None = None) -> list:
    """Publish each phase's steps as a new version of the policy's journey.
    In-flight cases finish on the version they started (journeys' rule);
    with `operational` in JOURNEYS_APPROVAL_CLASSES a reviewer approves it."""
    from journeys.models import Journey
    from journeys.services import journey_create, journey_publish, journey_update

    versions = []
    for phase in Phase.values:
        definition = policy_definition(policy, phase)
        if definition is None:
            continue
        key = journey_key(policy, phase)
        journey = Journey.objects.filter(key=key).first()
        name = f"Support escalation: {policy.name} ({Phase(phase).label.lower()})"[:200]
        if journey is None:
            journey = journey_create(
                key=key, name=name, message_class=MessageClass.OPERATIONAL, actor=actor, definition=definition,
                priority=settings.SUPPORT_ESCALATION_JOURNEY_PRIORITY,
                description="Managed by support: edit the escalation policy, not this journey.",
            )
        elif journey.live_version_id and journey.live_version.definition == definition:
            continue
        else:
            journey = journey_update(journey=journey, actor=actor, definition=definition, name=name)
        versions.append(journey_publish(journey=journey, actor=actor, now=now))
    return versions


def policy_for(case: SupportCase) -> EscalationPolicy | None:
    """The most specific active policy: priority and category beat either alone, which beats neither."""
    candidates = EscalationPolicy.objects.filter(
        Q(priority="") | Q(priority=case.priority), Q(category="") | Q(category=case.category), active=True
    )
    ranked = sorted(candidates, key=lambda p: (bool(p.priority) + bool(p.category), bool(p.priority), -p.pk))
    return ranked[-1] if ranked else None


def expected_response(case: SupportCase) -> str:
    if case.first_response_due_at is None:
        return "as soon as we can"
    local = case.first_response_due_at.astimezone(gate.contact_timezone(case.contact))
    return f"by {local:%A %d %B, %H:%M} ({local.tzname()})"


def escalation_start(*, case: SupportCase, now: dt.datetime, phase: str = Phase.OPENED) -> CaseEscalation | None:
    """Enroll the case in its policy's journey for `phase`, scoped to the
    case (`case:<id>`), so each of a contact's cases escalates on its own.
    Runs in the caller's transaction; the next journeys tick runs the first step."""
    from journeys.models import Journey, JourneyStatus
    from journeys.services import enrollment_start

    policy = policy_for(case)
    if policy is None or not policy.steps.filter(phase=phase).exists():
        return None
    if CaseEscalation.objects.filter(case=case, phase=phase).exists():
        return None
    key = journey_key(policy, phase)
    journey = Journey.objects.filter(key=key, status=JourneyStatus.ACTIVE, live_version__isnull=False).first()
    if journey is None:
        services.event_add(case=case, kind=CaseEventKind.ESCALATION, actor=SYSTEM, now=now, new="not started",
                           detail=f"policy {policy.name}: journey {key} is not live (publish and approve it)")
        return None
    context = {"case_id": case.pk, "case_number": case.number, "subject": case.subject, "priority": case.priority,
               "category": case.category, "expected_response": expected_response(case)}
    enrollment = enrollment_start(journey=journey, contact=case.contact, context=context, now=now,
                                  scope_key=case_scope(case))
    if enrollment is None:
        services.event_add(case=case, kind=CaseEventKind.ESCALATION, actor=SYSTEM, now=now, new="not started",
                           detail=f"{key} refused the entry (its entry decisions say why)")
        return None
    services.event_add(case=case, kind=CaseEventKind.ESCALATION, actor=SYSTEM, now=now, new="started",
                       detail=f"policy {policy.name}, {Phase(phase).label.lower()}: journey {key}")
    return CaseEscalation.objects.create(case=case, policy=policy, phase=phase, journey_key=key,
                                         enrollment_id=enrollment.pk, started_at=now)


def case_scope(case: SupportCase) -> str:
    """The enrollment scope of a case's escalation: one open enrollment per journey, contact and case."""
    return f"case:{case.pk}"


def escalation_lock(*, case: SupportCase, phase: str | None = Phase.OPENED) -> list[int]:
    """Lock the case's running escalation enrollments (one phase, or all
    with None) before the case row. The journeys tick holds an enrollment
    row while its step takes the case row (escalate, assign); a resolve or
    close taking the case first and the enrollment second would deadlock
    with it. Both sides now go enrollments, then case. Returns their ids."""
    from journeys.models import Enrollment

    runs = CaseEscalation.objects.filter(case=case, stopped_at__isnull=True, enrollment_id__isnull=False)
    if phase is not None:
        runs = runs.filter(phase=phase)
    ids = list(runs.values_list("enrollment_id", flat=True))
    if ids:
        list(Enrollment.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    return ids


def escalation_stop(*, case: SupportCase, reason: str, now: dt.datetime, phase: str | None = Phase.OPENED) -> int:
    """End the case's escalation enrollments (one phase, or all with None)
    and cancel every message of theirs not yet handed to a provider,
    queued and deferred ones included. Returns how many were cancelled."""
    from channels.services import messages_cancel
    from journeys.engine import enrollments_end
    from journeys.models import EnrollmentStatus

    runs = CaseEscalation.objects.filter(case=case, stopped_at__isnull=True)
    if phase is not None:
        runs = runs.filter(phase=phase)
    ids = [pk for pk in runs.values_list("enrollment_id", flat=True) if pk]
    if not ids:
        return 0
    enrollments_end(enrollment_ids=ids, status=EnrollmentStatus.EXITED, reason=reason, now=now)
    # A completed enrollment may still have its last message queued.
    cancelled = messages_cancel(queryset_filter={"origin_enrollment_id__in": ids}, reason=reason, now=now)
    runs.update(stopped_at=now, stop_reason=reason[:200])
    services.event_add(case=case, kind=CaseEventKind.SUPPRESSION, actor=SYSTEM, now=now, new=str(cancelled),
                       detail=f"escalation stopped ({reason}); {cancelled} pending message(s) cancelled")
    return cancelled


# --- Steps that need a person (journey task steps) ------------------------------------


def on_journey_task_created(sender, instance, created: bool, **kwargs) -> None:
    """A journey `task` step ran. An escalation step acts on its case; any
    other journey's task ("open a case for a human") becomes a case."""
    if not created:
        return
    match = _MARKER_RE.search(instance.description or "")
    now = instance.created_at or timezone.now()
    try:
        # A savepoint: this runs inside the journeys tick's batch, which a
        # failure here must not roll back (it would block every journey).
        with transaction.atomic():
            if match:
                escalation_step_run(step_id=int(match.group(1)), enrollment_id=instance.enrollment_id, now=now)
            else:
                case_from_journey_task(task=instance, now=now)
            # Done here: the case (or the escalation it acted on) is where a person follows up.
            _task_done(instance, now)
    except Exception:
        # The journey Task stays open in the Journeys admin for a person to pick up.
        logger.exception("support could not act on journey task %s", instance.pk)


def _task_done(task, now: dt.datetime) -> None:
    from journeys.services import IllegalTransition, task_complete

    # Already done: a person closed it first, or the hook ran twice.
    with contextlib.suppress(IllegalTransition):
        task_complete(task=task, actor=SYSTEM, now=now)


def case_from_journey_task(*, task, now: dt.datetime) -> SupportCase | None:
    if SupportCase.objects.filter(journey_task_id=task.pk).exists():
        return None
    journey = task.journey.key if task.journey_id else "journey"
    subject = task.title if not task.description else f"{task.title}: {task.description}"
    return services.case_open(
        contact=task.contact, subject=subject, category=Category.OTHER, priority=Priority.NORMAL,
        source=CaseSource.JOURNEY_STEP, actor=f"journey:{journey}", now=now, journey_task_id=task.pk,
    )


def escalation_step_run(*, step_id: int, enrollment_id: int | None, now: dt.datetime) -> str:
    """Do what an escalation task step says, for the case behind the
    enrollment. Returns what happened (also on the case timeline)."""
    run = CaseEscalation.objects.select_related("case__team__supervisor", "case__assigned_agent",
                                                 "case__contact").filter(enrollment_id=enrollment_id).first()
    step = EscalationStep.objects.filter(pk=step_id).first()
    if run is None or step is None:
        logger.warning("escalation step %s for enrollment %s has no case", step_id, enrollment_id)
        return "no case"
    case = run.case
    if run.phase == Phase.OPENED and case.status not in ACTIVE_STATUSES:
        outcome = f"skipped: the case is {case.status}"
    elif step.action == EscalationAction.ESCALATE:
        outcome = _escalate(case, now)
    else:
        sent = services.notify_case_owner(case=case, text=f"{case.number} needs attention: {case.subject}", now=now)
        outcome = f"notified {sent[0].recipient.get_username()}" if sent else "nobody to notify"
    services.event_add(case=case, kind=CaseEventKind.ESCALATION, actor=SYSTEM, now=now,
                       new=step.get_action_display()[:100], detail=f"+{step.delay_minutes} min: {outcome}")
    return outcome


def _escalate(case: SupportCase, now: dt.datetime) -> str:
    if case.first_response_at is not None:
        return "skipped: an agent has already responded"
    if case.status != CaseStatus.ESCALATED:
        services.case_escalate(case=case, actor=SYSTEM, reason="no response within the escalation time", now=now)
    agent = case.assigned_agent or pick_agent(case)
    if agent is not None:
        if agent != case.assigned_agent:
            services.case_assign(case=case, team=case.team, agent=agent, actor=SYSTEM, now=now,
                                 reason="escalation", notify_agent=False)
        services.notify(recipient=agent, case=case, now=now,
                        text=f"{case.number} escalated to you: no response yet ({case.subject})")
        return f"assigned to {agent.get_username()} and notified"
    supervisor = case.team.supervisor if case.team else None
    if supervisor is not None:
        services.notify(recipient=supervisor, case=case, now=now,
                        text=f"{case.number} escalated in the {case.team.name} queue: no agent available")
    return f"left in the {case.team.name if case.team else 'unassigned'} queue" + (
        f", {supervisor.get_username()} notified" if supervisor else ""
    )


def pick_agent(case: SupportCase) -> User | None:
    """The active member of the case's team with the fewest active cases."""
    if case.team is None:
        return None
    return (
        User.objects.filter(groups=case.team.group, is_active=True, is_staff=True)
        .annotate(load=Count("support_cases", filter=Q(support_cases__status__in=ACTIVE_STATUSES)))
        .order_by("load", "username")
        .first()
    )


# --- Suppression rules and the marketing hold ------------------------------------------------


def suppression_rules_apply(*, case: SupportCase, trigger: str, now: dt.datetime) -> int:
    """Case events end the contact's enrollments in the journeys the active
    rules name and cancel their pending messages. Returns messages cancelled."""
    rules = SuppressionRule.objects.filter(active=True, on=trigger).filter(Q(category="") | Q(category=case.category))
    total = 0
    for rule in rules:
        cancelled = _suppress_journeys(case, rule, now)
        total += cancelled
        services.event_add(case=case, kind=CaseEventKind.SUPPRESSION, actor=f"rule:{rule.name}", now=now,
                           new=str(cancelled), detail=f"{rule.name}: journeys {rule.journey_key_prefix}* "
                           f"stopped for this contact, {cancelled} pending message(s) cancelled")
    return total


def _suppress_journeys(case: SupportCase, rule: SuppressionRule, now: dt.datetime) -> int:
    from channels.models import OriginKind
    from channels.services import messages_cancel
    from journeys.engine import enrollments_end
    from journeys.models import OPEN_ENROLLMENT, Enrollment, EnrollmentStatus, JourneyVersion

    journeys = Q(journey__key__startswith=rule.journey_key_prefix) & ~Q(journey__key__startswith=JOURNEY_KEY_PREFIX)
    reason = f"suppression rule {rule.name}: case {case.number} {rule.on}"
    open_ids = list(
        Enrollment.objects.filter(journeys, contact=case.contact, status__in=OPEN_ENROLLMENT)
        .values_list("pk", flat=True)
    )
    enrollments_end(enrollment_ids=open_ids, status=EnrollmentStatus.EXITED, reason=reason, now=now)
    versions = list(JourneyVersion.objects.filter(journeys).values_list("pk", flat=True))
    return messages_cancel(
        queryset_filter={"contact_id": case.contact_id, "origin_kind": OriginKind.JOURNEY,
                         "origin_journey_version_id__in": versions},
        reason=reason, now=now,
    )


@dataclass
class _Holds:
    """Who is on hold at one instant: contact id -> (case number, status)."""

    now: dt.datetime
    statuses: tuple[str, ...]
    cases: dict[int, tuple[str, str]]


# A batch (a journeys tick, a deferred-message release) passes one `now` to
# every send, so the holds are loaded once per instant, not once per send.
_holds: contextvars.ContextVar[_Holds | None] = contextvars.ContextVar("support_marketing_holds", default=None)


def holds_at(now: dt.datetime) -> dict[int, tuple[str, str]]:
    """Contacts with a case in SUPPORT_MARKETING_HOLD_STATUSES, in one query
    per instant (the newest case names the hold)."""
    statuses = tuple(settings.SUPPORT_MARKETING_HOLD_STATUSES)
    cached = _holds.get()
    if cached is not None and cached.now == now and cached.statuses == statuses:
        return cached.cases
    rows = (
        SupportCase.objects.filter(status__in=statuses).order_by("opened_at", "pk")
        .values_list("contact_id", "number", "status")
    )
    cases = {contact_id: (number, status) for contact_id, number, status in rows}
    _holds.set(_Holds(now=now, statuses=statuses, cases=cases))
    return cases


def holds_forget(*args: Any, **kwargs: Any) -> None:
    """A case was saved or moved: the next guard call reloads (a post_save receiver)."""
    _holds.set(None)


def marketing_hold_guard(*, contact, channel: str, message_class: str, origin, now: dt.datetime):
    """A channels send guard: while the contact has a case in one of
    SUPPORT_MARKETING_HOLD_STATUSES, marketing is deferred with the case as
    the reason; the gate checks again when channels releases it."""
    if message_class != MessageClass.MARKETING or not settings.SUPPORT_MARKETING_HOLD_STATUSES:
        return None
    case = holds_at(now).get(contact.pk)
    if case is None:
        return None
    number, status = case
    until = now + dt.timedelta(minutes=settings.SUPPORT_MARKETING_HOLD_RECHECK_MINUTES)
    return gate.Decision(gate.Outcome.DEFER, HOLD_REASON, until=until, detail=f"support case {number} is {status}")
