from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from templates import services
from templates.models import Template, TemplateVersion
from tests.consent.factories import ContactFactory
from tests.templates.factories import draft_version

EMAIL = {"subject": "Hi {{ contact.first_name }}", "html": "<p>Hello {{ contact.first_name }}</p>"}


@pytest.fixture
def template(marketer) -> Template:
    return services.template_create(key="welcome-email", name="Welcome", channel="email",
                                    message_class="operational", actor=marketer)


@pytest.fixture
def draft(template, marketer) -> TemplateVersion:
    return draft_version(template, author=marketer, content=EMAIL, locales=("en",),
                         variables=[{"path": "contact.first_name", "fallback": "there"}])


@pytest.fixture
def in_review(draft, marketer) -> TemplateVersion:
    return services.version_submit(version=draft, actor=marketer)


@pytest.fixture
def approved(in_review, reviewer) -> TemplateVersion:
    return services.version_approve(version=in_review, actor=reviewer)


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("sue_super", "sue@example.com", "pw-for-tests-only")


@pytest.fixture
def contact(db):
    return ContactFactory(locale="en", attributes={"first_name": "Ana"})
