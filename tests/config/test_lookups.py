"""`field__any` (config/lookups.py) must select exactly what `field__in`
selects, for ids, foreign keys and strings, with duplicates, NULLs and empty
lists, while sending the list as one array parameter."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import CharField, Value
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from config.lookups import AnyOf
from consent.models import ConsentRecord, Contact
from tests.consent.factories import ConsentRecordFactory, ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def contacts():
    return [ContactFactory(email=f"any{i}@example.com") for i in range(6)]


def test_any_selects_what_in_selects(contacts):
    ids = [c.pk for c in contacts]
    emails = [c.email for c in contacts]

    @settings(max_examples=60, deadline=None)
    @given(picked=st.lists(st.sampled_from([*ids, ids[-1] + 1000, None]), max_size=12),
           picked_emails=st.lists(st.sampled_from([*emails, "nobody@example.com"]), max_size=8))
    def check(picked, picked_emails):
        by_any = set(Contact.objects.filter(pk__any=picked).values_list("pk", flat=True))
        by_in = set(Contact.objects.filter(pk__in=picked).values_list("pk", flat=True))
        assert by_any == by_in
        assert (set(Contact.objects.filter(email__any=picked_emails).values_list("pk", flat=True))
                == set(Contact.objects.filter(email__in=picked_emails).values_list("pk", flat=True)))

    check()


def test_any_on_a_foreign_key(contacts):
    ConsentRecordFactory(contact=contacts[0])
    ConsentRecordFactory(contact=contacts[2])
    wanted = [contacts[0].pk, contacts[1].pk]
    assert list(ConsentRecord.objects.filter(contact_id__any=wanted).values_list("contact_id", flat=True)) == [
        contacts[0].pk]


def test_any_sends_one_array_parameter_on_postgresql(contacts):
    if connection.vendor != "postgresql":
        pytest.skip("the array form is PostgreSQL's; elsewhere it is IN")
    with CaptureQueriesContext(connection) as ctx:
        assert Contact.objects.filter(pk__any=[c.pk for c in contacts]).count() == len(contacts)
    sql = ctx.captured_queries[0]["sql"]
    assert "= ANY(" in sql and " IN (" not in sql


def test_an_empty_list_selects_nothing_without_a_query():
    with CaptureQueriesContext(connection) as ctx:
        assert list(Contact.objects.filter(pk__any=[])) == []
    assert ctx.captured_queries == []


def test_a_value_longer_than_the_column_matches_nothing():
    kept = ContactFactory(external_id="x" * 128)
    assert not Contact.objects.filter(external_id__any=["x" * 200]).exists()
    assert Contact.objects.filter(external_id__any=[kept.external_id]).exists()


def test_expressions_in_the_list_work_as_with_in(contacts):
    from django.db.models import F

    assert Contact.objects.filter(pk__any=[F("id")]).count() == Contact.objects.filter(pk__in=[F("id")]).count()


def test_any_matches_strings_with_array_syntax_in_them():
    """The list travels as an array's text form: quotes, backslashes, commas,
    braces, spaces and the word NULL must stay part of the value."""
    awkward = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)

    @settings(max_examples=80, deadline=None)
    @given(stored=st.lists(awkward | st.sampled_from(['"', "\\", "a,b", "{x}", " NULL ", "NULL", "", '\\"']),
                           min_size=1, max_size=4, unique=True),
           extra=st.lists(awkward, max_size=4))
    def check(stored, extra):
        Contact.objects.all().delete()
        for value in stored:
            ContactFactory(external_id=value)
        picked = stored[:2] + extra
        assert (sorted(Contact.objects.filter(external_id__any=picked).values_list("external_id", flat=True))
                == sorted(Contact.objects.filter(external_id__in=picked).values_list("external_id", flat=True)))

    check()


def test_values_of_another_type_are_prepared_as_in_prepares_them(contacts):
    """A list already of the column's type goes as it is; any other value
    (a digit string for an id, an id for a string column) is converted
    the way `__in` converts it, not sent as the wrong type."""
    ids = [c.pk for c in contacts]
    mixed = [str(ids[0]), ids[1]]
    assert (sorted(Contact.objects.filter(pk__any=mixed).values_list("pk", flat=True))
            == sorted(Contact.objects.filter(pk__in=mixed).values_list("pk", flat=True)) == ids[:2])
    numbered = ContactFactory(external_id="12345")
    assert list(Contact.objects.filter(external_id__any=[12345]).values_list("pk", flat=True)) == [numbered.pk]
    assert list(ConsentRecord.objects.filter(contact_id__any=[str(ids[0])])) == list(
        ConsentRecord.objects.filter(contact_id__in=[str(ids[0])]))


class _LowercasedField(CharField):
    def get_prep_value(self, value):
        return super().get_prep_value(value).lower()


def test_a_field_that_prepares_values_its_own_way_still_prepares_each():
    """Strings for a string column skip the per-value preparation only when
    the field prepares them as CharField does."""
    column = Value("", output_field=_LowercasedField())
    assert AnyOf(column, ["Ana@Example.com"]).rhs == ["ana@example.com"]
    assert AnyOf(Value("", output_field=CharField()), ["Ana@Example.com"]).rhs == ["Ana@Example.com"]
