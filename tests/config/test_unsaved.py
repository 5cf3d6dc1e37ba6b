"""`config.bulk.unsaved` makes what the model's keyword constructor makes,
field for field, for every model it is used with; `LoadedQuickly` models
read back what Django's own `from_db` builds."""

from __future__ import annotations

import datetime as dt

import pytest

from channels.models import OutboundMessage
from config.bulk import unsaved
from consent.models import Contact
from tests.consent.factories import ContactFactory

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


@pytest.mark.django_db
def test_a_row_read_back_is_the_instance_django_would_build():
    from django.db.models import Model

    contact = ContactFactory(attributes={"first_name": "Ana"})
    row = Contact.objects.filter(pk=contact.pk).values_list(*[f.attname for f in Contact._meta.concrete_fields])[0]
    names = [f.attname for f in Contact._meta.concrete_fields]

    quick = Contact.objects.get(pk=contact.pk)
    django = Model.from_db.__func__(Contact, "default", names, list(row))

    assert field_values(quick) == field_values(django)
    assert not quick._state.adding and quick._state.db == "default"


@pytest.mark.django_db
def test_a_deferred_field_is_left_out_and_loads_on_access():
    contact = ContactFactory(attributes={"first_name": "Ana"})

    quick = Contact.objects.defer("attributes").get(pk=contact.pk)

    assert quick.get_deferred_fields() == {"attributes"}
    assert quick.attributes == {"first_name": "Ana"}


@pytest.mark.django_db
def test_a_model_with_an_init_signal_receiver_is_built_the_django_way():
    from django.db.models.signals import post_init

    contact = ContactFactory()
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    post_init.connect(receiver, sender=Contact)
    try:
        Contact.objects.get(pk=contact.pk)
        unsaved(Contact, external_id="new")
    finally:
        post_init.disconnect(receiver, sender=Contact)
    assert seen == [contact.pk, None]
