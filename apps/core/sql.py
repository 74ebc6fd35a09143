"""Hand-written statements for the few paths every request takes (the agent's bearer lookup, a
submission's portal and grants, audit appends, the event hook).

Django's ORM builds and compiles a query each time it runs one: for a query with a subquery and
two annotations that is most of a millisecond of CPU, more than the database spends answering
it. These paths run fixed statements instead, written once at import with the models' table and
column names, every value a parameter.

On PostgreSQL each runs as a server-side prepared statement (parsed and planned once per
connection; Django's own cursors bind on the client and never prepare), unless the database's
OPTIONS name a `prepare_threshold` (an operator behind a transaction-mode pooler sets it to None,
and the statements are then bound on the server without preparing). Django's connection handling
is kept: its health check, (re)connection, error translation and, when queries are being logged
(`DEBUG`, `CaptureQueriesContext`), the log. On other databases the statements go through
Django's cursor.

`Columns.load` turns a row into a model instance the way the ORM does (each column through the
field's and the backend's converters, so an encrypted field decrypts and SQLite's text datetimes
parse), and `Columns.insert` stores new instances the way `bulk_create` does.
"""

import time
from collections.abc import Iterable, Sequence

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


def prepares(db) -> bool:
    """Whether statements are prepared on this (PostgreSQL) database: unless its OPTIONS name a
    `prepare_threshold`."""
    return "prepare_threshold" not in db.settings_dict.get("OPTIONS", {})


def _run(sql: str, params: Sequence, fetch, using: str):
    db = connections[using]  # looked up once: each `connection.x` is a thread-local lookup
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return fetch(cursor)
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = db.connection
    prepare = prepares(db)
    if prepare and raw.prepare_threshold is None:
        # psycopg prepares only when a threshold is set; this one is never reached by itself
        # (Django's client-side cursors never prepare), `prepare=True` below prepares at once.
        raw.prepare_threshold = 2**31 - 1
    logged = db.queries_logged
    started = time.monotonic() if logged else 0.0
    try:
        with db.wrap_database_errors, psycopg.Cursor(raw) as cursor:
            cursor.execute(sql, params, prepare=prepare or None)
            return fetch(cursor)
    finally:
        if logged:
            db.queries_log.append({"sql": f"{sql} -- {list(params)!r}", "time": f"{time.monotonic() - started:.3f}"})


def fetchone(sql: str, params: Sequence = (), *, using: str = DEFAULT_DB_ALIAS) -> tuple | None:
    """The statement's first row, or None."""
    return _run(sql, params, lambda cursor: cursor.fetchone(), using)


def fetchall(sql: str, params: Sequence = (), *, using: str = DEFAULT_DB_ALIAS) -> list[tuple]:
    return _run(sql, params, lambda cursor: cursor.fetchall(), using)


def execute(sql: str, params: Sequence = (), *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Run a statement that returns no rows; the number of rows it changed."""
    return _run(sql, params, lambda cursor: cursor.rowcount, using)


class Columns:
    """Some concrete fields of a model, in the model's order (as `Model.from_db` reads them): their
    column list for a statement, `load` for a row of them and `insert` for new objects."""

    def __init__(self, model, names: Iterable[str] | None = None, *, alias: str = ""):
        """`names`: the fields to use (default: every concrete field)."""
        self.model = model
        if names is None:
            names = [field.name for field in model._meta.concrete_fields]
        wanted = {model._meta.get_field(name) for name in names}
        if not wanted <= set(model._meta.concrete_fields):
            raise ValueError(f"Not columns of {model.__name__}: {sorted(str(f) for f in wanted)}")
        self.fields = [field for field in model._meta.concrete_fields if field in wanted]
        self.attnames = [field.attname for field in self.fields]
        prefix = f"{alias}." if alias else ""
        self.sql = ", ".join(prefix + field.column for field in self.fields)
        self._converters: dict[str, list] = {}

    def converters(self, db) -> list:
        found = self._converters.get(db.alias)
        if found is None:
            found = []
            for field in self.fields:
                column = field.get_col(self.model._meta.db_table)
                found.append((db.ops.get_db_converters(column) + field.get_db_converters(db), column))
            self._converters[db.alias] = found
        return found

    def load(self, row: Sequence, *, using: str = DEFAULT_DB_ALIAS):
        """A model instance from `row` (these columns, in order), as the ORM would build it; the
        fields left out are deferred."""
        db = connections[using]
        values = list(row)
        for i, (functions, column) in enumerate(self.converters(db)):
            for convert in functions:
                values[i] = convert(values[i], column, db)
        return self.model.from_db(using, self.attnames, values)

    def insert(self, objs: Sequence, *, using: str = DEFAULT_DB_ALIAS, along: tuple[str, list] | None = None) -> None:
        """INSERT `objs` (new instances of the model) in one statement, as `bulk_create` would:
        each field's `pre_save` (so `auto_now`/`auto_now_add` fill in) and database preparation;
        an auto-incremented primary key comes back with RETURNING where the database has it.
        No signal is sent (as with `bulk_create`). `along`: (statement, params) of an UPDATE or
        DELETE sent in the same statement as a data-modifying WITH (PostgreSQL only), one round
        trip fewer."""
        if not objs:
            return
        db = connections[using]
        if along is not None and db.vendor != "postgresql":
            raise ValueError("Only PostgreSQL runs a data-modifying WITH.")
        meta = self.model._meta
        returning = meta.pk not in self.fields and db.features.can_return_rows_from_bulk_insert
        params = [field.get_db_prep_save(field.pre_save(obj, add=True), db) for obj in objs for field in self.fields]
        row = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        query = (f"INSERT INTO {meta.db_table} ({self.sql}) VALUES "  # noqa: S608  # nosec B608
                 + ", ".join([row] * len(objs)) + (f" RETURNING {meta.pk.column}" if returning else ""))
        if along is not None:
            query, params = f"WITH along AS ({along[0]}) {query}", [*along[1], *params]
        if returning:
            for obj, (pk,) in zip(objs, fetchall(query, params, using=using), strict=True):
                obj.pk = pk
        else:
            execute(query, params, using=using)
        for obj in objs:
            obj._state.adding = False
            obj._state.db = using
