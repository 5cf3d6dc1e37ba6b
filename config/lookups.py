"""`field__any=[...]`: membership in a list as one array parameter.

Django writes `field__in=[...]` as `IN (%s, %s, ...)`, one placeholder per
value, and on PostgreSQL psycopg then splits and quotes that query value by
value in Python (long statements are not cached). For the hot paths that ask
about a batch of hundreds of ids or keys, that bookkeeping cost more CPU
than PostgreSQL spent answering. `field__any` sends `field = ANY(%s::type[])`
with the list as a single array, which the btree index serves the same way;
on other databases (the embedded SQLite), or with expressions in the list,
it is `IN` as before.

The array goes as its text form (`array_literal`), one string the driver
escapes in C: given a Python list, psycopg's client-side binding (Django's
default) dumps it element by element in Python, which for the tick's batch
of a thousand contacts, keys and addresses measured 4 % of its CPU."""

from __future__ import annotations

from django.core.exceptions import EmptyResultSet
from django.db.models import CharField, ForeignKey, IntegerField, TextField
from django.db.models.lookups import In

# The Python type of the values each kind of column takes as they are.
_PLAIN_TYPES = ((IntegerField, int), (CharField, str), (TextField, str))


class AnyOf(In):
    """Takes plain values of the column's kind (ids, keys): not model
    instances, not values the field must convert for the database (dates,
    UUIDs), not integers beyond the column's range (an error where IN would
    find nothing). Every caller passes ids or keys it read or validated."""

    lookup_name = "any"

    def get_prep_lookup(self):
        # A list already of the column's type needs no preparing value by
        # value: Django's per-value preparation (and the scans for
        # expressions) cost the gate's facts query for a batch of 200
        # contacts a third of its time.
        kind = _plain_type(self.lhs.output_field) if hasattr(self.lhs, "output_field") else None
        if (kind is not None and isinstance(self.rhs, (list, tuple, set, frozenset))
                and all(type(value) is kind for value in self.rhs)):
            self._plain_values = True
            return list(self.rhs)
        return super().get_prep_lookup()

    def _as_array(self, connection) -> bool:
        if connection.vendor != "postgresql" or not self.rhs_is_direct_value():
            return False
        if not hasattr(self, "_plain_values"):
            self._plain_values = not any(hasattr(value, "resolve_expression") for value in self.rhs)
        return self._plain_values

    def process_rhs(self, compiler, connection):
        if not self._as_array(connection):
            return super().process_rhs(compiler, connection)
        # get_prep_lookup already prepared each value; NULL never matches, as with IN.
        values = list(dict.fromkeys(value for value in self.rhs if value is not None))
        if not values:
            raise EmptyResultSet  # as IN does: no query at all
        # Strings as text, not varchar(n): a cast to the column's length would cut a longer value to a match.
        integers = all(isinstance(value, int) for value in values)
        kind = self.lhs.output_field.db_type(connection) if integers else "text"
        return f"%s::{kind}[]", [array_literal(values, integers=integers)]

    def get_rhs_op(self, connection, rhs):
        if not self._as_array(connection):
            return super().get_rhs_op(connection, rhs)
        return f"= ANY({rhs})"

    def as_sql(self, compiler, connection):
        if not self._as_array(connection):
            return super().as_sql(compiler, connection)
        # In.as_sql would split a long list into OR-ed IN groups (for Oracle); one array needs none.
        return super(In, self).as_sql(compiler, connection)


def _plain_type(field) -> type | None:
    if isinstance(field, ForeignKey):
        field = field.target_field
    for field_class, kind in _PLAIN_TYPES:
        if isinstance(field, field_class):
            # A subclass that prepares values its own way (normalising a
            # phone number, say) must still see each one.
            return kind if type(field).get_prep_value is field_class.get_prep_value else None
    return None


def array_literal(values: list, *, integers: bool) -> str:
    """PostgreSQL's text form of a one-dimensional array: integers as they
    are, anything else as a string, double-quoted with its double quotes and
    backslashes escaped (so commas, braces, spaces and the word NULL stay
    data)."""
    if integers:
        return "{" + ",".join(map(str, values)) + "}"
    quoted = (str(value).replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


for field_class in (IntegerField, ForeignKey, CharField, TextField):
    field_class.register_lookup(AnyOf)
