"""The support domain's writes: opening cases, one service per status
transition, priority and assignment (with the guardian grants that decide
who sees a case), notes, agent replies, notifications and the SLA check.

Escalation lives in `support.escalation`, reply routing in `support.routing`;
both call back into the services here."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from channels import outbound_webhooks
from channels.models import WebhookEventType
from consent.models import Contact
from consent.services import actor_label
from support import selectors
from support.business_hours import CalendarError, add_business_time
from support.models import (
    ACTIVE_STATUSES,
    CASE_TRANSITIONS,
    PRIORITY_RANK,
    CaseEvent,
    CaseEventKind,
    CaseNote,
    CaseStatus,
    CaseTrigger,
    Notification,
    Phase,
    SlaPolicy,
    SupportCase,
    Team,
)

logger = logging.getLogger(__name__)

OBJECT_PERMS = ("support.view_supportcase", "support.change_supportcase")
CASE_FIELDS_ON_STATUS = ["status", "status_changed_at", "resolved_at", "closed_at"]


class SupportError(Exception):
    """A support operation that cannot be done as asked (API answers 409)."""


class IllegalCaseTransition(SupportError):
    def __init__(self, case: SupportCase, to: str):
        self.case = case
        self.to = to
        super().__init__(f"case {case.number} cannot move from {case.status} to {to}")


def _who(actor: Any) -> str:
    return actor_label(actor)


def _history_reason(case: SupportCase, actor: Any, reason: str) -> None:
    case._change_reason = reason
    if isinstance(actor, User):
        case._history_user = actor


def event_add(
    *, case: SupportCase, kind: str, actor: Any, now: dt.datetime, old: str = "", new: str = "", detail: str = "",
    outbound_message_id: int | None = None, inbound_message_id: int | None = None,
) -> CaseEvent:
    return CaseEvent.objects.create(
        case=case, kind=kind, actor=_who(actor)[:150], old_value=str(old)[:100], new_value=str(new)[:100],
        detail=detail, outbound_message_id=outbound_message_id, inbound_message_id=inbound_message_id, at=now,
    )


# --- SLA ---------------------------------------------------------------------


def sla_due_times(
    *, priority: str, team: Team | None, start: dt.datetime
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """First-response and resolution due instants on the team's calendar
    (around the clock when there is no team); None when no policy exists."""
    policy = SlaPolicy.objects.filter(priority=priority).first()
    if policy is None:
        return None, None
    calendar = selectors.calendar_for_team(team)
    try:
        first = add_business_time(start, dt.timedelta(minutes=policy.first_response_minutes), calendar)
        resolution = add_business_time(start, dt.timedelta(minutes=policy.resolution_minutes), calendar)
    except CalendarError:
        # A calendar with no working time left: no clock rather than no case.
        logger.warning("team %s has no working time ahead; case opened without SLA due times", team)
        return None, None
    return first, resolution


# --- Permissions (guardian) -----------------------------------------------------


def _grant(case: SupportCase, *, user: User | None = None, group: Group | None = None) -> None:
    for perm in OBJECT_PERMS:
        assign_perm(perm, user or group, case)


def _revoke(case: SupportCase, *, user: User | None = None, group: Group | None = None) -> None:
    for perm in OBJECT_PERMS:
        remove_perm(perm, user or group, case)


# --- Opening ---------------------------------------------------------------------


def default_team() -> Team | None:
    name = settings.SUPPORT_DEFAULT_TEAM
    return Team.objects.filter(name=name).first() if name else None


def case_open(
    *,
    contact: Contact,
    subject: str,
    category: str,
    priority: str,
    source: str,
    actor: Any,
    team: Team | None = None,
    agent: User | None = None,
    now: dt.datetime | None = None,
    journey_task_id: int | None = None,
) -> SupportCase:
    """Open a case: number it, set its SLA clocks, grant the team and the
    agent, start its escalation policy and apply suppression rules."""
    from support import escalation

    now = now or timezone.now()
    team = team or (agent and selectors.team_of(agent)) or default_team()
    first_due, resolution_due = sla_due_times(priority=priority, team=team, start=now)
    with transaction.atomic():
        case = SupportCase(
            contact=contact, subject=subject[:200], category=category, priority=priority, source=source, team=team,
            assigned_agent=agent, opened_at=now, status_changed_at=now, first_response_due_at=first_due,
            resolution_due_at=resolution_due, journey_task_id=journey_task_id,
        )
        _history_reason(case, actor, f"opened by {_who(actor)} ({source})")
        case.save()
        # The number follows the id, so it is unique without a second counter.
        SupportCase.objects.filter(pk=case.pk).update(number=f"C-{case.pk:06d}")
        case.number = f"C-{case.pk:06d}"
        case.history.filter(history_id=case.history.latest().history_id).update(number=case.number)
        if team is not None:
            _grant(case, group=team.group)
        if agent is not None:
            _grant(case, user=agent)
        event_add(case=case, kind=CaseEventKind.OPENED, actor=actor, now=now, new=CaseStatus.OPEN,
                  detail=f"{case.get_priority_display()} {case.get_category_display()} case from {source}")
        if agent is not None:
            notify(recipient=agent, case=case, text=f"{case.number} was assigned to you: {case.subject}", now=now)
        _start_escalation(case, now)
        escalation.suppression_rules_apply(case=case, trigger=CaseTrigger.OPENED, now=now)
        outbound_webhooks.case_emit(event_type=WebhookEventType.CASE_OPENED, case=case)
    return case


def _start_escalation(case: SupportCase, now: dt.datetime) -> None:
    """A case is opened even when its escalation cannot start; the timeline says why."""
    from support import escalation

    try:
        with transaction.atomic():
            escalation.escalation_start(case=case, now=now)
    except Exception as error:
        logger.exception("escalation of case %s did not start", case.number)
        event_add(case=case, kind=CaseEventKind.ESCALATION, actor="support:escalation", now=now,
                  new="not started", detail=f"error: {error}"[:500])


# --- Status transitions -----------------------------------------------------------


def _transition(case: SupportCase, *, to: str, actor: Any, now: dt.datetime | None, reason: str,
                **fields: Any) -> SupportCase:
    """Move a case to `to` under a row lock, leaving a timeline row and a
    history row with the reason. Refuses a move the mapping does not allow."""
    now = now or timezone.now()
    locked = SupportCase.objects.select_for_update().get(pk=case.pk)
    if to not in CASE_TRANSITIONS[locked.status]:
        raise IllegalCaseTransition(locked, to)
    old = locked.status
    changes = {"status": to, "status_changed_at": now, **fields}
    for name, value in changes.items():
        setattr(locked, name, value)
    why = f"{old} -> {to} by {_who(actor)}" + (f": {reason}" if reason else "")
    _history_reason(locked, actor, why)
    locked.save(update_fields=list(changes))
    event_add(case=locked, kind=CaseEventKind.STATUS, actor=actor, now=now, old=old, new=to, detail=reason)
    for name in changes:
        setattr(case, name, getattr(locked, name))
    return case


def case_mark_pending(*, case: SupportCase, actor: Any, reason: str = "", now: dt.datetime | None = None):
    """Waiting for the customer: their reply moves it back to open."""
    with transaction.atomic():
        return _transition(case, to=CaseStatus.PENDING_CUSTOMER, actor=actor, now=now, reason=reason)


def case_escalate(*, case: SupportCase, actor: Any, reason: str = "", now: dt.datetime | None = None):
    with transaction.atomic():
        case = _transition(case, to=CaseStatus.ESCALATED, actor=actor, now=now, reason=reason)
        outbound_webhooks.case_emit(event_type=WebhookEventType.CASE_ESCALATED, case=case)
        return case


def case_reopen(*, case: SupportCase, actor: Any, reason: str = "", now: dt.datetime | None = None):
    """Back to open: from pending (the customer answered), escalated, or
    resolved (then the after-resolution follow-up no longer applies)."""
    from support import escalation

    now = now or timezone.now()
    with transaction.atomic():
        escalation.escalation_lock(case=case, phase=Phase.RESOLVED)  # before the case row: see escalation_lock
        was_resolved = SupportCase.objects.filter(pk=case.pk, status=CaseStatus.RESOLVED).exists()
        case = _transition(case, to=CaseStatus.OPEN, actor=actor, now=now, reason=reason, resolved_at=None)
        if was_resolved:
            escalation.escalation_stop(case=case, reason=f"case {case.number} reopened", now=now,
                                       phase=Phase.RESOLVED)
    return case


def case_resolve(*, case: SupportCase, actor: Any, reason: str = "", now: dt.datetime | None = None):
    """Resolve, and stop the case's pending escalation messages at once
    (queued ones included); the policy's after-resolution steps start."""
    from support import escalation

    now = now or timezone.now()
    with transaction.atomic():
        escalation.escalation_lock(case=case, phase=Phase.OPENED)  # before the case row: see escalation_lock
        case = _transition(case, to=CaseStatus.RESOLVED, actor=actor, now=now, reason=reason, resolved_at=now)
        escalation.escalation_stop(case=case, reason=f"case {case.number} resolved", now=now)
        escalation.suppression_rules_apply(case=case, trigger=CaseTrigger.RESOLVED, now=now)
        escalation.escalation_start(case=case, now=now, phase=Phase.RESOLVED)
        outbound_webhooks.case_emit(event_type=WebhookEventType.CASE_RESOLVED, case=case)
    return case


