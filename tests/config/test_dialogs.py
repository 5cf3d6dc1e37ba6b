"""An action dialog posted by htmx navigates the browser on success
(HX-Redirect) so its message shows; a form with errors stays in the dialog."""

from __future__ import annotations

import pytest
from django.urls import reverse

from consent.models import Suppression
from tests.consent.factories import ContactFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_a_successful_dialog_action_answers_htmx_with_hx_redirect_and_keeps_its_message(client, operator):
    contact = ContactFactory()
    client.force_login(operator)
    url = reverse("admin:consent_contact_suppress_contact", args=[contact.pk])

    response = client.post(url, {"_form_submitted": "on", "reason": "manual"}, **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("admin:consent_contact_change", args=[contact.pk])
    assert Suppression.objects.filter(contact=contact).exists()
    assert "Contact suppressed." in client.get(response["HX-Redirect"]).content.decode()


def test_without_htmx_the_redirect_is_a_plain_redirect(client, operator):
    contact = ContactFactory()
    client.force_login(operator)

    response = client.post(reverse("admin:consent_contact_suppress_contact", args=[contact.pk]),
                           {"_form_submitted": "on", "reason": "manual"})

    assert response.status_code == 302 and not response.has_header("HX-Redirect")


def test_a_dialog_with_errors_is_answered_in_place(client, operator):
    contact = ContactFactory()
    client.force_login(operator)

    response = client.post(reverse("admin:consent_contact_suppress_contact", args=[contact.pk]),
                           {"_form_submitted": "on", "reason": "no-such-reason"}, **HTMX)

    assert response.status_code == 200 and not response.has_header("HX-Redirect")
    assert "Select a valid choice" in response.content.decode()
    assert not Suppression.objects.exists()
