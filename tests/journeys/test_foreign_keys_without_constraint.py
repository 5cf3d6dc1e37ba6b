"""The foreign keys that have no database constraint (journeys/models.py says
why): exactly these, each pointing at rows no one can delete, each column
still indexed, and the contact's constraint kept beside them."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory

OUR_APPS = {"journeys", "channels", "consent", "support", "analytics", "templates", "config"}
WITHOUT_CONSTRAINT = {
    ("journeys.Enrollment", "journey"),
    ("journeys.Enrollment", "version"),
    ("journeys.Enrollment", "trigger_event"),
    ("journeys.StepExecution", "enrollment"),
    ("journeys.EntryDecision", "journey"),
    ("journeys.EntryDecision", "version"),
    ("journeys.EntryDecision", "event"),
    ("channels.DeliveryEvent", "message"),
}


def fields_without_constraint():
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS or model.__name__.startswith("Historical"):
            continue  # simple-history's copies never constrain: they outlive what they copy
        for field in model._meta.concrete_fields:
            if field.is_relation and not field.db_constraint:
                yield model, field


def test_only_the_listed_foreign_keys_go_without_a_constraint():
    found = {(model._meta.label, field.name) for model, field in fields_without_constraint()}
    assert found == WITHOUT_CONSTRAINT


@pytest.mark.django_db
def test_what_they_point_at_cannot_be_deleted_in_the_admin():
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    request = RequestFactory().get("/admin/")
    request.user = superuser
    targets = {field.related_model for _model, field in fields_without_constraint()}
    assert {t._meta.label for t in targets} == {"journeys.Journey", "journeys.JourneyVersion", "journeys.Event",
                                                 "journeys.Enrollment", "channels.OutboundMessage"}
    for target in targets:
        assert not admin.site.get_model_admin(target).has_delete_permission(request), target._meta.label


@pytest.mark.django_db
def test_the_database_has_no_constraint_but_an_index_and_keeps_the_contacts():
    for model, field in fields_without_constraint():
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
        on_column = [c for c in constraints.values() if c["columns"] and c["columns"][0] == field.column]
        assert not any(c["foreign_key"] for c in on_column), (model._meta.label, field.name)
        assert any(c["index"] or c["unique"] for c in on_column), (model._meta.label, field.name)
        contact = [c for c in constraints.values() if c["columns"] == ["contact_id"] and c["foreign_key"]]
        if any(f.name == "contact" for f in model._meta.concrete_fields):
            assert contact, f"{model._meta.label} lost its contact constraint"