def case_close(*, case: SupportCase, actor: Any, reason: str = "", now: dt.datetime | None = None):
    """Close for good: every pending message of the case, follow-ups included, is cancelled."""
    from support import escalation

    now = now or timezone.now()
    with transaction.atomic():
        escalation.escalation_lock(case=case, phase=None)  # before the case row: see escalation_lock
        case = _transition(case, to=CaseStatus.CLOSED, actor=actor, now=now, reason=reason, closed_at=now)
        escalation.escalation_stop(case=case, reason=f"case {case.number} closed", now=now, phase=None)
        escalation.suppression_rules_apply(case=case, trigger=CaseTrigger.CLOSED, now=now)
    return case


CaseTransition = Callable[..., SupportCase]
# The service that moves a case into each status (API PATCH, admin actions).
STATUS_SERVICES: dict[str, CaseTransition] = {
    CaseStatus.OPEN: case_reopen,
    CaseStatus.PENDING_CUSTOMER: case_mark_pending,
    CaseStatus.ESCALATED: case_escalate,
    CaseStatus.RESOLVED: case_resolve,
    CaseStatus.CLOSED: case_close,
}


def case_set_status(*, case: SupportCase, status: str, actor: Any, reason: str = "",
                    now: dt.datetime | None = None) -> SupportCase:
    if status == case.status:
        return case
    return STATUS_SERVICES[status](case=case, actor=actor, reason=reason, now=now)


