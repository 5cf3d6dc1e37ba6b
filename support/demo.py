"""Demo support data: two teams with business hours, agents and a
supervisor, the default high-priority escalation policy (published and
approved as a journey), a suppression rule, and open and escalated cases
with notes, replies and timelines. Idempotent."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import Group, User
from django.utils import timezone

from config import roles
from consent.demo import last_working_noon
from consent.models import Contact
from support import escalation, services
from support.models import (
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
    Team,
    TeamHoliday,
    WorkingHours,
)

EDITOR = "seed_demo"
REVIEWER = "seed_demo:compliance"
DEFAULT_POLICY = "High priority (default)"
# The default high-priority policy: (phase, delay minutes, action, channel, template, unless the customer replied)
DEFAULT_STEPS = [
    (Phase.OPENED, 0, EscalationAction.SEND, "email", "case-ack-email", False),
    (Phase.OPENED, 30, EscalationAction.SEND, "sms", "case-callback-sms", True),
    (Phase.OPENED, 120, EscalationAction.ESCALATE, "", "", False),
    (Phase.RESOLVED, 1440, EscalationAction.SEND, "email", "case-followup-email", False),
]
# Journey keys, not template keys: the starter journey is journeys/starter/payment-recovery.yaml.
DEMO_RULE = {"name": "Billing case resolved stops payment reminders", "on": "resolved",
             "category": Category.BILLING, "journey_key_prefix": "payment-recovery"}
TEAMS = [
    # name, timezone, supervisor, agents
    ("Billing", "Europe/Lisbon", "sam_supervisor", ["ada_billing", "bruno_billing"]),
    ("Technical", "America/New_York", "tess_supervisor", ["carl_tech"]),
]
CASES = [
    # contact, subject, category, priority, team, agent, status
    ("cus_ana", "Charged twice for October", Category.BILLING, Priority.HIGH, "Billing", "ada_billing",
     CaseStatus.OPEN),
    ("cus_ben", "Cannot log in after password reset", Category.ACCOUNT_ACCESS, Priority.URGENT, "Technical",
     "carl_tech", CaseStatus.ESCALATED),
    ("cus_diego", "Where is my order?", Category.ORDER_STATUS, Priority.NORMAL, "Billing", None,
     CaseStatus.PENDING_CUSTOMER),
]


def install_default_policy(*, editor=EDITOR, reviewer=REVIEWER) -> EscalationPolicy:
    """The high-priority policy the API gets without configuring anything,
    published as journeys and approved (by a second actor: maker-checker)."""
    from journeys.models import VersionStatus
    from journeys.services import journey_version_approve

    policy, created = EscalationPolicy.objects.get_or_create(name=DEFAULT_POLICY,
                                                             defaults={"priority": Priority.HIGH})
    if created:
        for phase, delay, action, channel, template, unless in DEFAULT_STEPS:
            EscalationStep.objects.create(policy=policy, phase=phase, delay_minutes=delay, action=action,
                                          channel=channel, template_key=template, unless_customer_replied=unless)
    for version in escalation.escalation_policy_publish(policy=policy, actor=editor):
        if version.status == VersionStatus.IN_REVIEW:
            journey_version_approve(version=version, actor=reviewer, note="demo: default escalation policy")
    return policy


def install_suppression_rule() -> int:
    """The demo rule: resolving a billing case stops the starter payment
    reminders (journey key `payment-recovery`) for that contact. 1 if created."""
    rule, created = SuppressionRule.objects.get_or_create(name=DEMO_RULE["name"], defaults=DEMO_RULE)
    if not created and rule.journey_key_prefix == "payment-failed":
        # Earlier seeds named the template prefix, which matches no journey key.
        rule.journey_key_prefix = DEMO_RULE["journey_key_prefix"]
        rule.save(update_fields=["journey_key_prefix"])
    return int(created)


def _user(username: str, role: str, team_group: Group | None = None) -> User:
    user, _ = User.objects.get_or_create(
        # No email addresses: notifications show in the admin; a demo has no mail server.
        username=username, defaults={"is_staff": True, "first_name": username.split("_")[0].capitalize()}
    )
    user.groups.add(Group.objects.get(name=role))
    if team_group is not None:
        user.groups.add(team_group)
    return user


def _team(name: str, zone: str, supervisor: str, agents: list[str]) -> Team:
    group, _ = Group.objects.get_or_create(name=f"Support team: {name}")
    boss = _user(supervisor, roles.AGENT, group)
    team, created = Team.objects.get_or_create(name=name, defaults={"group": group, "supervisor": boss,
                                                                   "timezone": zone})
    if created:
        for weekday in range(5):
            WorkingHours.objects.create(team=team, weekday=weekday, start=dt.time(9), end=dt.time(17))
        TeamHoliday.objects.create(team=team, date=dt.date(2026, 12, 25), name="Christmas Day")
        TeamHoliday.objects.create(team=team, date=dt.date(2027, 1, 1), name="New Year's Day")
    for username in agents:
        _user(username, roles.AGENT, group)
    return team


def seed() -> int:
    roles.sync_roles()
    added = 0
    teams = {}
    for name, zone, supervisor, agents in TEAMS:
        added += not Team.objects.filter(name=name).exists()
        teams[name] = _team(name, zone, supervisor, agents)
    if not EscalationPolicy.objects.filter(name=DEFAULT_POLICY).exists():
        added += 1
    install_default_policy()
    added += install_suppression_rule()
    for row in CASES:
        added += _demo_case(teams, *row)
    return added


def _demo_case(teams, external_id, subject, category, priority, team_name, agent_name, status) -> int:
    contact = Contact.objects.filter(external_id=external_id).first()
    if contact is None or SupportCase.objects.filter(contact=contact, subject=subject).exists():
        return 0
    agent = User.objects.filter(username=agent_name).first() if agent_name else None
    # Three hours ago, or earlier if the agent's reply 20 minutes in would
    # fall in the contact's quiet hours (it would be held, not sent).
    opened = min(timezone.now() - dt.timedelta(hours=3), last_working_noon(contact) - dt.timedelta(minutes=20))
    case = services.case_open(contact=contact, subject=subject, category=category, priority=priority,
                              source=CaseSource.API, actor=EDITOR, team=teams[team_name], agent=agent, now=opened)
    author = agent or teams[team_name].supervisor
    services.case_note_add(case=case, author=author, now=opened + dt.timedelta(minutes=5),
                           body="Checked the account: see the message history below before replying.")
    if agent is not None:
        services.case_reply(case=case, channel="email", actor=agent, now=opened + dt.timedelta(minutes=20),
                            text="Thanks for your patience, we are looking into it and will update you today.")
    if status == CaseStatus.ESCALATED:
        services.case_escalate(case=case, actor=EDITOR, reason="demo: customer waiting too long")
    elif status == CaseStatus.PENDING_CUSTOMER:
        services.case_mark_pending(case=case, actor=EDITOR, reason="asked for the order number")
    return 1
