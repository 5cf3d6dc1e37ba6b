"""Timestamps read through our loader (config/db.py) must come back as
Django's own loader gives them: the same instant, labelled UTC."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from django.db import connection, transaction
from django.db.backends.postgresql.psycopg_any import register_tzloader
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.postgres import types

from config.db import UtcTimestamptzLoader

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))
instants = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets)


def _loader_of(cursor_or_connection) -> type:
    return cursor_or_connection.adapters.get_loader(types["timestamptz"].oid, psycopg.pq.Format.TEXT)


def test_connections_read_timestamps_with_our_loader():
    connection.ensure_connection()
    assert _loader_of(connection.connection) is UtcTimestamptzLoader


def test_timestamps_come_back_as_djangos_loader_gives_them():
    @settings(max_examples=200, deadline=None)
    @given(instant=instants)
    def check(instant):
        with connection.cursor() as ours:
            ours.execute("SELECT %s::timestamptz", [instant])
            fast = ours.fetchone()[0]
        with connection.connection.cursor() as djangos:
            register_tzloader(dt.UTC, djangos)
            djangos.execute("SELECT %s::timestamptz", [instant])
            slow = djangos.fetchone()[0]
        assert fast == slow == instant
        assert fast.tzinfo is slow.tzinfo is dt.UTC

    check()


def test_a_session_in_another_time_zone_still_reads_the_right_instant():
    instant = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'Asia/Kolkata'")
        cursor.execute("SELECT %s::timestamptz", [instant])
        value = cursor.fetchone()[0]
    assert value == instant
    assert value.tzinfo is dt.UTC


def test_dates_before_year_one_are_still_refused():
    from django.db import DataError

    with pytest.raises(DataError, match="before year 1"), connection.cursor() as cursor:
        cursor.execute("SELECT '0044-03-15 12:00:00+00 BC'::timestamptz")
        cursor.fetchone()
