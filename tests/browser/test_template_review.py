"""Templates under four eyes, in the browser: a marketer drafts a new
version of their SMS template and submits it; they get no way to approve it;
a compliance reviewer finds it in the review queue, reads the diff against
the live version, and approves it, which makes it live."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from config import roles
from templates import services
from templates.models import VersionStatus
from tests.conftest import staff_user
from tests.templates.factories import draft_version, factory_reviewer

pytestmark = pytest.mark.postgres

OLD_BODY = "Your plan renews soon. Reply STOP to opt out."
NEW_BODY = "Your plan renews on Monday; nothing to do. Reply STOP to opt out."


def test_a_marketer_submits_an_sms_version_and_a_reviewer_approves_it_after_reading_the_diff(demo, sign_in, shot):
    marketer = staff_user("mia_templates", roles.MARKETER)
    reviewer = staff_user("rob_templates", roles.REVIEWER)
    template = services.template_create(key="renewal-sms", name="Renewal reminder", channel="sms",
                                        message_class="operational", actor=marketer)
    live = draft_version(template, author=marketer, content={"body": OLD_BODY})
    services.version_submit(version=live, actor=marketer)
    services.version_approve(version=live, actor=factory_reviewer())

    # 1. The marketer drafts v2 from the live version, changes the text and submits it.
    mia = sign_in(marketer)
    mia.get_by_role("link", name="All templates").click()
    mia.get_by_role("link", name="renewal-sms", exact=True).click()
    mia.get_by_role("link", name="New draft version").click()
    expect(mia.get_by_text("Draft v2 created from v1.")).to_be_visible()
    body = mia.locator("textarea[name$='-body']").first
    expect(body).to_have_value(OLD_BODY)
    body.fill(NEW_BODY)
    shot(mia, "marketer-edits-the-draft")
    mia.get_by_role("button", name="Save and continue editing").click()
    expect(mia.locator("textarea[name$='-body']").first).to_have_value(NEW_BODY)
    mia.get_by_role("link", name="Submit for review").click()
    mia.get_by_role("button", name="Submit", exact=True).click()
    expect(mia.get_by_text("Submitted for review.")).to_be_visible()
    shot(mia, "marketer-submitted")
    draft = template.versions.get(number=2)
    assert draft.status == VersionStatus.IN_REVIEW

    # 2. Nobody approves their own work: no Approve for the marketer, and the URL refuses.
    expect(mia.get_by_role("link", name="Approve and make live")).to_have_count(0)
    refused = mia.request.post(f"/admin/templates/templateversion/{draft.pk}/approve/",
                               form={"_form_submitted": "on", "comment": "mine"})
    assert refused.status == 403
    draft.refresh_from_db()
    assert draft.status == VersionStatus.IN_REVIEW

    # 3. The reviewer lands on what waits for them, opens the queue and the diff, and approves.
    rob = sign_in(reviewer)
    expect(rob.get_by_text("Templates waiting for your review")).to_be_visible()
    rob.locator("#your-work").get_by_role("link", name="Review queue →").click()
    queue = rob.locator("#review-queue")
    expect(queue).to_contain_text("renewal-sms v2")
    expect(queue).to_contain_text("mia_templates")
    shot(rob, "reviewer-review-queue")
    rob.goto(f"/admin/templates/template/{template.pk}/diff/")
    diff = rob.locator("table.diff")
    expect(diff.locator(".diff_sub, .diff_chg").first).to_be_visible()
    expect(diff).to_contain_text("renews on Monday")
    shot(rob, "reviewer-reads-the-diff")
    rob.goto(f"/admin/templates/templateversion/{draft.pk}/change/")
    rob.get_by_role("link", name="Approve and make live").click()
    rob.get_by_label("Comment").fill("Wording checked; STOP text present.")
    rob.get_by_role("button", name="Approve", exact=True).click()
    expect(rob.get_by_text("Approved and live.")).to_be_visible()
    shot(rob, "reviewer-approved")

    draft.refresh_from_db()
    template.refresh_from_db()
    assert (draft.status, draft.approved_by) == (VersionStatus.APPROVED, reviewer)
    assert template.live_version == draft
    assert re.search("renews on Monday", template.live_version.variants.get().body)