# --- Priority and assignment -----------------------------------------------------------


def case_set_priority(*, case: SupportCase, priority: str, actor: Any, reason: str = "",
                      now: dt.datetime | None = None) -> SupportCase:
    """Change the priority; the SLA clocks are recomputed from the opening."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = SupportCase.objects.select_for_update().get(pk=case.pk)
        if locked.priority == priority:
            return locked
        old = locked.priority
        locked.priority = priority
        locked.first_response_due_at, locked.resolution_due_at = sla_due_times(
            priority=priority, team=locked.team, start=locked.opened_at
        )
        why = f"priority {old} -> {priority} by {_who(actor)}" + (f": {reason}" if reason else "")
        _history_reason(locked, actor, why)
        locked.save(update_fields=["priority", "first_response_due_at", "resolution_due_at"])
        event_add(case=locked, kind=CaseEventKind.PRIORITY, actor=actor, now=now, old=old, new=priority, detail=reason)
    for name in ("priority", "first_response_due_at", "resolution_due_at"):
        setattr(case, name, getattr(locked, name))
    return case


def case_raise_priority(*, case: SupportCase, priority: str, actor: Any, reason: str = "",
                        now: dt.datetime | None = None) -> bool:
    """Raise to at least `priority`; never lowers. True when it changed."""
    if PRIORITY_RANK[priority] <= PRIORITY_RANK[case.priority]:
        return False
    case_set_priority(case=case, priority=priority, actor=actor, reason=reason, now=now)
    return True


def case_assign(*, case: SupportCase, team: Team | None, agent: User | None, actor: Any, reason: str = "",
                now: dt.datetime | None = None, notify_agent: bool = True) -> SupportCase:
    """Give the case to a team (its group sees it) and an agent, or to the
    team's queue with agent None. Grants move with the assignment."""
    now = now or timezone.now()
    if agent is not None and team is not None and not agent.groups.filter(pk=team.group_id).exists():
        raise SupportError(f"{agent.get_username()} is not a member of team {team.name}")
    with transaction.atomic():
        locked = (
            SupportCase.objects.select_for_update(of=("self",)).select_related("team", "assigned_agent").get(pk=case.pk)
        )
        old_team, old_agent = locked.team, locked.assigned_agent
        if old_team == team and old_agent == agent:
            return locked
        if old_team != team:
            if old_team is not None:
                _revoke(locked, group=old_team.group)
            if team is not None:
                _grant(locked, group=team.group)
        if old_agent != agent:
            if old_agent is not None:
                _revoke(locked, user=old_agent)
            if agent is not None:
                _grant(locked, user=agent)
        locked.team, locked.assigned_agent = team, agent
        _history_reason(locked, actor, f"assigned to {_assignee(team, agent)} by {_who(actor)}")
        locked.save(update_fields=["team", "assigned_agent"])
        event_add(case=locked, kind=CaseEventKind.ASSIGNMENT, actor=actor, now=now,
                  old=_assignee(old_team, old_agent), new=_assignee(team, agent), detail=reason)
        if agent is not None and agent != old_agent and notify_agent:
            notify(recipient=agent, case=locked, text=f"{locked.number} was assigned to you: {locked.subject}", now=now)
    case.team, case.assigned_agent = team, agent
    return case


