"""A support agent works one case of their team in a real browser, and cannot
see another team's (README "Support": "Who sees which case", "The agent's
workflow (admin)"):

1. an agent of the Billing team (a Support agent who is a member of the team's
   auth group, the group that holds the guardian grants on the team's cases)
   opens the case queue from the sidebar: the team's cases are listed, the
   Technical team's case is not; they open the demo case of a contact who has
   been sent messages before;
2. the case page shows that contact's message history: the appointment
   reminder SMS with its rendered text, template version and delivery
   status, and the earlier agent reply by email, sent by this case;
3. the agent replies by SMS in the Reply dialog: the page confirms the reply
   was queued (or deferred, at night in cus_ana's Lisbon), it shows with its
   text in the message history and on the case timeline, and the database
   holds it as an outbound SMS to the contact's phone, through the
   agent-reply template, sent by the case, by this agent;
4. the agent resolves the case in the Change status dialog: the page
   confirms it and shows the status, and the case is resolved in the database;
5. typing the URL of the Technical team's case shows none of it: the admin
   answers as for a case that does not exist (back to the queue, "doesn't
   exist")."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from channels.models import MessageStatus, OriginKind, OutboundMessage
from config import roles
from support.models import CaseEvent, CaseEventKind, CaseStatus, SupportCase, Team
from tests.browser.conftest import shown
from tests.conftest import staff_user

pytestmark = pytest.mark.postgres

QUEUE = "/admin/support/supportcase/"
MINE = "Charged twice for October"  # seed_demo: cus_ana's case, Billing team, with message history
ALSO_MINE = "Where is my order?"  # seed_demo: cus_diego's case, Billing team's queue
OTHERS = "Cannot log in after password reset"  # seed_demo: cus_ben's case, Technical team
REPLY = "We refunded the second charge today; it shows on your card in 3 to 5 days."


def section(page, heading: str):
    """A block of the case page, by its heading."""
    return page.locator("#case-page section").filter(has=page.get_by_role("heading", name=re.compile(f"^{heading}")))


def dialog(page, title: str):
    """Unfold's action dialog (a modal without a dialog role), by its title."""
    return page.locator("#modal-content").filter(has=page.get_by_role("heading", name=title))


def test_an_agent_replies_to_and_resolves_a_team_case_but_cannot_open_another_team_case(demo, sign_in, shot):
    agent = staff_user("ada_browser", roles.AGENT, first_name="Ada")
    agent.groups.add(Team.objects.get(name="Billing").group)
    case = SupportCase.objects.select_related("contact").get(subject=MINE)
    other = SupportCase.objects.select_related("contact").get(subject=OTHERS)
    assert other.team.name == "Technical"
    reminder = OutboundMessage.objects.get(contact=case.contact, template_key="appointment-reminder-sms")
    assert reminder.status == MessageStatus.DELIVERED
    page = sign_in(agent)

    # 1. The queue: the team's cases, not another team's.
    page.get_by_role("link", name="Case queue").click()
    expect(page).to_have_url(re.compile(f"{re.escape(QUEUE)}$"))
    rows = page.locator("#result_list tbody tr")
    mine = rows.filter(has_text=MINE)
    expect(mine).to_contain_text(case.number)
    expect(mine).to_contain_text("Billing")
    expect(rows.filter(has_text=ALSO_MINE)).to_be_visible()
    expect(page.get_by_text(OTHERS)).to_have_count(0)
    expect(page.get_by_text(other.number)).to_have_count(0)
    shot(page, "agent-case-queue")
    mine.get_by_role("link", name=case.number).click()

    # 2. The case page: the contact's message history.
    expect(page).to_have_url(re.compile(rf"{QUEUE}{case.pk}/change/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"{case.number}: {MINE}")
    history = section(page, "Message history")
    sms = history.locator(f'[data-kind="out"][data-id="{reminder.pk}"]')
    expect(sms).to_contain_text("Acme: lembrete, marcação")  # cus_ana reads Portuguese
    expect(sms).to_contain_text("appointment-reminder-sms v1")
    expect(sms).to_contain_text("delivered")
    earlier = history.locator('[data-kind="out"]').filter(has_text="case-agent-reply-email v1")
    expect(earlier).to_contain_text("Thanks for your patience")
    expect(earlier).to_contain_text(f"case {case.number}")
    expect(history.get_by_text(REPLY)).to_have_count(0)
    shot(page, "case-page-message-history")

    # 3. Reply by SMS from the case page.
    page.get_by_role("link", name="Reply").click()
    reply = dialog(page, "Reply to the customer")
    reply.get_by_label("Channel").select_option("sms")
    reply.get_by_label("Text").fill(REPLY)
    shot(page, "reply-dialog-sms")
    reply.get_by_role("button", name="Send").click()
    expect(page.get_by_text(re.compile(r"Reply (queued|deferred)")),
           "the page confirms the reply once the dialog is sent").to_be_visible()
    expect(reply).to_be_hidden()
    sent = history.locator('[data-kind="out"]').filter(has_text=REPLY)
    # Queued, it was rendered from v1; deferred by the contact's quiet hours, the
    # version is chosen when it is released, and the page shows the agent's words.
    expect(sent).to_contain_text(re.compile(r"case-agent-reply-sms v1.*queued|case-agent-reply-sms.*deferred", re.S))
    expect(sent).to_contain_text(f"case {case.number}")
    expect(section(page, "Case timeline").locator("li").filter(has_text="Agent replied")
           .filter(has_text=REPLY)).to_contain_text("user:ada_browser")
    shot(page, "reply-confirmed-on-the-case")

    message = OutboundMessage.objects.get(contact=case.contact, origin_kind=OriginKind.AGENT_REPLY, channel="sms")
    assert message.origin_case_id == case.pk
    assert message.template_key == "case-agent-reply-sms"
    assert message.address == case.contact.phone
    if message.status == MessageStatus.QUEUED:
        assert REPLY in message.content["body"] and case.number in message.content["body"]
    else:  # deferred: rendered when Lisbon's quiet hours end, from the agent's words
        assert message.status == MessageStatus.DEFERRED and message.deliver_after > timezone.now()
        assert message.render_data["event"]["message"] == REPLY
    event = CaseEvent.objects.get(case=case, kind=CaseEventKind.AGENT_REPLY, outbound_message=message)
    assert event.actor == "user:ada_browser"

    # 4. Resolve the case.
    page.get_by_role("link", name="Change status").click()
    change = dialog(page, "Change status")
    change.get_by_label("Status").select_option(label="Resolved")
    change.get_by_label("Reason").fill("Refund issued, customer told by SMS.")
    shot(page, "status-dialog-resolve")
    change.get_by_role("button", name="Change").click()
    expect(page.get_by_text(f"{case.number} is now resolved.")).to_be_visible()
    expect(shown(page, "Status")).to_contain_text("Resolved")
    expect(section(page, "Case timeline").locator("li").filter(has_text="open → resolved")).to_be_visible()
    shot(page, "case-resolved")
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and case.resolved_at is not None

    # 5. Another team's case by its URL: as if it did not exist.
    page.goto(f"{QUEUE}{other.pk}/change/")
    expect(page).to_have_url(re.compile(f"{re.escape(QUEUE)}$"))
    expect(page.get_by_text(f"support case with ID “{other.pk}” doesn’t exist")).to_be_visible()
    for trace in (OTHERS, other.number, other.contact.external_id):
        expect(page.get_by_text(trace)).to_have_count(0)
    expect(page.locator("#case-page")).to_have_count(0)
    shot(page, "other-team-case-by-url")
