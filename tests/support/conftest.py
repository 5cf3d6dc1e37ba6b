"""Support fixtures: two teams (Billing with agent ada and supervisor sam,
Tech with agent tom), their cases, and the case templates."""

from __future__ import annotations

import importlib

import pytest

from support.models import KeywordRule, SlaPolicy
from tests.support import factories

_defaults = importlib.import_module("support.migrations.0002_defaults")


@pytest.fixture(autouse=True)
def default_keyword_rules_and_sla_policies(request):
    """The keyword rules and SLA policies support's data migration seeds, there
    for every test that uses the database: a transactional test run earlier by
    the same xdist worker flushes the tables, and with them these rows."""
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames)
    if not uses_db:
        return
    request.getfixturevalue("transactional_db" if "transactional_db" in request.fixturenames else "db")
    _defaults.seed_rules_and_policies(KeywordRule, SlaPolicy)


@pytest.fixture
def sam(db):
    return factories.person("sam_supervisor", email="sam@example.com")


@pytest.fixture
def billing(db, sam):
    return factories.team("Billing", supervisor=sam)


@pytest.fixture
def tech(db):
    return factories.team("Tech", zone="America/New_York")


@pytest.fixture
def ada(billing):
    """An agent in the Billing team."""
    return factories.person("ada_billing", billing.group, email="ada@example.com")


@pytest.fixture
def tom(tech):
    """An agent in the Tech team."""
    return factories.person("tom_tech", tech.group)


@pytest.fixture
def billing_case(billing):
    return factories.case(team_=billing, subject="Charged twice")


@pytest.fixture
def tech_case(tech):
    return factories.case(team_=tech, subject="App crashes")


@pytest.fixture
def case_templates(db):
    factories.case_templates()