def _assignee(team: Team | None, agent: User | None) -> str:
    if agent is not None:
        return f"{agent.get_username()} ({team.name if team else 'no team'})"
    return f"{team.name} queue" if team else "unassigned"


# --- Notes, replies, notifications -----------------------------------------------------------


def case_note_add(*, case: SupportCase, author: User, body: str, now: dt.datetime | None = None) -> CaseNote:
    now = now or timezone.now()
    if not body.strip():
        raise SupportError("A note needs some text.")
    with transaction.atomic():
        note = CaseNote.objects.create(case=case, author=author, body=body.strip(), created_at=now)
        event_add(case=case, kind=CaseEventKind.NOTE, actor=author, now=now, detail=body.strip()[:500])
    return note


def case_reply(*, case: SupportCase, channel: str, text: str, actor: Any, now: dt.datetime | None = None):
    """An agent's reply to the customer on `channel`: an operational message
    through channels.send (the consent gate decides), logged on the case.
    The first one that goes out stops the first-response clock."""
    from channels.services import Origin, OriginKind, SendStatus, send
    from templates.services import render_context

    now = now or timezone.now()
    template_key = settings.SUPPORT_AGENT_REPLY_TEMPLATES.get(channel)
    if not template_key:
        raise SupportError(f"Agents cannot reply by {channel}; configured: {', '.join(selectors.reply_channels())}.")
    if not text.strip():
        raise SupportError("A reply needs some text.")
    if case.status == CaseStatus.CLOSED:
        raise SupportError(f"{case.number} is closed.")
    with transaction.atomic():
        count = CaseEvent.objects.filter(case=case, kind=CaseEventKind.AGENT_REPLY).count()
        event = {"case_number": case.number, "subject": case.subject, "message": text.strip(),
                 "agent_name": getattr(actor, "first_name", "") or _who(actor)}
        result = send(
            contact=case.contact, data=render_context(case.contact, event_properties=event),
            origin=Origin(kind=OriginKind.AGENT_REPLY, case_id=case.pk, label=f"{case.number} · agent reply"),
            idempotency_key=f"case:{case.pk}:reply:{count + 1}", template_key=template_key, now=now,
        )
        message = result.messages[-1] if result.messages else None
        event_add(case=case, kind=CaseEventKind.AGENT_REPLY, actor=actor, now=now, new=result.status,
                  detail=text.strip()[:1000] if not result.reason else f"{result.reason}: {text.strip()[:900]}",
                  outbound_message_id=message.pk if message else None)
        if result.status in (SendStatus.QUEUED, SendStatus.DEFERRED):
            SupportCase.objects.filter(pk=case.pk, first_response_at__isnull=True).update(first_response_at=now)
    return result


def notify(*, recipient: User, case: SupportCase | None, text: str, now: dt.datetime | None = None) -> Notification:
    """Tell a person: a row they see in the admin, and an email on commit
    when they have an address (staff mail, not a customer message)."""
    now = now or timezone.now()
    note = Notification.objects.create(recipient=recipient, case=case, text=text[:300], created_at=now)
    if recipient.email:
        subject, body, to = f"[support] {text[:120]}", _mail_body(case, text), recipient.email
        transaction.on_commit(lambda: _mail(subject, body, to, note.pk))
    return note


def _mail_body(case: SupportCase | None, text: str) -> str:
    if case is None:
        return text
    return f"{text}\n\n{settings.SITE_URL}/admin/support/supportcase/{case.pk}/change/"


