"""Exploration draft."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ROLE, staff_member

pytestmark = pytest.mark.postgres


def test_explore(demo, sign_in, shot):
    marketer = staff_member("mia_browser", ROLE["marketer"])
    mia = sign_in(marketer)
    shot(mia, "landing")
    mia.get_by_role("link", name="New template").first.click()
    shot(mia, "add-form")
    mia.get_by_label("Key").fill("browser-welcome-sms")
    mia.get_by_label("Name").fill("Welcome SMS")
    mia.get_by_label("Channel").select_option("sms")
    mia.get_by_label("Message class").select_option("operational")
    mia.get_by_role("button", name="Save and continue editing").click()
    shot(mia, "template-saved")
    mia.get_by_role("link", name="New draft version").click()
    shot(mia, "draft-v1")
    mia.get_by_role("link", name="Add another Locale variant").click()
    mia.get_by_role("link", name="Add another Template variable").click()
    shot(mia, "added-rows")
    print(mia.locator("form#templateversion_form").inner_html()[-6000:])
