from __future__ import annotations

import pytest

from templates import services
from templates.models import ImmutableVersionError, TemplateVariable, TemplateVariant, TemplateVersion

pytestmark = pytest.mark.django_db


def test_saving_changed_content_of_an_approved_version_raises(approved):
    approved.sender_from_email = "other@example.com"
    with pytest.raises(ImmutableVersionError, match="cannot change"):
        approved.save()
    assert TemplateVersion.objects.get(pk=approved.pk).sender_from_email == ""


def test_saving_a_variant_of_an_approved_version_raises(approved):
    variant = approved.variants.get()
    variant.subject = "Sneaky"
    with pytest.raises(ImmutableVersionError):
        variant.save()
    with pytest.raises(ImmutableVersionError):
        TemplateVariant(version=approved, locale="de", subject="Hallo").save()
    with pytest.raises(ImmutableVersionError):
        variant.delete()
    assert approved.variants.get().subject == "Hi {{ contact.first_name }}"


def test_variables_of_an_approved_version_cannot_change(approved):
    variable = approved.variables.get()
    variable.required = True
    with pytest.raises(ImmutableVersionError):
        variable.save()
    with pytest.raises(ImmutableVersionError):
        TemplateVariable(version=approved, path="event.x").save()


def test_a_version_in_review_is_frozen_too(in_review, marketer):
    with pytest.raises(services.WorkflowError, match="new draft version"):
        services.variant_save(version=in_review, actor=marketer, locale="en", subject="Changed while in review")


def test_an_approved_version_cannot_be_deleted(approved):
    with pytest.raises(ImmutableVersionError):
        approved.delete()


def test_editing_an_approved_version_makes_a_new_draft_and_leaves_it_as_it_was(approved, template, marketer):
    before = services.content_hash(approved)
    draft = services.version_create_draft(template=template, actor=marketer, based_on=approved)
    services.variant_save(version=draft, actor=marketer, locale="en", subject="New words")
    approved.refresh_from_db()
    assert services.content_hash(approved) == before == approved.content_hash
    assert draft.variants.get().subject == "New words"


def test_the_provider_status_of_an_approved_whatsapp_variant_can_still_be_refreshed(marketer, reviewer):
    from tests.templates.factories import approved_template

    template = approved_template("wa", "whatsapp", content={"template_name": "hello", "body": "Hi",
                                                           "provider_status": "pending"})
    variant = template.live_version.variants.get()
    assert services.whatsapp_status_update(variant=variant, status="approved")
    variant.refresh_from_db()
    assert variant.wa_provider_status == "approved"


@pytest.fixture
def empty_draft(approved, template, marketer) -> TemplateVersion:
    draft = services.version_create_draft(template=template, actor=marketer, based_on=approved)
    for variant in draft.variants.all():
        services.variant_delete(variant=variant, actor=marketer)
    for variable in draft.variables.all():
        services.variable_delete(variable=variable, actor=marketer)
    return draft


def test_a_variant_cannot_be_moved_out_of_an_approved_version(approved, empty_draft):
    variant = approved.variants.get()
    variant.version = empty_draft
    with pytest.raises(ImmutableVersionError, match=f"Version {approved.pk} is approved"):
        variant.save()
    with pytest.raises(ImmutableVersionError):
        variant.delete()  # the row deleted is still the approved one's
    assert list(approved.variants.values_list("pk", flat=True)) == [variant.pk]
    assert not empty_draft.variants.exists()


def test_a_variable_cannot_be_moved_out_of_an_approved_version(approved, empty_draft):
    variable = approved.variables.get()
    variable.version = empty_draft
    with pytest.raises(ImmutableVersionError, match=f"Version {approved.pk} is approved"):
        variable.save()
    assert list(approved.variables.values_list("pk", flat=True)) == [variable.pk]


def test_a_variant_cannot_be_moved_into_an_approved_version_either(approved, empty_draft, marketer):
    moving = services.variant_save(version=empty_draft, actor=marketer, locale="de", subject="Hallo")
    moving.version = approved
    with pytest.raises(ImmutableVersionError):
        moving.save()


def test_variants_of_drafts_still_move_between_drafts(empty_draft, template, marketer):
    other = services.version_create_draft(template=template, actor=marketer)
    variant = services.variant_save(version=other, actor=marketer, locale="de", subject="Hallo")
    variant.version = empty_draft
    variant.save()
    assert empty_draft.variants.get().subject == "Hallo"
