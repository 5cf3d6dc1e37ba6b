"""Reads that need thought: who may see and change which journeys, the live
counts behind the diagram, and "why not" from recorded decisions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from consent.models import Contact
from journeys.models import (
    OPEN_ENROLLMENT,
    Enrollment,
    EnrollmentStatus,
    EntryDecision,
    EntryOutcome,
    Journey,
    JourneyVersion,
    StepExecution,
    StepOutcome,
)

APPROVE_PERM = "journeys.approve_journeyversion"


def _is_user(user) -> bool:
    return getattr(user, "is_authenticated", False) and getattr(user, "is_active", False)


def journeys_for_user(user, *, action: str = "view") -> QuerySet[Journey]:
    """Journeys this user may see (view: any with the role's permission, or
    granted per object) or change (the role's permission AND a grant on the
    journey: owner, user or team)."""
    if not _is_user(user):
        return Journey.objects.none()
    if user.is_superuser:
        return Journey.objects.all()
    if action == "view" and user.has_perm("journeys.view_journey"):
        return Journey.objects.all()
    if action == "change" and not user.has_perm("journeys.change_journey"):
        return Journey.objects.none()
    granted = get_objects_for_user(user, f"journeys.{action}_journey", klass=Journey, accept_global_perms=False)
    return Journey.objects.filter(Q(pk__in=granted.values("pk")) | Q(owner=user))


def can_change(user, journey: Journey) -> bool:
    return journeys_for_user(user, action="change").filter(pk=journey.pk).exists()


def can_publish(user, journey: Journey) -> bool:
    return can_change(user, journey) and user.has_perm("journeys.publish_journey")


def approval_refusal(user, version: JourneyVersion) -> str:
    """Why this user may not approve this version; '' when they may."""
    from consent.services import actor_label

    if not _is_user(user) or not user.has_perm(APPROVE_PERM):
        return "only a compliance reviewer may approve or reject a journey version"
    if actor_label(user) in version.editors or actor_label(user) == version.created_by:
        return f"{user.get_username()} edited this version and may not review it"
    return ""


# --- Live counts -----------------------------------------------------------------------


@dataclass(frozen=True)
class StepCounts:
    waiting: int = 0
    executed: int = 0
    sent: int = 0
    converted: int = 0


def step_counts(journey: Journey) -> dict[str, StepCounts]:
    """Per step key: open enrollments there now, executions, messages queued
    and enrollments that went on to convert. Three aggregate queries."""
    waiting = dict(
        Enrollment.objects.filter(journey=journey, status__in=OPEN_ENROLLMENT)
        .values_list("current_step").annotate(n=Count("pk"))
    )
    executions = StepExecution.objects.filter(enrollment__journey=journey).values("step_key").annotate(
        executed=Count("pk"), sent=Count("pk", filter=Q(outcome=StepOutcome.SENT)),
    )
    converted = dict(
        StepExecution.objects.filter(enrollment__journey=journey, enrollment__status=EnrollmentStatus.CONVERTED)
        .values_list("step_key").annotate(n=Count("enrollment", distinct=True))
    )
    counts = {}
    for row in executions:
        key = row["step_key"]
        counts[key] = StepCounts(waiting.get(key, 0), row["executed"], row["sent"], converted.get(key, 0))
    for key, n in waiting.items():
        counts.setdefault(key, StepCounts(waiting=n))
    return counts


def journey_totals(journey: Journey) -> dict[str, int]:
    rows = Enrollment.objects.filter(journey=journey).values_list("status").annotate(n=Count("pk"))
    totals = {status: 0 for status in EnrollmentStatus.values}
    totals.update(dict(rows))
    totals["control"] = Enrollment.objects.filter(journey=journey, is_control=True).count()
    return totals


# --- Why not ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    at: dt.datetime | None
    what: str
    why: str


ENTRY_EXPLANATIONS = {
    EntryOutcome.CONDITION_FALSE: "an entry condition was false",
    EntryOutcome.REENTRY_RULE: "the re-entry rule kept them out",
    EntryOutcome.ALREADY_ENROLLED: "they were already in this journey",
    EntryOutcome.EXITED_BEFORE_ENTRY: "an exit or goal event had already happened",
    EntryOutcome.JOURNEY_NOT_ACTIVE: "the journey was not active",
}


def why_not(*, contact: Contact, journey: Journey, limit: int = 50) -> list[Reason]:
    """What was recorded about this contact and journey, newest first: entry
    decisions, how each enrollment ended, and every step that did not send
    (with the gate's or guard's reason on the message)."""
    from channels.models import OutboundMessage

    reasons: list[Reason] = []
    for decision in EntryDecision.objects.filter(contact=contact, journey=journey)[:limit]:
        if decision.outcome == EntryOutcome.ENTERED:
            continue
        event = f"event #{decision.event_id}" if decision.event_id else "manual enrollment"
        why = ENTRY_EXPLANATIONS.get(decision.outcome, decision.outcome)
        detail = f"{why}: {decision.detail}" if decision.detail else why
        reasons.append(Reason(decision.decided_at, f"not enrolled on {event}", detail))
    enrollments = list(Enrollment.objects.filter(contact=contact, journey=journey).select_related("version")[:limit])
    for enrollment in enrollments:
        reasons += _enrollment_reasons(enrollment)
    held = OutboundMessage.objects.filter(origin_enrollment_id__in=[e.pk for e in enrollments]).exclude(
        status__in=("queued", "sending", "sent", "delivered")
    )
    for message in held.order_by("-created_at")[:limit]:
        reasons.append(Reason(
            message.created_at, f"step {message.origin_step_key}: {message.channel} message {message.status}",
            f"{message.decision_reason}: {message.decision_detail}".rstrip(": "),
        ))
    if not reasons and not enrollments:
        reasons.append(Reason(None, "never considered", "no event of this journey's trigger was recorded for them"))
    return sorted(reasons, key=lambda r: r.at or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)


def _enrollment_reasons(enrollment: Enrollment) -> list[Reason]:
    label = f"enrollment #{enrollment.pk} (v{enrollment.version.number})"
    reasons = []
    if enrollment.status in OPEN_ENROLLMENT:
        reasons.append(Reason(enrollment.entered_at, f"{label} is {enrollment.status}",
                              f"at step {enrollment.current_step}, next run {enrollment.next_run_at}"))
    else:
        reasons.append(Reason(enrollment.ended_at, f"{label} {enrollment.status}", enrollment.end_reason))
    if enrollment.is_control:
        reasons.append(Reason(enrollment.entered_at, f"{label} is in the holdout", "control contacts are sent nothing"))
    skipped = enrollment.executions.exclude(
        outcome__in=(StepOutcome.SENT, StepOutcome.DONE, StepOutcome.BRANCHED, StepOutcome.WAITING)
    )
    for execution in skipped:
        reasons.append(Reason(execution.executed_at, f"step {execution.step_key}: {execution.outcome}",
                              execution.reason or "-"))
    for execution in enrollment.executions.filter(outcome=StepOutcome.BRANCHED):
        reasons.append(Reason(execution.executed_at, f"step {execution.step_key} took {execution.next_step}",
                              execution.reason))
    return reasons
