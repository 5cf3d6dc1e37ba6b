"""The events API checks the common item by hand (DRF's nested serializers
were most of a 1,000-event request). The hand check must accept exactly
what EventBatchSerializer accepts, give the same validated data, and refuse
with the same errors, located `events.<index>.<field>`."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from journeys.api import EventBatchSerializer, validate_events

MISSING = object()
SOON = (timezone.now() + dt.timedelta(minutes=1)).isoformat()
LATER = (timezone.now() + dt.timedelta(hours=1)).isoformat()

texts = st.sampled_from(["k1", "cus_1", " padded ", "", "x" * 129, "x" * 201, "tab\t", "a\x00b", "ünï", "\ud800",
                         7, 1.5, True, None, [], {}])
names = st.sampled_from(["user.signed_up", "appointment.booked", "a:b-c_d", " user.x", "has spaces", "",
                         "n" * 100, "n" * 101, "é", "x\n", 5, None])
instants = st.sampled_from(["2026-03-02T09:00:00Z", "2026-03-02T09:00:00+05:30", "2026-03-02T09:00:00",
                            "2026-03-02", "2026-13-45T00:00:00Z", "yesterday", "", None, 1700000000, SOON, LATER,
                            MISSING])
dicts = st.sampled_from([{}, {"plan": "pro", "n": [1, {"deep": None}]}, None, [], "x", MISSING])
contacts = st.one_of(
    st.fixed_dictionaries({"external_id": texts}, optional={"attributes": dicts}),
    st.fixed_dictionaries({"external_id": texts}, optional={
        "email": st.sampled_from(["Ana@Example.com", "not-an-email", ""]),
        "phone": st.sampled_from(["+351912345678", "12"]),
        "timezone": st.sampled_from(["Europe/Lisbon", "Mars/Olympus"]),
        "push_devices": st.just([{"token": "t", "platform": "android"}]),
        "favourite_colour": st.just("blue"),
    }),
    st.sampled_from([None, "cus_1", [], {}]),
)
items = st.one_of(
    st.fixed_dictionaries(
        {"name": names, "contact": contacts, "idempotency_key": texts},
        optional={"properties": dicts, "occurred_at": instants, "unknown": st.just(1)},
    ).map(lambda item: {k: v for k, v in item.items() if v is not MISSING}),
    st.sampled_from([None, "event", 3, []]),
)
printable = st.characters(blacklist_categories=("Cc", "Cs"))
valid_items = st.fixed_dictionaries(
    {"name": st.just("user.signed_up"),
     "idempotency_key": st.text(printable, min_size=1, max_size=20).filter(str.strip),
     "contact": st.fixed_dictionaries({"external_id": st.from_regex(r"[a-z0-9_]{1,20}", fullmatch=True)},
                                      optional={"attributes": st.dictionaries(st.text(max_size=5), st.integers())})},
    optional={"properties": st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
              "occurred_at": st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2026, 1, 1),
                                          timezones=st.just(dt.UTC)).map(dt.datetime.isoformat)},
)


def by_serializer(data):
    serializer = EventBatchSerializer(data=data)
    if serializer.is_valid():
        return "valid", [dict(item) for item in serializer.validated_data["events"]]
    return "invalid", serializer.errors


def by_hand(data):
    try:
        return "valid", [dict(item) for item in validate_events(data)]
    except serializers.ValidationError as error:
        return "invalid", error.detail


def plain(value):
    """Serializer output (OrderedDicts, ReturnDicts, ErrorDetails) as plain data, codes kept."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, serializers.ErrorDetail):
        return (str(value), value.code)
    return value


@settings(max_examples=400, deadline=None)
@given(batch=st.lists(items, min_size=0, max_size=4))
def test_the_hand_check_decides_and_words_errors_as_the_serializer_does(batch):
    data = {"events": batch}

    assert plain(by_hand(data)) == plain(by_serializer(data))


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(valid_items, min_size=1, max_size=5))
def test_valid_batches_give_the_same_validated_events(batch):
    data = {"events": batch}

    outcome, events = by_hand(data)

    assert outcome == "valid"
    assert plain(events) == plain(by_serializer(data)[1])


@pytest.mark.parametrize("data", [{"events": []}, {"events": "x"}, {"events": None}, {},
                                  {"events": [{"name": "a"}] * 1001}])
def test_a_malformed_batch_is_refused_in_the_serializers_words(data):
    assert plain(by_hand(data)) == plain(by_serializer(data))
    assert by_hand(data)[0] == "invalid"
