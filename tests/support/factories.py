"""Support test data: teams with calendars and members, the case templates
(approved through the real workflow), the default escalation policy, cases."""

from __future__ import annotations

import datetime as dt
import itertools

from django.contrib.auth.models import Group, User

from config import roles
from consent.models import Contact
from support import services
from support.models import CaseSource, Category, Priority, SupportCase, Team, WorkingHours
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template

_numbers = itertools.count(200)

EMAIL = {"subject": "Case {{ event.case_number }}", "html": "<p>{{ event.expected_response }}</p>",
         "sender_profile": {"from_email": "help@example.com", "from_name": "Help"}}
CASE = {"path": "event.case_number", "required": True}
TEMPLATES = {
    "case-ack-email": ("email", EMAIL, [CASE, {"path": "event.expected_response", "fallback": "soon"}]),
    "case-callback-sms": ("sms", {"body": "About case {{ event.case_number }}: when can we call?"}, [CASE]),
    "case-followup-email": ("email", EMAIL, [CASE]),
    "case-agent-reply-email": ("email", {**EMAIL, "html": "<p>{{ event.message }}</p>"},
                               [CASE, {"path": "event.message", "required": True}]),
    "case-agent-reply-sms": ("sms", {"body": "Case {{ event.case_number }}: {{ event.message }}"},
                             [CASE, {"path": "event.message", "required": True}]),
}


def case_templates() -> None:
    for key, (channel, content, variables) in TEMPLATES.items():
        approved_template(key, channel, "operational", content=content, variables=variables)


def contact(**fields) -> Contact:
    n = next(_numbers)
    defaults = {"phone": f"+1415556{n:04d}", "email": f"customer{n}@example.com", "timezone": "Europe/Lisbon",
                "attributes": {"first_name": "Rita"}}
    return ContactFactory(**{**defaults, **fields})


def person(username: str, *groups: Group, role: str = roles.AGENT, email: str = "") -> User:
    roles.sync_roles()
    user = User.objects.create_user(username=username, password="pw-for-tests-only", is_staff=True, email=email)
    user.groups.add(Group.objects.get(name=role), *groups)
    return User.objects.get(pk=user.pk)


def team(name: str, *, zone: str = "Europe/Lisbon", supervisor: User | None = None, weekdays=(0, 1, 2, 3, 4),
         start: dt.time = dt.time(9), end: dt.time = dt.time(17)) -> Team:
    group = Group.objects.create(name=f"Team {name}")
    made = Team.objects.create(name=name, group=group, supervisor=supervisor, timezone=zone)
    for weekday in weekdays:
        WorkingHours.objects.create(team=made, weekday=weekday, start=start, end=end)
    return made


def case(*, contact_: Contact | None = None, team_: Team | None = None, agent: User | None = None,
         priority: str = Priority.NORMAL, category: str = Category.OTHER, subject: str = "Help please",
         now: dt.datetime | None = None) -> SupportCase:
    return services.case_open(
        contact=contact_ or contact(), subject=subject, category=category, priority=priority,
        source=CaseSource.API, actor="test", team=team_, agent=agent, now=now,
    )
