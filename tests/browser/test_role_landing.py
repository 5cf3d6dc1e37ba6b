"""Each role signs in and lands on its own work, with a sidebar grouped by
task that shows only the screens the role can open."""

from __future__ import annotations

import pytest

from config import roles
from tests.conftest import staff_user

pytestmark = pytest.mark.postgres

# role -> (what the landing page shows, sidebar links it has, sidebar links it must not have)
LANDING = {
    "marketer": ("Your journeys", ["Journeys", "Templates", "Operations dashboard"],
                 ["Review queue", "Case queue", "Audit exports", "API keys", "Users"]),
    "reviewer": ("Templates waiting for your review", ["Review queue", "Audit exports", "Journey versions"],
                 ["Case queue", "API keys", "Users", "Periodic tasks"]),
    "agent": ("Support cases", ["Case queue", "Contacts"],
              ["Journeys", "Review queue", "Audit exports", "Operations dashboard", "API keys"]),
    "operator": ("Operations", ["Operations dashboard", "Journeys", "Case queue", "API keys", "Webhook endpoints"],
                 ["Review queue"]),
}


@pytest.mark.parametrize("role", list(LANDING))
def test_each_role_lands_on_its_own_work_and_sees_only_what_it_can_use(demo, sign_in, shot, role):
    landing, has, lacks = LANDING[role]

    page = sign_in(staff_user(f"{role}_landing", getattr(roles, role.upper())))

    # The link texts without their icons' ligature names.
    sidebar = {text.strip() for text in
               page.locator("#nav-sidebar-apps a span:not(.material-symbols-outlined)").all_inner_texts()}
    assert page.get_by_text(landing, exact=True).first.is_visible(), page.url
    assert set(has) <= sidebar, sorted(sidebar)
    assert not set(lacks) & sidebar, sorted(sidebar)
    shot(page, f"{role}-landing")
