from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from templates import services
from templates.models import LiveVersionChange, TemplateVersion, VersionStatus, VersionTransition
from tests.templates.conftest import EMAIL
from tests.templates.factories import draft_version

pytestmark = pytest.mark.django_db


def test_a_draft_goes_to_review_then_approved_and_becomes_live(draft, marketer, reviewer):
    services.version_submit(version=draft, actor=marketer, comment="ready")
    approved = services.version_approve(version=draft, actor=reviewer, comment="fine")
    assert approved.status == VersionStatus.APPROVED
    assert approved.approved_by == reviewer
    assert approved.template.live_version == approved
    assert LiveVersionChange.objects.get(to_version=approved).is_rollback is False


def test_every_transition_records_who_when_comment_and_content_hash(draft, marketer, reviewer):
    services.version_submit(version=draft, actor=marketer, comment="please look")
    services.version_request_changes(version=draft, actor=reviewer, comment="shorter subject")
    services.variant_save(version=draft, actor=marketer, locale="en", subject="Hi")
    services.version_submit(version=draft, actor=marketer)
    services.version_approve(version=draft, actor=reviewer, comment="ok")
    steps = list(VersionTransition.objects.filter(version=draft).order_by("at", "id"))
    assert [(s.from_status, s.to_status, s.actor) for s in steps] == [
        ("draft", "in_review", marketer), ("in_review", "changes_requested", reviewer),
        ("changes_requested", "in_review", marketer), ("in_review", "approved", reviewer),
    ]
    assert steps[1].comment == "shorter subject"
    assert steps[0].content_hash != steps[2].content_hash  # the subject changed in between
    draft.refresh_from_db()
    assert draft.content_hash == steps[3].content_hash == services.content_hash(draft)


def test_the_author_cannot_approve_their_own_version(in_review, marketer, reviewer):
    marketer.groups.add(*reviewer.groups.all())  # even with the reviewer role
    marketer = User.objects.get(pk=marketer.pk)
    with pytest.raises(services.NotAllowed, match="four eyes"):
        services.version_approve(version=in_review, actor=marketer)
    in_review.refresh_from_db()
    assert in_review.status == VersionStatus.IN_REVIEW


def test_a_reviewer_who_edited_the_draft_cannot_approve_it(template, marketer, reviewer):
    services.template_grant(template=template, actor=marketer, user=reviewer)
    reviewer.groups.add(*marketer.groups.all())
    reviewer = User.objects.get(pk=reviewer.pk)
    version = draft_version(template, author=marketer, content=EMAIL)
    services.variant_save(version=version, actor=reviewer, locale="en", subject="Edited by the reviewer")
    services.version_submit(version=version, actor=marketer)
    with pytest.raises(services.NotAllowed, match="wrote or edited"):
        services.version_approve(version=version, actor=reviewer)


def test_a_marketer_cannot_approve_anything(template, marketer, reviewer, db):
    other = User.objects.create_user("mo_marketer", is_staff=True)
    other.groups.add(*marketer.groups.all())
    version = draft_version(template, author=marketer, content=EMAIL)
    services.version_submit(version=version, actor=marketer)
    with pytest.raises(services.NotAllowed, match="only a compliance reviewer"):
        services.version_approve(version=version, actor=User.objects.get(pk=other.pk))


def test_a_superuser_cannot_approve_their_own_version_by_default(superuser, reviewer):
    template = services.template_create(key="su", name="Su", channel="email", message_class="operational",
                                        actor=superuser)
    version = draft_version(template, author=superuser, content=EMAIL)
    services.version_submit(version=version, actor=superuser)
    with pytest.raises(services.NotAllowed, match="four eyes"):
        services.version_approve(version=version, actor=superuser)
    assert services.version_approve(version=version, actor=reviewer).status == VersionStatus.APPROVED


def test_a_superuser_may_approve_their_own_version_when_the_setting_allows(superuser, settings):
    settings.TEMPLATES_ALLOW_SELF_APPROVAL = True
    template = services.template_create(key="su", name="Su", channel="email", message_class="operational",
                                        actor=superuser)
    version = draft_version(template, author=superuser, content=EMAIL)
    services.version_submit(version=version, actor=superuser)
    assert services.version_approve(version=version, actor=superuser).status == VersionStatus.APPROVED


def test_the_setting_does_not_let_a_plain_reviewer_approve_their_own_work(template, marketer, reviewer, settings):
    settings.TEMPLATES_ALLOW_SELF_APPROVAL = True
    reviewer.groups.add(*marketer.groups.all())
    reviewer = User.objects.get(pk=reviewer.pk)
    services.template_grant(template=template, actor=marketer, user=reviewer)
    version = draft_version(template, author=reviewer, content=EMAIL)
    services.version_submit(version=version, actor=reviewer)
    with pytest.raises(services.NotAllowed, match="four eyes"):
        services.version_approve(version=version, actor=reviewer)


