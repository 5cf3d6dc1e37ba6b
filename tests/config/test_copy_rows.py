"""`config.bulk.insert_rows` writes rows that need no ON CONFLICT and no
RETURNING by COPY (`copy_rows`). What PostgreSQL stores must be what the
one-statement JSON INSERT stored: column by column, JSON null as JSON null,
rows in their order, and a refused row writing nothing."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from config.bulk import Column, copy_rows, insert_rows
from journeys.models import StepExecution

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

# StepExecution's columns: `detail` is "jsonb", where None is JSON null.
COLUMNS: list[Column] = [
    ("enrollment_id", "bigint"), ("step_key", "text"), ("step_type", "text"), ("visit", "integer"),
    ("idempotency_key", "text"), ("outcome", "text"), ("reason", "text"), ("detail", "jsonb"),
    ("next_step", "text"), ("executed_at", "timestamptz"),
]
READ = [name for name, _kind in COLUMNS]

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8,
)
# Offsets to the second, as zoneinfo gives for local mean time before about 1900.
offsets = st.integers(-14 * 3600, 14 * 3600).map(lambda seconds: dt.timezone(dt.timedelta(seconds=seconds)))
rows_in = st.lists(
    st.tuples(text, text, st.integers(1, 2**31 - 1), text, json_values, text,
              st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=offsets)),
    min_size=1, max_size=6,
)
numbers = itertools.count(1)


def stored(rows: list[tuple], *, by_copy: bool) -> list[tuple]:
    """Write the rows one way, read them back in id order, and leave nothing behind."""
    with transaction.atomic():
        if by_copy:
            copy_rows(StepExecution, COLUMNS, rows)
        else:
            insert_rows(StepExecution, COLUMNS, rows, on_conflict="")  # ON CONFLICT: the JSON statement
        keys = [row[4] for row in rows]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(READ)}, detail IS NULL FROM journeys_stepexecution "  # noqa: S608
                           "WHERE idempotency_key = ANY(%s) ORDER BY id", [keys])
            found = cursor.fetchall()
        transaction.set_rollback(True)
    return found


def as_rows(generated: list[tuple]) -> list[tuple]:
    unique = next(numbers)
    return [(unique * 100 + i, step_key, "send", visit, f"copy-test:{unique}:{i}", outcome, reason, detail, next_step,
             at) for i, (step_key, outcome, visit, reason, detail, next_step, at) in enumerate(generated)]


@settings(max_examples=60, deadline=None)
@given(generated=rows_in)
def test_copy_stores_what_the_json_insert_stored(generated):
    rows = as_rows(generated)

    by_copy = stored(rows, by_copy=True)
    assert by_copy == stored(rows, by_copy=False)
    # COPY takes a timestamp as the text copy_rows writes: the instant must survive it.
    assert [row[READ.index("executed_at")] for row in by_copy] == [row[-1] for row in rows]


def test_rows_sharing_one_datetime_object_each_keep_their_instant():
    shared, other = dt.datetime(2026, 12, 7, 9, 30, tzinfo=dt.UTC), dt.datetime(2026, 12, 7, 9, 31, tzinfo=dt.UTC)
    rows = as_rows([(f"step-{i}", "sent", 1, "", {}, "", at) for i, at in enumerate([shared, other, shared])])

    assert [row[READ.index("executed_at")] for row in stored(rows, by_copy=True)] == [shared, other, shared]


def test_none_in_a_json_column_is_json_null():
    rows = as_rows([("k", "sent", 1, "", None, "", dt.datetime(2026, 12, 7, tzinfo=dt.UTC))])

    (row,) = stored(rows, by_copy=True)
    assert row[READ.index("detail")] == "null" and row[-1] is False  # JSON null (read as text), not SQL NULL


def test_rows_are_stored_in_their_order():
    rows = as_rows([(f"step-{i}", "sent", 1, "", {}, "", dt.datetime(2026, 12, 7, tzinfo=dt.UTC))
                    for i in range(50)])

    assert [row[1] for row in stored(rows, by_copy=True)] == [f"step-{i}" for i in range(50)]


def test_a_refused_row_writes_nothing_and_raises_djangos_error():
    at = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    rows = as_rows([("first", "sent", 1, "", {}, "", at), ("second", "sent", 1, "", {}, "", at)])
    rows[1] = (*rows[1][:4], rows[0][4], *rows[1][5:])  # the same idempotency key twice

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(StepExecution, COLUMNS, rows)
    assert not StepExecution.objects.filter(idempotency_key=rows[0][4]).exists()
