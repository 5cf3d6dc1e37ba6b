"""Template admin: pages per role, the workflow actions, review queue, diff and preview."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from templates import services
from templates.models import VersionStatus
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template

pytestmark = pytest.mark.django_db


def version_url(version, name: str = "change") -> str:
    return reverse(f"admin:templates_templateversion_{name}", args=[version.pk])


@pytest.mark.parametrize("person", ["marketer", "reviewer", "agent", "operator"])
def test_template_pages_load_for_every_role(client, request, person, approved):
    client.force_login(request.getfixturevalue(person))
    for url in (reverse("admin:templates_template_changelist"),
                reverse("admin:templates_template_change", args=[approved.template_id]),
                reverse("admin:templates_templateversion_changelist"), version_url(approved),
                reverse("admin:templates_templateversion_review_queue"),
                reverse("admin:templates_template_diff", args=[approved.template_id]),
                version_url(approved, "preview")):
        assert client.get(url).status_code == 200, url


def test_outsiders_are_refused_every_template_page(client, outsider, approved):
    client.force_login(outsider)
    for url in (reverse("admin:templates_template_changelist"),
                reverse("admin:templates_template_change", args=[approved.template_id]),
                reverse("admin:templates_templateversion_changelist"), version_url(approved),
                reverse("admin:templates_templateversion_review_queue"), version_url(approved, "preview")):
        assert client.get(url).status_code in (403, 302), url
    assert client.get(reverse("admin:templates_template_diff", args=[approved.template_id])).status_code == 404


def test_the_template_list_does_not_grow_queries_with_rows(client, marketer, django_assert_max_num_queries):
    approved_template("one", "sms", content={"body": "1"})
    client.force_login(marketer)
    with django_assert_max_num_queries(40) as first:
        client.get(reverse("admin:templates_template_changelist"))
    for n in range(5):
        approved_template(f"more-{n}", "sms", content={"body": "x"})
    with django_assert_max_num_queries(len(first.captured_queries)):
        client.get(reverse("admin:templates_template_changelist"))


def test_the_review_queue_shows_what_waits_since_when_and_who_wrote_it(client, reviewer, in_review):
    client.force_login(reviewer)
    page = client.get(reverse("admin:templates_templateversion_review_queue"))
    rows = page.context["rows"]
    assert [row["version"] for row in rows] == [in_review]
    assert rows[0]["author"].username == "mia_marketer" and rows[0]["submitted_at"] is not None
    assert rows[0]["may_review"] is True
    assert "mia_marketer" in page.content.decode()
    assert in_review.editors.filter(username="mia_marketer").exists() and rows[0]["editors"] == [], (
        "the author is not listed again as an editor")


def test_the_author_sees_the_queue_but_may_not_review_their_own(client, marketer, in_review):
    client.force_login(marketer)
    rows = client.get(reverse("admin:templates_templateversion_review_queue")).context["rows"]
    assert rows[0]["may_review"] is False


def test_a_reviewer_approves_with_the_action(client, reviewer, in_review):
    client.force_login(reviewer)
    response = client.post(version_url(in_review, "approve"), {"_form_submitted": "on", "comment": "ok"})
    assert response.status_code == 302
    in_review.refresh_from_db()
    assert in_review.status == VersionStatus.APPROVED
    assert in_review.transitions.first().comment == "ok"


def test_the_author_cannot_use_the_approve_action(client, marketer, in_review):
    client.force_login(marketer)
    response = client.post(version_url(in_review, "approve"), {"_form_submitted": "on", "comment": "me"})
    assert response.status_code == 403
    in_review.refresh_from_db()
    assert in_review.status == VersionStatus.IN_REVIEW


def test_request_changes_without_a_comment_shows_the_form_again(client, reviewer, in_review):
    client.force_login(reviewer)
    response = client.post(version_url(in_review, "request_changes"), {"_form_submitted": "on", "comment": ""})
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    in_review.refresh_from_db()
    assert in_review.status == VersionStatus.IN_REVIEW


def test_a_marketer_submits_a_draft_and_an_invalid_one_gets_a_message(client, marketer, draft, template):
    client.force_login(marketer)
    assert client.post(version_url(draft, "submit_for_review"), {"_form_submitted": "on"}).status_code == 302
    draft.refresh_from_db()
    assert draft.status == VersionStatus.IN_REVIEW
    empty = services.version_create_draft(template=template, actor=marketer)
    services.variant_delete(variant=empty.variants.get(), actor=marketer)
    response = client.post(version_url(empty, "submit_for_review"), {"_form_submitted": "on"}, follow=True)
    assert "cannot go to review" in response.content.decode()


def test_a_marketer_edits_a_draft_variant_in_the_admin(client, marketer, draft):
    variant = draft.variants.get()
    variable = draft.variables.get()
    client.force_login(marketer)
    data = {
        "sender_from_email": "news@example.com", "sender_from_name": "", "sender_reply_to": "",
        "variants-TOTAL_FORMS": "1", "variants-INITIAL_FORMS": "1", "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000", "variants-0-id": str(variant.pk), "variants-0-version": str(draft.pk),
        "variants-0-locale": "en", "variants-0-subject": "Edited {{ contact.first_name }}",
        "variants-0-preheader": "", "variants-0-html_body": "<p>x</p>", "variants-0-text_body": "",
        "variables-TOTAL_FORMS": "1", "variables-INITIAL_FORMS": "1", "variables-MIN_NUM_FORMS": "0",
        "variables-MAX_NUM_FORMS": "1000", "variables-0-id": str(variable.pk), "variables-0-version": str(draft.pk),
        "variables-0-path": "contact.first_name", "variables-0-type": "string", "variables-0-fallback": "friend",
    }
    response = client.post(version_url(draft), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    draft.refresh_from_db()
    assert draft.sender_from_email == "news@example.com"
    assert draft.variants.get().subject == "Edited {{ contact.first_name }}"
    assert draft.variables.get().fallback == "friend"


def test_an_approved_version_page_is_read_only(client, marketer, approved):
    client.force_login(marketer)
    page = client.get(version_url(approved))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert client.post(version_url(approved), {"sender_from_email": "x@example.com"}).status_code == 403


def test_new_draft_action_copies_the_live_version(client, marketer, approved):
    client.force_login(marketer)
    response = client.get(reverse("admin:templates_template_new_draft", args=[approved.template_id]))
    assert response.status_code == 302
    draft = approved.template.versions.get(number=2)
    assert response.url == version_url(draft)
    assert services.content_snapshot(draft) == services.content_snapshot(approved)


def test_a_reviewer_rolls_back_with_the_make_live_action(client, reviewer, marketer, approved, template):
    newer = services.version_create_draft(template=template, actor=marketer)
    services.version_submit(version=newer, actor=marketer)
    services.version_approve(version=newer, actor=reviewer)
    client.force_login(reviewer)
    url = reverse("admin:templates_template_make_live", args=[template.pk])
    response = client.post(url, {"_form_submitted": "on", "version": approved.pk, "comment": "bad v2"})
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.live_version == approved


def test_the_diff_shows_two_versions_side_by_side(client, reviewer, marketer, approved, template):
    newer = services.version_create_draft(template=template, actor=marketer)
    services.variant_save(version=newer, actor=marketer, locale="en", subject="Brand new subject")
    services.variable_save(version=newer, actor=marketer, path="event.offer_code", required=True)
    client.force_login(reviewer)
    page = client.get(reverse("admin:templates_template_diff", args=[template.pk]),
                      {"left": approved.pk, "right": newer.pk})
    html = page.content.decode()
    assert page.context["left"] == approved and page.context["right"] == newer
    assert "Brand new subject" in html and "Hi {{ contact.first_name }}" in html
    assert "event.offer_code (string, required" in html
    assert 'class="diff"' in html


def test_the_email_preview_renders_for_a_contact_in_a_frame(client, reviewer, approved):
    ContactFactory(external_id="cus_ana", attributes={"first_name": "Ana <3"})
    client.force_login(reviewer)
    page = client.get(version_url(approved, "preview"), {"contact": "cus_ana", "locale": "", "render": "1"})
    html = page.content.decode()
    assert page.context["content"]["subject"] == "Hi Ana <3"
    assert 'srcdoc="&lt;p&gt;Hello Ana &amp;lt;3&lt;/p&gt;"' in html
    assert "PREVIEW" in html


def test_the_preview_of_a_draft_says_it_is_not_sendable(client, marketer, draft):
    client.force_login(marketer)
    html = client.get(version_url(draft, "preview"), {"contact": "", "render": "1"}).content.decode()
    assert "not sendable" in html


def test_the_sms_preview_shows_segments_and_warns_past_the_setting(client, reviewer, settings):
    settings.TEMPLATES_SMS_SEGMENT_WARNING = 1
    template = approved_template("long-sms", "sms", content={"body": "x" * 200})
    client.force_login(reviewer)
    page = client.get(version_url(template.live_version, "preview"), {"render": "1"})
    html = page.content.decode()
    assert "GSM-7 · 2 segments" in html
    assert "more than 1 segments" in html


def test_push_and_rcs_previews_show_cards(client, reviewer):
    push = approved_template("p", "push", content={"title": "Push title", "body": "Push body"})
    rcs = approved_template("r", "rcs", content={
        "title": "Card", "description": "D", "fallback_text": "F",
        "suggestions": [{"type": "reply", "text": "Yes please", "value": "YES"}]})
    client.force_login(reviewer)
    assert 'id="push-card"' in client.get(version_url(push.live_version, "preview"), {"r": 1}).content.decode()
    html = client.get(version_url(rcs.live_version, "preview"), {"r": 1}).content.decode()
    assert 'id="rcs-card"' in html and "Yes please" in html


def test_the_preview_explains_a_render_failure(client, reviewer):
    template = approved_template("needs", "sms", content={"body": "{{ event.amount }}"},
                                 variables=[{"path": "event.amount", "type": "money", "required": True}])
    client.force_login(reviewer)
    page = client.get(version_url(template.live_version, "preview"), {"render": "1"})
    assert page.context["render_error"].reason == "missing_variable"
    assert "missing required variable event.amount" in page.content.decode()


def test_the_preview_form_rejects_an_unknown_contact_and_bad_json(client, reviewer, approved):
    client.force_login(reviewer)
    page = client.get(version_url(approved, "preview"), {"contact": "nobody", "event": "{nope"})
    assert "No contact you may preview has the external id" in page.content.decode()
    assert "Not JSON" in page.content.decode()


def test_a_marketer_creates_a_template_in_the_admin_and_owns_it(client, marketer):
    client.force_login(marketer)
    response = client.post(reverse("admin:templates_template_add"), {
        "key": "new-offer", "name": "New offer", "description": "", "channel": "sms",
        "message_class": "marketing", "team": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0", "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    })
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    template = services.Template.objects.get(key="new-offer")
    assert template.owner == marketer
    assert marketer.has_perm("templates.change_template", template)


@pytest.mark.parametrize("person", ["reviewer", "agent", "operator", "outsider"])
def test_only_marketers_may_add_templates(client, request, person):
    client.force_login(request.getfixturevalue(person))
    assert client.get(reverse("admin:templates_template_add")).status_code == 403


def test_history_records_who_changed_a_version_and_why(approved, reviewer):
    record = approved.history.first()
    assert record.history_change_reason == "in_review -> approved"
    assert approved.template.history.first().history_change_reason.startswith("live: v1")


def test_history_names_the_person_behind_a_service_call(approved, reviewer):
    assert approved.history.first().history_user == reviewer


def test_an_sms_draft_shows_encoding_segments_and_the_warning_while_editing(client, marketer, settings):
    settings.TEMPLATES_SMS_SEGMENT_WARNING = 2
    template = services.template_create(key="long", name="Long", channel="sms", message_class="operational",
                                        actor=marketer)
    version = services.version_create_draft(template=template, actor=marketer)
    services.variant_save(version=version, actor=marketer, locale="en", body="😀" * 140)
    client.force_login(marketer)
    html = client.get(version_url(version)).content.decode()
    assert "UCS-2, 280 characters, 5 segment(s) — more than 2 segments" in html
    assert "message_templates/sms_counter.js" in html  # the live counter while typing


@pytest.fixture
def template_reader(db):
    """Reads templates but not contacts: a role without consent.view_contact."""
    user = User.objects.create_user("tia_templates", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="templates", codename__in=["view_template", "view_templateversion"]))
    return User.objects.get(pk=user.pk)


def test_a_viewer_without_contact_access_cannot_preview_a_real_contact(client, template_reader, approved):
    ContactFactory(external_id="cus_secret", attributes={"first_name": "Secret"})
    assert not template_reader.has_perm("consent.view_contact")
    client.force_login(template_reader)
    page = client.get(version_url(approved, "preview"), {"contact": "cus_secret", "render": "1"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "content" not in page.context and "Secret" not in html
    assert "No contact you may preview has the external id" in html
    assert "only internal seed contacts" in html


def test_a_viewer_without_contact_access_may_preview_an_internal_seed_contact(client, template_reader, approved,
                                                                             settings):
    settings.TEMPLATES_INTERNAL_SEED_ADDRESSES = ["qa@example.com"]
    ContactFactory(external_id="qa_seed", email="qa@example.com", attributes={"first_name": "Quinn"})
    client.force_login(template_reader)
    page = client.get(version_url(approved, "preview"), {"contact": "qa_seed", "render": "1"})
    assert page.context["content"]["subject"] == "Hi Quinn"


def test_a_viewer_with_contact_access_may_preview_any_contact(client, reviewer, approved):
    ContactFactory(external_id="cus_real", attributes={"first_name": "Rita"})
    assert reviewer.has_perm("consent.view_contact")
    client.force_login(reviewer)
    page = client.get(version_url(approved, "preview"), {"contact": "cus_real", "render": "1"})
    assert page.context["content"]["subject"] == "Hi Rita"
