"""Two reviewers deciding the same version at once: the row lock makes one
decision win and the other a clear workflow error, never two transitions."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection

from templates import services
from templates.models import TemplateVersion, VersionTransition
from tests.templates.conftest import EMAIL
from tests.templates.factories import draft_version

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def test_two_reviewers_racing_on_one_version_leave_exactly_one_decision(marketer, reviewer):
    second = User.objects.create_user("rita_reviewer", is_staff=True)
    second.groups.add(*reviewer.groups.all())
    template = services.template_create(key="race", name="Race", channel="email", message_class="operational",
                                        actor=marketer)
    version = draft_version(template, author=marketer, content=EMAIL)
    services.version_submit(version=version, actor=marketer)
    barrier, outcomes = threading.Barrier(2), []

    def decide(user_id: int, approve: bool) -> None:
        try:
            user = User.objects.get(pk=user_id)
            target = TemplateVersion.objects.get(pk=version.pk)
            barrier.wait()
            if approve:
                services.version_approve(version=target, actor=user)
            else:
                services.version_request_changes(version=target, actor=user, comment="no")
            outcomes.append("ok")
        except services.WorkflowError as error:
            outcomes.append(str(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(reviewer.pk, True)),
               threading.Thread(target=decide, args=(second.pk, False))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1, outcomes
    assert [o for o in outcomes if o != "ok"][0].startswith("race v1 is ")
    assert VersionTransition.objects.filter(version=version).exclude(from_status="draft").count() == 1
