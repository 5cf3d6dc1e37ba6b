"""The admin in a real browser: Playwright driving the system Chromium
(`/usr/bin/chromium`, installed by `.ci/run` from Debian's packages, never
downloaded by Playwright) against pytest-django's live server on the
PostgreSQL test database.

Each flow signs in as the role that does it and saves numbered screenshots
under `artifacts/screenshots/<test name>/` (README "Testing"), kept by CI as
artifacts. Without Chromium the tests skip with the reason, unless
BROWSER_TESTS_REQUIRED is set (as `.ci/run` does), where they fail."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from tests.conftest import TEST_PASSWORD

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Headless, and every feature that would phone home turned off: this machine's
# network is closed and Chromium would otherwise retry Google's hosts.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORT = {"width": 1360, "height": 900}


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright():
    # Playwright's sync API keeps an event loop in this thread while a browser
    # is open; the test's own ORM calls (and the database teardown) are still
    # plain synchronous code, so Django's async guard is lifted for the browser
    # modules only, never process-wide (`check --deploy` would rightly refuse it).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def chromium():
    """One browser per test module, closed with it, so no event loop outlives
    the browser tests in this process."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM) and not os.environ.get("BROWSER_TESTS_REQUIRED"):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Screens:
    """Numbered screenshots of one test, full page."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    def __call__(self, page, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shot(request) -> Screens:
    return Screens(SCREENSHOTS / re.sub(r"[^\w.-]+", "_", request.node.name))


@pytest.fixture
def demo(transactional_db):
    """Roles and the demo workspace (contacts, templates, journeys, cases)."""
    call_command("setup_roles", verbosity=0)
    call_command("seed_demo", verbosity=0)


@pytest.fixture
def sign_in(chromium, live_server):
    """sign_in(user) -> a Playwright page signed in through the real login form."""
    contexts = []

    def open_as(user: User):
        context = chromium.new_context(viewport=VIEWPORT, base_url=live_server.url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/admin/login/?next=/admin/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", TEST_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert "/admin/login/" not in page.url, f"{user.username} could not sign in"
        return page

    yield open_as
    for context in contexts:
        context.close()


def shown(page, label: str):
    """The read-only value an admin page shows next to a field label (Status, Enrollments)."""
    line = page.locator(".field-line").filter(has=page.locator("label", has_text=re.compile(f"^{label}$")))
    return line.locator(".readonly")


