"""Set-based writes shared by the apps' hot paths (event ingestion, the
journeys tick, delivery): every row of a batch in one statement.

On PostgreSQL, rows that are only inserted go in by COPY (`copy_rows`);
an INSERT with ON CONFLICT or RETURNING, and an UPDATE, take the rows as one
JSON document, unpacked by jsonb_array_elements (`json_rows`): a statement
of constant shape and one parameter, which orjson writes in C (json.dumps
took twice as long, a twentieth of the journeys tick). Django's bulk_create and
bulk_update, a VALUES list with a placeholder per value, or an array per
column (which the driver quotes element by element) cost several times
more Python per row."""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Callable
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.db.models.base import DEFERRED, ModelState
from django.db.models.signals import post_init, pre_init
from psycopg.types.json import Jsonb, set_json_dumps

# A column as (name, PostgreSQL type to cast to); "jsonb" columns take Python
# data, "jsonb null" ones too, with None stored as SQL NULL (as Django does).
Column = tuple[str, str]


def insert_rows(
    model: type[models.Model], columns: tuple[Column, ...] | list[Column], rows: list[tuple] | list[list], *,
    on_conflict: str | None = None, returning: tuple[str, ...] = (),
) -> list[tuple]:
    """One INSERT for all rows, ON CONFLICT <on_conflict> DO NOTHING if asked
    ("" skips a conflict with any unique constraint), and the RETURNING
    columns of the rows it stored. Rows that need neither go in by COPY on
    PostgreSQL, in their order (ids ascend with it): for the tick's step
    executions the server spent 8.0 microseconds a row on the JSON INSERT,
    4.8 on COPY, and our process 1.0 and 2.8."""
    if not rows:
        return []
    if on_conflict is None and not returning and connection.vendor == "postgresql":
        copy_rows(model, columns, rows)
        return []
    ops = connection.ops
    names = ", ".join(ops.quote_name(name) for name, _ in columns)
    if connection.vendor == "postgresql":
        source = json_rows(columns)
        params: list[Any] = [json_param(rows)]
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


def copy_rows(model: type[models.Model], columns: tuple[Column, ...] | list[Column],
              rows: list[tuple] | list[list]) -> None:
    """COPY the rows into the model's table, PostgreSQL only: values as
    `insert_rows` takes them, a "jsonb" column's None as JSON null and a
    "jsonb null" column's as SQL NULL. A refused row (a unique violation, a
    value too long) raises Django's error and writes nothing."""
    quote = connection.ops.quote_name
    json_columns = [(i, kind == "jsonb null") for i, (_name, kind) in enumerate(columns) if kind.startswith("jsonb")]
    timestamp_columns = [i for i, (_name, kind) in enumerate(columns) if kind in _TIMESTAMP_KINDS]
    timestamp_text = _isoformat_once()
    sql = f"COPY {quote(model._meta.db_table)} ({', '.join(quote(name) for name, _kind in columns)}) FROM STDIN"
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own: Django's wrapper has no COPY
        set_json_dumps(_dumps, context=raw)
        with connection.wrap_database_errors, raw.copy(sql) as copy:
            for row in rows:
                if json_columns or timestamp_columns:
                    row = list(row)
                    for i, null in json_columns:
                        row[i] = None if row[i] is None and null else Jsonb(row[i])
                    for i in timestamp_columns:
                        row[i] = timestamp_text(row[i])
                copy.write_row(row)


# psycopg's text dumper took 2.9 microseconds a timestamp, isoformat and a
# string's dumper 0.5; the outbox row has three, the rows of a batch share
# one object (its `now`), written once.
_TIMESTAMP_KINDS = {"timestamptz", "timestamp with time zone"}


def _isoformat_once() -> Callable[[Any], Any]:
    """A function that writes a datetime as ISO 8601 text, each datetime
    object once (by identity: the rows hold them while it is used), and
    passes anything else (None) through."""
    texts: dict[int, str] = {}

    def text_of(value: Any) -> Any:
        if not isinstance(value, dt.datetime):
            return value
        text = texts.get(id(value))
        if text is None:
            text = texts[id(value)] = value.isoformat()
        return text

    return text_of


def update_rows(
    model: type[models.Model], columns: tuple[Column, ...] | list[Column], rows: list[tuple] | list[list], *,
    where: str = "", params: tuple | list = (),
) -> int:
    """One UPDATE for many rows, PostgreSQL only: each row is (id, *values of
    `columns`). `where` adds a condition on the updated table, aliased `t`.
    Returns the count of rows updated."""
    if not rows:
        return 0
    quote = connection.ops.quote_name
    pk = quote(model._meta.pk.column)
    source = json_rows([(model._meta.pk.column, model._meta.pk.cast_db_type(connection)), *columns])
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name, _ in columns)
    # Table and column names are ours; every value is a parameter.
    sql = f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments} FROM ({source}) AS v "  # noqa: S608
    sql += f"WHERE t.{pk} = v.{pk}"
    if where:
        sql += f" AND ({where})"
    with connection.cursor() as cursor:
        cursor.execute(sql, [json_param(rows), *params])
        return cursor.rowcount


def json_rows(columns: tuple[Column, ...] | list[Column], *, numbered: bool = False) -> str:
    """A SELECT of the rows in one JSON document parameter (`json_param`),
    each row a list of values in the order of `columns`, as those named and
    typed columns; `numbered` adds `position`, the row's place in the
    document (to order by it). PostgreSQL only."""
    quote = connection.ops.quote_name
    values = ", ".join(f"{_unpack(i, kind)} AS {quote(name)}" for i, (name, kind) in enumerate(columns))
    if numbered:
        values += ", e.n AS position"
    # Column names and types are ours; the rows are the one parameter.
    return f"SELECT {values} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e (r, n)"  # noqa: S608


