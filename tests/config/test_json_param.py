"""The set-based writes' JSON document (config.bulk.json_param, orjson)
must say what json.dumps with Django's encoder said, for every kind of
value the hot paths write: PostgreSQL reads the same rows from either."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.translation import gettext_lazy
from hypothesis import given
from hypothesis import strategies as st

from config.bulk import json_param


def _as_json_dumps_wrote_it(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return DjangoJSONEncoder().default(value)


text = st.text(st.characters(blacklist_categories=("Cs",)))  # PostgreSQL refuses lone surrogates either way
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.datetimes(timezones=st.none() | st.just(dt.UTC) | st.timezones())
           | st.dates() | st.decimals(allow_nan=False, allow_infinity=False) | st.uuids())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(text | st.integers(0, 9), inner, max_size=4), max_leaves=12)


@given(rows=st.lists(st.tuples(values, values, values), max_size=5))
def test_json_param_writes_what_json_dumps_wrote(rows):
    assert json.loads(json_param(rows)) == json.loads(json.dumps(rows, default=_as_json_dumps_wrote_it))


def test_lazy_text_and_decimals_are_written_as_text():
    assert json.loads(json_param([(gettext_lazy("sent"), Decimal("0.0075"))])) == [["sent", "0.0075"]]


def test_each_datetime_keeps_its_own_offset_when_rows_share_them():
    # The writer remembers the text of each datetime object it has written: equal instants in
    # other zones, and offsets in seconds (Amsterdam's local mean time), are still their own.
    from zoneinfo import ZoneInfo

    now = dt.datetime(2026, 12, 7, 11, 0, tzinfo=dt.UTC)
    kolkata = now.astimezone(ZoneInfo("Asia/Kolkata"))
    old = dt.datetime(1890, 1, 1, 12, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    rows = [(now, kolkata, old), (now, kolkata, old)]

    assert json.loads(json_param(rows)) == [[now.isoformat(), kolkata.isoformat(), old.isoformat()]] * 2
    assert json.loads(json_param(rows))[0][1].endswith("+05:30")
