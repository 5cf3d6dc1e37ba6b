"""A journey's life in the admin, in a real browser, each step done by the role
that does it (README "Journeys": "How each role uses it", "Versions, approval,
pause", "Admin"):

1. a marketer creates a marketing journey on the add page and builds its steps
   as rows of the step editor (SMS with an approved demo template, a wait, an
   email), the journey-level settings in the YAML box; saving makes them the
   draft definition, and creating it makes the marketer its owner (the
   guardian grant that lets them keep editing and activate it);
2. the marketer simulates the draft for a demo contact and reads the timeline:
   both messages sent two days apart, and nothing written;
3. the marketer clicks Activate: a marketing version waits for a compliance
   reviewer, who approves it in the browser (maker-checker: not its author);
   the journey is live on version 1 and the marketer enrolls a contact;
4. an operator pauses the journey: the page says so, the journey and its
   enrollment are paused in the database, and the diagram shows the steps
   with their live counts."""

from __future__ import annotations

import re

import pytest
from guardian.shortcuts import get_perms
from playwright.sync_api import expect

from config import roles
from journeys.models import Enrollment, EnrollmentStatus, Journey, JourneyStatus, JourneyVersion, VersionStatus
from journeys.selectors import can_change, can_publish
from tests.browser.conftest import shown
from tests.conftest import staff_user

pytestmark = pytest.mark.postgres

KEY = "spring-winback"
NAME = "Spring win-back"
CONTACT = "cus_grace"  # demo contact with SMS and email marketing consent, no open support case
STEPS = [
    {"key": "sms-now", "type": "send", "template": "winback-sms"},
    {"key": "wait-2d", "type": "wait", "duration": "2d"},
    {"key": "email-later", "type": "send", "template": "winback-email", "next": "end"},
]


def step_row(page, index: int):
    """The index-th row of the step editor (the tabular inline has no labels per cell)."""
    return page.locator("#steps-data tr.form-row:not(.empty-form)").nth(index)


def tall_shot(shot, page, name: str) -> None:
    """A full-page screenshot taken with a viewport as tall as the page, so the
    sticky save bar sits at the bottom instead of across the diagram or the steps."""
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
    shot(page, name)
    page.set_viewport_size(size)


def submit_dialog(page, button: str, message: str) -> None:
    """Submit an Unfold action dialog: the browser goes back to the page it
    was opened on (HX-Redirect, config/dialogs.py) and shows the action's message."""
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.locator("#dialog-form")).to_have_count(0)
    expect(page.get_by_text(message).first).to_be_visible()


def fill_step(page, index: int, step: dict) -> None:
    row = step_row(page, index)
    row.locator("td.field-key input").fill(step["key"])
    row.locator("td.field-type select").select_option(step["type"])
    for column in ("template", "duration", "next"):
        if column in step:
            row.locator(f"td.field-{column} input").fill(step[column])


