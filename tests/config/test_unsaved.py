"""`config.bulk.unsaved` makes what the model's keyword constructor makes,
field for field, for every model it is used with."""

from __future__ import annotations

import datetime as dt

import pytest

from channels.models import OutboundMessage
from config.bulk import unsaved

NOW = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)


def field_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_an_unsaved_message_is_the_one_django_would_make():
    values = {"template_key": "nudge", "idempotency_key": "k1", "rung": 2, "created_at": NOW,
              "status_changed_at": NOW, "origin_kind": "journey", "origin_enrollment_id": 7, "contact_id": 3}

    fast, django = unsaved(OutboundMessage, **values), OutboundMessage(**values)

    assert field_values(fast) == field_values(django)
    assert fast.pk is None and fast._state.adding


def test_mutable_defaults_are_not_shared_between_rows():
    first, second = unsaved(OutboundMessage, idempotency_key="a"), unsaved(OutboundMessage, idempotency_key="b")
    first.content["body"] = "only mine"
    assert second.content == {}


def test_an_unknown_field_is_refused_by_name():
    with pytest.raises(TypeError, match="'contact'"):
        unsaved(OutboundMessage, contact=None)
