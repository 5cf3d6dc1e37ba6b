"""Set-based INSERTs shared by the apps' hot paths (event ingestion, the
journeys tick): every row of a batch in one statement."""

from __future__ import annotations

import datetime as dt
import json
import operator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models

# A column as (name, PostgreSQL type to cast to); "jsonb" columns take Python
# data, "jsonb null" ones too, with None stored as SQL NULL (as Django does).
Column = tuple[str, str]


def insert_rows(
    model: type[models.Model], columns: tuple[Column, ...] | list[Column], rows: list[tuple] | list[list], *,
    on_conflict: str | None = None, returning: tuple[str, ...] = (),
) -> list[tuple]:
    """One INSERT for all rows, ON CONFLICT <on_conflict> DO NOTHING if asked
    ("" skips a conflict with any unique constraint), and the RETURNING
    columns of the rows it stored. On PostgreSQL the rows travel as one JSON
    document, unpacked by jsonb_array_elements: a statement of constant shape
    and one parameter, which json.dumps writes in C. Django's bulk_create, a
    VALUES list with a placeholder per value, or an array per column (which
    the driver quotes element by element) cost several times more Python per
    row."""
    if not rows:
        return []
    ops = connection.ops
    names = ", ".join(ops.quote_name(name) for name, _ in columns)
    if connection.vendor == "postgresql":
        values = ", ".join(_unpack(i, kind) for i, (_, kind) in enumerate(columns))
        source = f"SELECT {values} FROM jsonb_array_elements(%s::jsonb) AS r"  # noqa: S608
        params: list[Any] = [json.dumps(rows, default=_json_default)]
    else:
        source = "VALUES " + ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
        adapt = [ops.adapt_datetimefield_value if kind == "timestamptz" else _json_text if kind.startswith("jsonb")
                 else None for _, kind in columns]
        params = [f(v) if f else v for row in rows for f, v in zip(adapt, row, strict=True)]
    # Table and column names are ours; every value is a parameter.
    sql = f"INSERT INTO {ops.quote_name(model._meta.db_table)} ({names}) {source}"  # noqa: S608
    if on_conflict is not None:
        sql += f" ON CONFLICT {on_conflict} DO NOTHING".replace("  ", " ")
    if returning:
        sql += " RETURNING " + ", ".join(ops.quote_name(name) for name in returning)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if returning else []


def update_rows(
    model: type[models.Model], columns: tuple[Column, ...] | list[Column], rows: list[tuple] | list[list], *,
    where: str = "", params: tuple | list = (),
) -> int:
    """One UPDATE for many rows, PostgreSQL only: each row is (id, *values of
    `columns`), and travels in one JSON document as `insert_rows`' do (an
    array per column costs the driver a quoting call per value). `where`
    adds a condition on the updated table, aliased `t`. Returns the count
    of rows updated."""
    if not rows:
        return 0
    ops = connection.ops
    pk = model._meta.pk.column
    names = [pk, *(name for name, _ in columns)]
    kinds = [model._meta.pk.cast_db_type(connection), *(kind for _, kind in columns)]
    values = ", ".join(f"{_unpack(i, kind)} AS {ops.quote_name(name)}" for i, (name, kind) in
                       enumerate(zip(names, kinds, strict=True)))
    assignments = ", ".join(f"{ops.quote_name(name)} = v.{ops.quote_name(name)}" for name, _ in columns)
    # Table and column names are ours; every value is a parameter.
    sql = (
        f"UPDATE {ops.quote_name(model._meta.db_table)} AS t SET {assignments} "  # noqa: S608
        f"FROM (SELECT {values} FROM jsonb_array_elements(%s::jsonb) AS r) AS v "
        f"WHERE t.{ops.quote_name(pk)} = v.{ops.quote_name(pk)}"
    )
    if where:
        sql += f" AND ({where})"
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(rows, default=_json_default), *params])
        return cursor.rowcount


def insert_objects(model: type[models.Model], objs: list[models.Model], *, returning: str = "") -> list[tuple]:
    """`insert_rows` for unsaved model instances: every concrete column but
    the id, as the objects hold it (auto_now fields filled). With `returning`
    (a unique column): (value, id) pairs."""
    if connection.vendor != "postgresql":
        # The embedded SQLite of `make run`: Django adapts each field's value (dates, decimals) as it stores it.
        model.objects.bulk_create(objs)
        return [(getattr(obj, returning), obj.pk) for obj in objs] if returning else []
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = [(f.column, _kind(f)) for f in fields]
    for field in filter(_auto_now, fields):
        for obj in objs:
            field.pre_save(obj, add=True)  # sets the value on the object, as save() would
    values_of = operator.attrgetter(*(f.attname for f in fields))
    rows = [values_of(o) for o in objs] if len(fields) > 1 else [(values_of(o),) for o in objs]
    back = (model._meta.get_field(returning).column, model._meta.pk.column) if returning else ()
    return [tuple(row) for row in insert_rows(model, columns, rows, returning=back)]


def _kind(field: models.Field) -> str:
    if isinstance(field, models.JSONField):
        return "jsonb null" if field.null else "jsonb"
    # The cast type has no length: a cast to varchar(n) would cut a value silently, the INSERT refuses it.
    return field.cast_db_type(connection)


def _auto_now(field: models.Field) -> bool:
    return getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)


def _unpack(index: int, kind: str) -> str:
    if kind == "jsonb":
        return f"r->{index}"
    if kind == "jsonb null":
        return f"NULLIF(r->{index}, 'null'::jsonb)"
    return f"(r->>{index})::{kind}"


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return DjangoJSONEncoder().default(value)