def test_a_journey_is_built_simulated_approved_and_paused_by_its_roles(demo, sign_in, shot):
    marketer = staff_user("mia_journey", roles.MARKETER)
    reviewer = staff_user("rex_journey", roles.REVIEWER)
    operator = staff_user("otto_journey", roles.OPERATOR)

    # 1. The marketer builds the journey in the step editor.
    mia = sign_in(marketer)
    mia.goto("/admin/journeys/journey/")
    mia.get_by_title("Add journey").click()
    mia.get_by_label(re.compile(r"^Key")).fill(KEY)
    mia.get_by_label(re.compile(r"^Name")).fill(NAME)
    mia.get_by_label("Message class").select_option(label="Marketing")
    mia.get_by_label("Journey settings (YAML)").fill("trigger: {event: promo.spring_opted_in}\nreentry: once\n")
    fill_step(mia, 0, STEPS[0])
    for index, step in enumerate(STEPS[1:], start=1):
        mia.get_by_role("link", name="Add another Step").click()
        fill_step(mia, index, step)
    tall_shot(shot, mia, "marketer-fills-the-step-editor")
    mia.get_by_role("button", name="Save and continue editing").click()

    expect(mia.get_by_text(f"The journey “{NAME}” was added successfully")).to_be_visible()
    for index, step in enumerate(STEPS):
        expect(step_row(mia, index).locator("td.field-key input")).to_have_value(step["key"])
    expect(step_row(mia, 1).locator("td.field-duration input")).to_have_value("2d")
    diagram = mia.locator("svg").filter(has_text="sms-now")
    for text in ("send winback-sms", "wait 2d", "send winback-email", "on promo.spring_opted_in"):
        expect(diagram.get_by_text(text)).to_be_visible()
    tall_shot(shot, mia, "journey-editor-saved")

    journey = Journey.objects.get(key=KEY)
    assert journey.status == JourneyStatus.DRAFT
    assert journey.definition == {"trigger": {"event": "promo.spring_opted_in"}, "reentry": "once", "steps": STEPS}
    assert [s.key for s in journey.steps.order_by("position")] == [s["key"] for s in STEPS]
    assert journey.owner == marketer, "creating it through the admin makes the marketer its owner"
    assert "change_journey" in get_perms(marketer, journey), "and grants them the journey"
    assert can_change(marketer, journey) and can_publish(marketer, journey)
    assert not can_change(operator, journey), "nobody else was granted it"

    # 2. The marketer simulates the draft for a demo contact.
    mia.get_by_role("link", name="Simulate").click()
    expect(mia.get_by_text("A dry run of the real engine")).to_be_visible()
    mia.get_by_label("Contact").fill(CONTACT)
    mia.get_by_label("Events").fill('2026-03-02T00:00:00Z | promo.spring_opted_in | {"offer_code": "SPRING20"}')
    expect(mia.get_by_label("Simulate the draft")).to_be_checked()
    mia.get_by_role("button", name="Simulate").click()

    expect(mia.get_by_role("heading", name="Timeline")).to_be_visible()
    timeline = mia.locator("table").filter(has_text="When (UTC)")
    sms = timeline.get_by_role("row").filter(has_text="winback-sms (sms-now)").filter(has_text="message")
    email = timeline.get_by_role("row").filter(has_text="winback-email (email-later)").filter(has_text="message")
    expect(sms).to_contain_text(re.compile(r"2026-03-02 00:00.*sms.*sent", re.S))
    expect(email).to_contain_text(re.compile(r"2026-03-04 00:00.*email.*sent", re.S))
    expect(timeline.get_by_role("row").filter(has_text="entry: entered")).to_be_visible()
    expect(timeline.get_by_role("row").filter(has_text="wait-2d (wait)")).to_contain_text("done")
    shot(mia, "marketer-simulates-the-draft")
    assert not Enrollment.objects.filter(journey=journey).exists(), "a simulation writes nothing"

    # 3. The marketer activates; a compliance reviewer approves version 1.
    # The Simulate page's breadcrumb leads back to this journey.
    mia.locator("#header-inner, header").get_by_role("link", name=journey.name).first.click()
    expect(mia).to_have_url(re.compile(rf"/admin/journeys/journey/{journey.pk}/change/$"))
    mia.get_by_role("link", name="Activate (publish draft)").click()
    expect(mia.get_by_text("Version 1 waits for a compliance reviewer.")).to_be_visible()
    expect(shown(mia, "Status")).to_contain_text("Draft")
    version = JourneyVersion.objects.get(journey=journey)
    assert (version.number, version.status, version.created_by) == (1, VersionStatus.IN_REVIEW, "user:mia_journey")
    journey.refresh_from_db()
    assert (journey.status, journey.live_version) == (JourneyStatus.DRAFT, None)

    rex = sign_in(reviewer)
    rex.goto("/admin/journeys/journeyversion/")
    expect(rex.get_by_role("row").filter(has_text=NAME)).to_contain_text("In review")
    rex.get_by_role("link", name=NAME, exact=True).click()
    expect(shown(rex, "Status")).to_contain_text("In review")
    rex.get_by_role("link", name="Approve").click()
    rex.get_by_label("Note").fill("Offer wording and STOP text checked.")
    shot(rex, "reviewer-approves-version-1")
    submit_dialog(rex, "Approve", "Approved")
    expect(shown(rex, "Status")).to_contain_text("Approved")
    expect(rex.get_by_role("link", name="Approve", exact=True)).to_have_count(0)  # nothing left to approve
    expect(shown(rex, "Review note")).to_have_text("Offer wording and STOP text checked.")
    expect(shown(rex, "Reviewed by")).to_have_text("user:rex_journey")
    version.refresh_from_db()
    journey.refresh_from_db()
    assert (version.status, version.reviewed_by) == (VersionStatus.APPROVED, "user:rex_journey")
    assert version.review_note == "Offer wording and STOP text checked."
    assert (journey.status, journey.live_version) == (JourneyStatus.ACTIVE, version)

    mia.reload()
    expect(shown(mia, "Status")).to_contain_text("Active")
    expect(mia.get_by_role("link", name="Pause")).to_have_count(0)  # pausing is the operator's
    mia.get_by_role("link", name="Enroll contacts").click()
    mia.get_by_label("External ids").fill(CONTACT)
    submit_dialog(mia, "Enroll", "Entered: 1")
    expect(shown(mia, "Enrollments")).to_contain_text("active: 1")
    enrollment = Enrollment.objects.get(journey=journey)
    assert (enrollment.contact.external_id, enrollment.version, enrollment.status) == \
        (CONTACT, version, EnrollmentStatus.ACTIVE)

    # 4. An operator pauses the journey.
    otto = sign_in(operator)
    otto.goto("/admin/journeys/journey/")
    otto.get_by_role("link", name=KEY, exact=True).click()
    expect(shown(otto, "Status")).to_contain_text("Active")
    otto.get_by_role("link", name="Pause").click()
    expect(otto.get_by_text("Paused: enrollments wait where they are.")).to_be_visible()
    expect(shown(otto, "Status")).to_contain_text("Paused")
    # Only the action that fits the state is offered.
    expect(otto.get_by_role("link", name="Resume", exact=True)).to_be_visible()
    expect(otto.get_by_role("link", name="Pause", exact=True)).to_have_count(0)
    expect(shown(otto, "Enrollments")).to_contain_text("paused: 1")
    diagram = otto.locator("svg").filter(has_text="sms-now")
    expect(diagram).to_contain_text("waiting 1")  # the paused enrollment keeps its place at the first step
    tall_shot(shot, otto, "operator-paused-journey-with-diagram")

    journey.refresh_from_db()
    enrollment.refresh_from_db()
    assert journey.status == JourneyStatus.PAUSED
    assert journey.live_version == version, "pausing keeps the live version"
    assert enrollment.status == EnrollmentStatus.PAUSED, "its enrollment keeps its place, paused"