def test_a_superuser_may_approve_someone_elses_version(in_review, superuser):
    assert services.version_approve(version=in_review, actor=superuser).status == VersionStatus.APPROVED


def test_only_a_reviewer_may_request_changes_and_must_say_why(in_review, marketer, reviewer):
    with pytest.raises(services.NotAllowed):
        services.version_request_changes(version=in_review, actor=marketer, comment="no")
    with pytest.raises(services.WorkflowError, match="say what needs to change"):
        services.version_request_changes(version=in_review, actor=reviewer, comment="  ")
    sent_back = services.version_request_changes(version=in_review, actor=reviewer, comment="fix the tone")
    assert sent_back.status == VersionStatus.CHANGES_REQUESTED


@pytest.mark.parametrize("step", ["approve", "request_changes", "archive"])
def test_a_draft_cannot_skip_review(draft, reviewer, step):
    service = getattr(services, f"version_{step}")
    with pytest.raises(services.WorkflowError):
        service(version=draft, actor=reviewer, comment="skip")
    draft.refresh_from_db()
    assert draft.status == VersionStatus.DRAFT


def test_an_approved_version_cannot_go_back_to_review(approved, marketer):
    with pytest.raises(services.WorkflowError, match="cannot move to in review"):
        services.version_submit(version=approved, actor=marketer)


def test_a_version_without_the_default_locale_cannot_go_to_review(template, marketer):
    version = draft_version(template, author=marketer, content=EMAIL, locales=("pt",))
    with pytest.raises(services.WorkflowError, match="workspace default locale"):
        services.version_submit(version=version, actor=marketer)


def test_an_empty_email_cannot_go_to_review(template, marketer):
    version = draft_version(template, author=marketer, content={"subject": "Hi"})
    with pytest.raises(services.WorkflowError, match="needs a HTML or text body"):
        services.version_submit(version=version, actor=marketer)


def test_someone_who_may_not_edit_the_template_cannot_submit_it(draft, agent):
    with pytest.raises(services.NotAllowed):
        services.version_submit(version=draft, actor=agent)


def test_the_live_version_cannot_be_archived_but_an_older_approved_one_can(approved, template, marketer, reviewer):
    with pytest.raises(services.WorkflowError, match="is live"):
        services.version_archive(version=approved, actor=reviewer)
    newer = services.version_create_draft(template=template, actor=marketer)
    services.version_submit(version=newer, actor=marketer)
    services.version_approve(version=newer, actor=reviewer)
    archived = services.version_archive(version=approved, actor=marketer, comment="superseded")
    assert archived.status == VersionStatus.ARCHIVED


def test_rollback_makes_an_older_approved_version_live_and_is_audited(approved, template, marketer, reviewer):
    newer = services.version_create_draft(template=template, actor=marketer)
    services.variant_save(version=newer, actor=marketer, locale="en", subject="New subject")
    services.version_submit(version=newer, actor=marketer)
    services.version_approve(version=newer, actor=reviewer)
    services.template_set_live(template=template, version=approved, actor=reviewer, comment="complaints about v2")
    template.refresh_from_db()
    assert template.live_version == approved
    change = LiveVersionChange.objects.filter(template=template).first()
    assert (change.from_version, change.to_version, change.actor, change.is_rollback) == (newer, approved, reviewer,
                                                                                          True)
    assert change.comment == "complaints about v2"


def test_rollback_refuses_marketers_drafts_and_a_missing_reason(approved, template, marketer, reviewer):
    draft = services.version_create_draft(template=template, actor=marketer)
    with pytest.raises(services.NotAllowed):
        services.template_set_live(template=template, version=approved, actor=marketer, comment="x")
    with pytest.raises(services.WorkflowError, match="only an approved version"):
        services.template_set_live(template=template, version=draft, actor=reviewer, comment="x")
    with pytest.raises(services.WorkflowError, match="already live"):
        services.template_set_live(template=template, version=approved, actor=reviewer, comment="x")
    newer = services.version_create_draft(template=template, actor=marketer)
    services.version_submit(version=newer, actor=marketer)
    services.version_approve(version=newer, actor=reviewer)
    with pytest.raises(services.WorkflowError, match="say why"):
        services.template_set_live(template=template, version=approved, actor=reviewer, comment=" ")


def test_a_new_draft_copies_the_content_of_the_version_it_is_based_on(approved, template, marketer):
    draft = services.version_create_draft(template=template, actor=marketer, based_on=approved)
    assert draft.number == approved.number + 1
    assert services.content_snapshot(draft) == services.content_snapshot(approved)
    assert list(TemplateVersion.objects.filter(template=template).values_list("status", flat=True)) == [
        "draft", "approved"]