def json_param(rows: list[tuple] | list[list]) -> str:
    return _dumps(rows)


def insert_objects(model: type[models.Model], objs: list[models.Model]) -> None:
    """Insert unsaved model instances, every concrete column as the objects
    hold it (auto_now fields filled), and set their ids. On PostgreSQL the
    ids are drawn from the table's sequence first and the rows go in by COPY:
    for the outbox's 42 columns and 19 indexes the server spent 22
    microseconds a row on the JSON INSERT (`insert_rows`), 9 on COPY. A
    unique violation raises IntegrityError and writes nothing."""
    if connection.vendor != "postgresql":
        # The embedded SQLite of `make run`: Django adapts each field's value (dates, decimals) as it stores it.
        model.objects.bulk_create(objs)
        return
    if not objs:
        return
    fields = model._meta.concrete_fields
    for field in filter(_auto_now, fields):
        for obj in objs:
            field.pre_save(obj, add=True)  # sets the value on the object, as save() would
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                       [model._meta.db_table, model._meta.pk.column, len(objs)])
        for obj, (pk_value,) in zip(objs, cursor.fetchall(), strict=True):
            obj.pk = pk_value
    values_of = operator.attrgetter(*(f.attname for f in fields))
    # JSON fields as Django stores them (`_kind`): None is SQL NULL where the column allows it, JSON null elsewhere.
    copy_rows(model, [(f.column, _kind(f)) for f in fields], [values_of(obj) for obj in objs])
    alias = connection.alias  # once: each read goes through Django's connection proxy
    for obj in objs:
        obj._state.adding, obj._state.db = False, alias


def columns_of(model: type[models.Model]) -> list[Column]:
    """Every concrete column but the id, in the model's field order, typed
    for `insert_rows`."""
    return [(f.column, _kind(f)) for f in model._meta.concrete_fields if not f.primary_key]


def unsaved(model: type[models.Model], **values: Any) -> models.Model:
    """An unsaved instance with `values` given by attname (`contact_id`, not
    `contact`) and every other field at its default: what `model(**values)`
    makes, for paths that make thousands. Django's constructor sets each of
    the outbox's 42 fields through its descriptor and sends two signals (8.4
    microseconds a journey send's row, given positionally); this fills the
    instance's dict at once (`_construct`, 1.9)."""
    static, fresh = _defaults(model)
    if not values.keys() <= static.keys():
        raise TypeError(f"{model.__name__} has no field {sorted(values.keys() - static.keys())[0]!r}")
    fields = dict(static)
    for name, factory in fresh:
        fields[name] = factory()  # a dict or list default must not be shared between rows
    fields.update(values)
    return _construct(model, fields, adding=True, db=None)


class LoadedQuickly:
    """A model mixin: instances read from the database are built by
    `_construct` instead of Model.__init__. For the rows the journeys tick
    and delivery claim by the thousand: the tick's claim of an enrollment
    with its contact took 24 microseconds of CPU, now 15. Deferred fields
    are left out of the instance, as Django leaves them, and load on access."""

    @classmethod
    def from_db(cls, db: str, field_names: list[str], values: list[Any]) -> models.Model:
        return _construct(cls, dict(zip(field_names, values, strict=True)), adding=False, db=db)


def _construct(model: type[models.Model], fields: dict[str, Any], *, adding: bool, db: str | None) -> models.Model:
    """What Model.__init__ makes of these attname values. Setting them through
    the class's descriptors does nothing more for a new instance (the only
    setters, on foreign key ids, clear a cached related object it cannot have
    yet); Django's pre_init and post_init signals are honoured by building the
    instance Django's way whenever one has a receiver for the model."""
    # The lists first: asking each signal about the model costs as much as building the instance.
    signalled = pre_init.receivers or post_init.receivers
    if signalled and (pre_init.has_listeners(model) or post_init.has_listeners(model)):
        names = [field.attname for field in model._meta.concrete_fields]
        instance = model(*[fields.get(name, DEFERRED) for name in names])
    else:
        instance = model.__new__(model)
        instance.__dict__.update(fields)
        instance._state = ModelState()
    instance._state.adding, instance._state.db = adding, db
    return instance


@functools.cache
def _defaults(model: type[models.Model]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    """Each concrete field's attname with its default value, and the fields
    whose default is a callable (called for each row)."""
    static, fresh = {}, []
    for field in model._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            static[field.attname] = None
            fresh.append((field.attname, field.default))
        else:
            static[field.attname] = field.get_default()
    return static, tuple(fresh)


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
    return None if value is None else _dumps(value)


_django_default = DjangoJSONEncoder().default


def _dumps(value: Any) -> str:
    # orjson writes a UTC offset to the minute: a zone's offset in seconds
    # (local mean time, before about 1900) would move the instant, so
    # datetimes are passed through to isoformat. A batch's rows share a few
    # datetime objects (its `now`), each written once per document.
    datetime_text = _isoformat_once()

    def as_text(item: Any) -> Any:
        if isinstance(item, dt.datetime):
            return datetime_text(item)
        return _django_default(item)  # Decimal, lazy text, durations: as Django's encoder writes them

    # Keys that are not strings become strings, as json.dumps makes them.
    options = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    return orjson.dumps(value, default=as_text, option=options).decode()
