from __future__ import annotations

import pytest

from templates import demo, services
from templates.models import Template, VersionStatus
from tests.consent.factories import ContactFactory

pytestmark = pytest.mark.django_db

CONTRACT_KEYS = [
    "onboarding-welcome-email", "onboarding-nudge-sms", "onboarding-nudge-push", "appointment-reminder-email",
    "appointment-reminder-sms", "appointment-reminder-push", "appointment-reminder-whatsapp", "payment-failed-email",
    "payment-failed-push", "payment-failed-sms", "renewal-reminder-email", "reengagement-email", "reengagement-push",
    "winback-email", "winback-sms", "post-purchase-email", "case-ack-email", "case-callback-sms",
    "case-followup-email", "case-agent-reply-email", "case-agent-reply-sms", "demo-rcs-card", "demo-in-app",
]
EVENT = {"appointment_at": "2026-12-01T10:00:00Z", "amount": "19.90", "invoice_url": "https://example.com/i/1",
         "expires_at": "2026-12-31", "case_number": "C-1", "message": "We refunded you.", "offer_code": "X"}


def test_the_demo_seeds_every_contract_template_approved_live_in_en_and_pt():
    assert demo.seed() == len(CONTRACT_KEYS) + 1
    for key in CONTRACT_KEYS:
        template = Template.objects.get(key=key)
        live = template.live_version
        assert live.status == VersionStatus.APPROVED, key
        assert sorted(v.locale for v in live.variants.all()) == ["en", "pt"], key
        assert live.approved_by.username == demo.REVIEWER != live.author.username == demo.AUTHOR
    assert {t.channel for t in Template.objects.all()} == {"email", "sms", "push", "whatsapp", "rcs", "in_app"}


def test_every_demo_template_renders_for_send_in_both_locales():
    demo.seed()
    for locale in ("en", "pt-BR"):
        contact = ContactFactory(locale=locale, timezone="America/Sao_Paulo", attributes={"first_name": "Ana"})
        for key in CONTRACT_KEYS:
            rendered = services.render_for_send(template_key=key, contact=contact,
                                                data=services.render_context(contact, EVENT))
            assert rendered.locale == locale[:2], key
            assert "{{" not in str(rendered.content), key


def test_spring_promo_waits_in_review_with_no_approved_version():
    demo.seed()
    template = Template.objects.get(key="spring-promo-email")
    assert template.live_version is None
    assert list(template.versions.values_list("status", flat=True)) == [VersionStatus.IN_REVIEW]
    assert not services.template_has_approved_version("spring-promo-email")


def test_seeding_twice_adds_nothing():
    demo.seed()
    counts = (Template.objects.count(), sum(t.versions.count() for t in Template.objects.all()))
    assert demo.seed() == 0
    assert (Template.objects.count(), sum(t.versions.count() for t in Template.objects.all())) == counts


def test_the_demo_whatsapp_template_is_provider_approved():
    demo.seed()
    live = Template.objects.get(key="appointment-reminder-whatsapp").live_version
    assert {v.wa_provider_status for v in live.variants.all()} == {"approved"}


def test_a_portuguese_contact_without_a_name_is_greeted_in_portuguese():
    demo.seed()
    contact = ContactFactory(locale="pt-PT", attributes={})
    rendered = services.render_for_send(template_key="onboarding-nudge-sms", contact=contact,
                                        data=services.render_context(contact))
    assert rendered.content["body"].startswith("Olá cliente,")