def _mail(subject: str, body: str, to: str, notification_id: int) -> None:
    try:
        send_mail(subject, body, settings.SUPPORT_NOTIFY_FROM_EMAIL, [to])
    except Exception as error:
        # The notification row is the record; a mail outage must not undo it.
        # The id, not the address: logs are no place for personal data.
        logger.warning("could not email support notification %s: %s", notification_id, error)


def notification_mark_read(*, notification: Notification, now: dt.datetime | None = None) -> bool:
    return bool(
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=now or timezone.now())
    )


def notify_case_owner(*, case: SupportCase, text: str, now: dt.datetime) -> list[Notification]:
    """The assigned agent; with none, the team's supervisor."""
    target = case.assigned_agent or (case.team.supervisor if case.team else None)
    return [notify(recipient=target, case=case, text=text, now=now)] if target else []


# --- Customer replies and the first-response SLA ---------------------------------------------


def case_customer_replied(*, case: SupportCase, inbound_id: int, now: dt.datetime) -> CaseEvent | None:
    """Thread an inbound reply on the case; a case waiting for the customer
    goes back to open. Threading twice is refused by a unique constraint."""
    from channels.models import InboundMessage

    inbound = InboundMessage.objects.get(pk=inbound_id)
    if CaseEvent.objects.filter(kind=CaseEventKind.CUSTOMER_REPLY, inbound_message_id=inbound_id).exists():
        return None
    with transaction.atomic():
        event = event_add(case=case, kind=CaseEventKind.CUSTOMER_REPLY, actor=f"contact:{case.contact.external_id}",
                          now=now, detail=inbound.body[:1000], new=inbound.channel, inbound_message_id=inbound_id)
        SupportCase.objects.filter(pk=case.pk).update(last_customer_reply_at=inbound.received_at or now)
        case.refresh_from_db(fields=["last_customer_reply_at", "status"])
        if case.status == CaseStatus.PENDING_CUSTOMER:
            case_reopen(case=case, actor="system", reason="the customer replied", now=now)
    return event


def cases_check_first_response_sla(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Cases past their first-response due time with no response: back to
    the team queue, and the supervisor is told. Returns how many breached."""
    now = now or timezone.now()
    return sum(
        case_first_response_breach(case_id=case_id, now=now)
        for case_id in selectors.cases_due_for_first_response(now=now, limit=limit)
    )


def case_first_response_breach(*, case_id: int, now: dt.datetime) -> bool:
    """Record a first-response breach if the case still has one. The
    conditional update is the claim and repeats every condition of the scan:
    a case answered, resolved or re-prioritised since the scan is left alone,
    and two checks running at once act once. True when it breached."""
    with transaction.atomic():
        claimed = SupportCase.objects.filter(
            pk=case_id, first_response_breached_at__isnull=True, first_response_at__isnull=True,
            first_response_due_at__lte=now, status__in=ACTIVE_STATUSES,
        ).update(first_response_breached_at=now)
        if claimed != 1:
            return False
        case = SupportCase.objects.select_related("team__supervisor", "assigned_agent").get(pk=case_id)
        _breach(case, now)
    return True


def _breach(case: SupportCase, now: dt.datetime) -> None:
    late = f"first response due {case.first_response_due_at:%Y-%m-%d %H:%M} UTC"
    event_add(case=case, kind=CaseEventKind.SLA_BREACH, actor="system", now=now, new="first_response", detail=late)
    if case.assigned_agent is not None:
        case_assign(case=case, team=case.team, agent=None, actor="system", now=now,
                    reason=f"first-response SLA breached ({late})")
    supervisor = case.team.supervisor if case.team else None
    if supervisor is not None:
        notify(recipient=supervisor, case=case, now=now,
               text=f"{case.number} breached its first-response SLA and is back in the {case.team.name} queue")


# --- Contact merge and erasure (registered with consent) ---------------------------------------


def on_contact_merge(survivor: Contact, merged: Contact) -> int:
    from support import escalation

    moved = SupportCase.objects.filter(contact=merged).update(contact=survivor)
    escalation.holds_forget()  # an update() sends no post_save
    return moved


def on_contact_erase(contact: Contact, **_erasure) -> None:
    """What the customer wrote, what agents wrote to them and about them, and
    the subjects go; statuses, times and the timeline's shape stay."""
    cases = SupportCase.objects.filter(contact=contact)
    CaseEvent.objects.filter(case__in=cases).exclude(detail="").update(detail="[erased]")
    CaseNote.objects.filter(case__in=cases).update(body="[erased]")
    for case in cases:
        case.history.all().update(subject="[erased]")
    cases.update(subject="[erased]")
