"""Where a record is written.

A chunk of validated records is written with a few statements, never a round trip
per record. On PostgreSQL (driver-level psycopg, binary ``COPY``):

1. one read of the chunk's external_ids that exist already, with their stored values
   (leaving out those the caller found missing in this transaction);
2. the new ones are ``COPY``-ed straight into the table (the fastest way in, measured
   in bench/), under a savepoint;
3. the existing ones whose values differ are ``COPY``-ed into a temporary staging
   table and written by one ``INSERT ... SELECT ... ON CONFLICT (org_id, external_id)
   DO UPDATE``; so are the new ones when another batch inserted one of them meanwhile
   (the ``COPY`` fails on the unique constraint, the savepoint is rolled back).

The records whose values equal the stored ones write nothing at all (no row version,
no index entry, no WAL); :func:`hold_accepts_of_org` and :func:`older_writes_pending`
say when that is safe (see "Later wins" below). When it is not (an older batch of the
org may still write), nothing is read first: a chunk whose records are all new is
``COPY``-ed as a whole (step 2), and any other goes to step 3 whole. On SQLite (the
embedded default) the chunk's rows come from one JSON parameter (``json_each``) into
the same ``INSERT ... ON CONFLICT`` statement.

The write carries these guarantees:

* **One object per external_id**: the unique constraint on ``(org_id, external_id)``
  decides; two batches racing on a new external_id end in one insert and one update.
* **Later wins**: a row is only overwritten by a batch whose ``seq`` is not lower
  than the one that last wrote it (``WHERE written_seq <= excluded.written_seq``).
  A record that changes nothing skips its row, so the row's ``written_seq`` does not
  say a later batch saw it; that is only done when no older batch of the org can
  still write the object table (:func:`older_writes_pending`). Otherwise an
  unchanged row gets the batch's ``written_seq`` (a row version, but ``updated_at``
  stays), and an older batch run afterwards loses against it as before.
* **Absent means unchanged**: a field the record did not carry keeps its stored
  value (``COALESCE(excluded.f, f)``).
* **``updated_at`` moves only for a real change**, so ``updated_since`` lists only
  the objects whose values changed.

Before any of this, records sent exactly as the one whose values their row holds are
set aside unvalidated (:mod:`importer.sources`); every row written stores the digest of
its record (``source_digest``), which is never compared with the values.

``action`` (and ``changed``) come from the write itself: a row ``COPY`` inserted, or
one the statement returns with ``created_seq`` equal to this batch's seq, was created
by it; one it returns with ``updated_at`` set to this write's time was changed by it.
"""

from __future__ import annotations

import datetime as dt
import functools
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from psycopg.types.json import set_json_dumps
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from importer import catalog, ids, listing
from importer.catalog import BaseObject, Kind
from importer.db import UTCDateTime, driver_connection, rows_with_keys, utcnow
from importer.models import OBJECT_TABLES, ChunkStatus
from importer.problems import ErrorCode, Problem, problem

#: What PostgreSQL statements are compiled for: psycopg runs them (SQLAlchemy's
#: dialect classes have no type annotations).
_PSYCOPG = PGDialect_psycopg()  # type: ignore[no-untyped-call]

#: The first key of the advisory lock accepts of an org hold while their batch takes
#: its seq (the second key is the org's); an arbitrary constant of this service.
_ACCEPTS_LOCK = 0x1B17


@dataclass
class WriteOutcome:
    #: ``[index, external_id, coverbase_id, action, changed]`` per written record, by index.
    results: list[list[Any]] = field(default_factory=list)
    #: Records rejected at write time (unknown references).
    errors: list[Problem] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    #: Of ``updated``, the records that changed nothing.
    unchanged: int = 0

    @property
    def rejected(self) -> int:
        return len({error["index"] for error in self.errors})

    def add_unchanged(self, found: Mapping[int, tuple[str, str]]) -> None:
        """Records known unchanged without a write (``{index: (external_id, id)}``)."""
        if not found:
            return
        for index, (external_id, object_id) in found.items():
            _record(self, index, external_id, object_id, "updated", False)
        self.results.sort(key=lambda result: result[0])


def _written_columns(base: BaseObject) -> list[str]:
    names: list[str] = []
    for spec in base.fields:
        names.append(spec.name)
        if spec.reference_column:
            names.append(spec.reference_column)
    return names


#: Written with a row's values but never compared with them: two records with the same
#: values may be sent differently (importer.sources).
SOURCE_DIGEST = "source_digest"


def _chunk_columns(base: BaseObject) -> list[str]:
    return ["id", *_written_columns(base), SOURCE_DIGEST]


def _row_columns(base: BaseObject) -> list[str]:
    """Every column of a new row, in the order it is ``COPY``-ed."""
    return [
        *_chunk_columns(base),
        "org_id",
        "created_at",
        "updated_at",
        "created_seq",
        "written_seq",
    ]


@functools.lru_cache(maxsize=16)
def staging_table(base_name: str) -> sa.Table:
    """A temporary table (one per connection, emptied at each commit) that a chunk is
    COPY-ed into before the upsert reads it."""
    base = catalog.CATALOG[base_name]
    table = OBJECT_TABLES[base_name]
    return sa.Table(
        f"stage_{base.plural}",
        sa.MetaData(),
        *[sa.Column(name, table.c[name].type) for name in _chunk_columns(base)],
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DELETE ROWS",
    )


def _differs(table: sa.Table, excluded: Any, name: str) -> sa.ColumnElement[bool]:
    """The record changes this column: it carries a value, and not the stored one."""
    return sa.and_(excluded[name].is_not(None), excluded[name].is_distinct_from(table.c[name]))


@functools.lru_cache(maxsize=16)
def upsert_statement(base_name: str, dialect: str) -> sa.Insert:
    """The chunk upsert for one base object, built once per process.

    Parameters: ``org_id``, ``now``, ``seq``, and ``touch``: whether a row whose
    values the record does not change still gets this batch's ``written_seq`` (see
    the module docstring). Returns each row it inserted or updated:
    ``id, external_id, created_seq, updated_at``.
    """
    base = catalog.CATALOG[base_name]
    table = OBJECT_TABLES[base_name]
    columns = _chunk_columns(base)
    constants = [
        sa.bindparam("org_id", type_=sa.String).label("org_id"),
        sa.bindparam("now", type_=UTCDateTime).label("created_at"),
        sa.bindparam("now", type_=UTCDateTime).label("updated_at"),
        sa.bindparam("seq", type_=sa.BigInteger).label("created_seq"),
        sa.bindparam("seq", type_=sa.BigInteger).label("written_seq"),
    ]
    insert: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stage = staging_table(base_name)
        # Rows in external_id order: concurrent chunks lock rows in the same order.
        source = sa.select(*[stage.c[name] for name in columns], *constants).order_by(
            stage.c.external_id
        )
        insert = postgresql.insert(table)
    elif dialect == "sqlite":
        each = sa.func.json_each(sa.bindparam("rows", type_=sa.Text)).table_valued("value")
        each = each.alias("r")

        def extract(name: str) -> sa.ColumnElement[Any]:
            value = sa.func.json_extract(each.c.value, f"$.{name}")
            if isinstance(table.c[name].type, sa.JSON):
                # Keep lists as JSON text, not SQLite's internal representation.
                value = sa.func.json(value)
            return value.label(name)

        # "WHERE true" tells SQLite's parser the ON of ON CONFLICT is not a join's.
        source = (
            sa.select(*[extract(name) for name in columns], *constants)
            .where(sa.true())
            .order_by(sa.literal_column("external_id"))
        )
        insert = sqlite.insert(table)
    else:  # pragma: no cover - guarded by configuration
        raise RuntimeError(f"unsupported database dialect {dialect!r}")

    names = [*columns, "org_id", "created_at", "updated_at", "created_seq", "written_seq"]
    statement = insert.from_select(names, source)
    excluded = statement.excluded
    written = [name for name in _written_columns(base) if name != "external_id"]
    changes = sa.or_(*[_differs(table, excluded, name) for name in written])
    updates: dict[str, Any] = {
        name: sa.func.coalesce(excluded[name], table.c[name]) for name in written
    }
    # The record whose values the row now holds (none: the row's digest is unknown).
    updates[SOURCE_DIGEST] = excluded[SOURCE_DIGEST]
    updates["updated_at"] = sa.case((changes, excluded.updated_at), else_=table.c.updated_at)
    updates["written_seq"] = excluded.written_seq
    return statement.on_conflict_do_update(
        index_elements=["org_id", "external_id"],
        set_=updates,
        where=sa.and_(
            table.c.written_seq <= excluded.written_seq,
            sa.or_(changes, sa.bindparam("touch", type_=sa.Boolean)),
        ),
    ).returning(table.c.id, table.c.external_id, table.c.created_seq, table.c.updated_at)


@functools.lru_cache(maxsize=16)
def _upsert_sql(base_name: str) -> str:
    """:func:`upsert_statement` for PostgreSQL as the SQL text psycopg runs."""
    compiled = upsert_statement(base_name, "postgresql").compile(dialect=_PSYCOPG)
    return str(compiled)


@functools.lru_cache(maxsize=16)
def _stage_ddl(base_name: str) -> str:
    stage = staging_table(base_name)
    return str(CreateTable(stage, if_not_exists=True).compile(dialect=_PSYCOPG))


def _copy_types(table: sa.Table, columns: Sequence[str]) -> list[str]:
    """The PostgreSQL type of each column, for a binary ``COPY`` of Python values."""
    names = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, sa.JSON):
            names.append("jsonb")
        elif isinstance(column_type, sa.Float):
            names.append("float8")
        elif isinstance(column_type, sa.Boolean):
            names.append("bool")
        elif isinstance(column_type, sa.Date):
            names.append("date")
        elif isinstance(column_type, sa.BigInteger):
            names.append("int8")
        elif isinstance(column_type, UTCDateTime):
            names.append("timestamptz")
        else:
            names.append("text")
    return names


#: The connections whose JSON dumper is orjson already (setting it builds classes).
_ORJSON_CONNECTIONS: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def _copy_rows(
    driver: psycopg.Connection[Any],
    table: sa.Table,
    target: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    """Binary ``COPY`` of ``rows`` (values in ``columns`` order) into ``target``."""
    if driver not in _ORJSON_CONNECTIONS:
        set_json_dumps(orjson.dumps, driver)
        _ORJSON_CONNECTIONS.add(driver)
    statement = f"COPY {target} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with driver.cursor().copy(statement) as copy:
        copy.set_types(_copy_types(table, columns))
        for row in rows:
            copy.write_row(row)


def hold_accepts_of_org(session: Session, org_id: str) -> None:
    """Called by an accept before its batch takes its ``seq``: a lock shared by the
    accepts of one org (they do not wait for each other), held until the accept
    commits. :func:`older_writes_pending` tries it, so it never misses an older batch
    still being accepted. No-op on SQLite, where unchanged rows are always written.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.text("SELECT pg_advisory_xact_lock_shared(:kind, hashtext(:org_id))"),
            {"kind": _ACCEPTS_LOCK, "org_id": org_id},
        )


#: Whether an accept of the org holds its lock (see :func:`hold_accepts_of_org`): the
#: lock is tried, taken if free and let go at once, never waited for.
_ACCEPTS_IN_PROGRESS = (
    "SELECT NOT (CASE WHEN pg_try_advisory_lock(%(kind)s, hashtext(%(org_id)s)) "
    "THEN pg_advisory_unlock(%(kind)s, hashtext(%(org_id)s)) ELSE false END)"
)


def _older_chunks_sql(statuses: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM import_chunks c JOIN import_batches b ON b.id = c.batch_id "
        f"WHERE c.org_id = %(org_id)s AND c.batch_seq < %(seq)s AND c.status {statuses} "
        "AND b.base_object = %(base_object)s AND NOT b.dry_run)"
    )


#: Two tests, so each can use its index: the live chunks' (partial: pending and
#: processing), and the status index for the (few) failed ones.
_LIVE = f"IN ('{ChunkStatus.PENDING.value}', '{ChunkStatus.PROCESSING.value}')"
_FAILED = f"= '{ChunkStatus.FAILED.value}'"
_OLDER_CHUNKS = f"SELECT {_older_chunks_sql(_LIVE)} OR {_older_chunks_sql(_FAILED)}"


def older_writes_pending(session: Session, org_id: str, base_object: str, seq: int) -> bool:
    """Whether a batch of the org accepted before ``seq`` may still write objects of
    ``base_object``: one of its chunks is pending, processing or failed (an operator
    may re-drive it). A finished chunk never runs again and a new batch always gets a
    higher seq, so once this says no, no older batch can overwrite what this batch
    found unchanged, and those rows need no write at all. PostgreSQL only.

    An accept of the org still in progress counts as such a batch too: it may have
    taken an older seq and not be committed yet (see :func:`hold_accepts_of_org`). Its
    lock is only tried, never waited for, so the writes of a busy org never queue
    behind its accepts, nor its accepts behind them: while the org accepts batches,
    its unchanged rows get their written_seq, as before.
    """
    driver = driver_connection(session)
    parameters = {
        "kind": _ACCEPTS_LOCK,
        "org_id": org_id,
        "seq": seq,
        "base_object": base_object,
    }
    accepting = driver.execute(_ACCEPTS_IN_PROGRESS, parameters).fetchone()
    if accepting is None or accepting[0]:
        return True
    # A statement of its own, so its snapshot sees every accept committed before the
    # lock was found free.
    pending = driver.execute(_OLDER_CHUNKS, parameters).fetchone()
    return pending is None or bool(pending[0])


def lookup_ids(
    session: Session, base_name: str, org_id: str, external_ids: Iterable[str]
) -> dict[str, str]:
    """``{external_id: id}`` of the org's objects among ``external_ids``."""
    return {
        external_id: row[0]
        for external_id, row in stored_rows(session, base_name, org_id, external_ids).items()
    }


def carried_columns(base: BaseObject, rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The written columns, external_id aside, that some of ``rows`` carry: the only
    ones a record can change (an absent field keeps its value)."""
    carried = set().union(*rows)
    return tuple(
        name for name in _written_columns(base) if name in carried and name != "external_id"
    )


def stored_rows(
    session: Session,
    base_name: str,
    org_id: str,
    external_ids: Iterable[str],
    columns: Sequence[str] = (),
) -> dict[str, tuple[Any, ...]]:
    """``{external_id: (id, *columns)}`` of the org's objects among ``external_ids``."""
    wanted = list(set(external_ids))  # one lookup each; the order does not matter
    rows = rows_with_keys(
        session, OBJECT_TABLES[base_name], "external_id", wanted, ["id", *columns], org_id
    )
    return {row[0]: tuple(row[1:]) for row in rows}


@functools.lru_cache(maxsize=16)
def _date_fields(base_name: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in catalog.CATALOG[base_name].fields if spec.kind == Kind.DATE)


def _typed(
    base: BaseObject, records: Sequence[tuple[int, dict[str, Any]]]
) -> list[tuple[int, dict[str, Any]]]:
    """The records with their dates as dates: a chunk's payload is JSON, where a
    validated date became its ISO text. The binary ``COPY`` and the comparison with
    the stored values need the date itself."""
    dates = _date_fields(base.name)
    if not dates:
        return list(records)
    typed = []
    for index, values in records:
        if any(isinstance(values.get(name), str) for name in dates):
            values = dict(values)
            for name in dates:
                value = values.get(name)
                if isinstance(value, str):
                    values[name] = dt.date.fromisoformat(value)
        typed.append((index, values))
    return typed


def _resolve_references(
    session: Session,
    base: BaseObject,
    org_id: str,
    mapping: Mapping[str, str],
    records: Sequence[tuple[int, dict[str, Any]]],
    outcome: WriteOutcome,
) -> list[tuple[int, dict[str, Any]]]:
    """The records whose references (``vendor_external_id``) name an object of the
    org, with the referenced id added; the others fail in ``outcome``."""
    if not base.references:
        return list(records)
    targets = {
        spec.name: lookup_ids(
            session,
            spec.references or "",
            org_id,
            (values[spec.name] for _, values in records if spec.name in values),
        )
        for spec in base.references
    }
    resolved = []
    for index, values in records:
        row = dict(values)
        for spec in base.references:
            target = targets[spec.name].get(values[spec.name])
            if target is None:
                incoming = mapping.get(spec.name, spec.name)
                outcome.errors.append(
                    problem(
                        index,
                        values["external_id"],
                        incoming,
                        ErrorCode.INVALID_FIELD_VALUE,
                        f"Field {incoming!r} ({spec.name}) names {spec.references} "
                        f"{values[spec.name]!r}, which does not exist in this org; "
                        f"import the {spec.references} first.",
                    )
                )
                break
            row[spec.reference_column or ""] = target
        else:
            resolved.append((index, row))
    return resolved


def _changes(row: Mapping[str, Any], stored: Sequence[Any], columns: Sequence[str]) -> bool:
    """Whether writing ``row`` would change the stored values (``(id, *columns)``, as
    :func:`stored_rows` read them): a value it carries differs."""
    for position, name in enumerate(columns, start=1):
        value = row.get(name)
        if value is not None and value != stored[position]:
            return True
    return False


def _record(
    outcome: WriteOutcome,
    index: int,
    external_id: str,
    object_id: str | None,
    action: str,
    changed: bool,
) -> None:
    outcome.results.append([index, external_id, object_id, action, changed])
    if action == "created":
        outcome.created += 1
    else:
        outcome.updated += 1
        if not changed:
            outcome.unchanged += 1


def write_records(
    session: Session,
    *,
    org_id: str,
    base_object: str,
    mapping: Mapping[str, str],
    seq: int,
    records: Sequence[tuple[int, dict[str, Any]]],
    absent: frozenset[str] = frozenset(),
) -> WriteOutcome:
    """Upsert validated records (``(index, values)`` pairs): see the module docstring.

    ``absent``: external_ids the caller found missing in this transaction, while no
    older batch could write them (importer.sources): not read again, they are new
    unless another batch inserted them since (then the ``COPY`` falls back, step 2).
    Only adds and flushes: the caller owns the transaction.
    """
    outcome = WriteOutcome()
    base = catalog.CATALOG[base_object]
    records = _typed(base, records)
    resolved = _resolve_references(session, base, org_id, mapping, records, outcome)
    if resolved:
        index_of = {row["external_id"]: index for index, row in resolved}
        rows = [row for _, row in resolved]
        now = utcnow()
        if session.get_bind().dialect.name == "postgresql":
            written = _write_postgresql(session, base, org_id, seq, now, rows, absent)
        else:
            written = upsert_rows(session, base, org_id, seq, now, rows, touch=True)
        for external_id, index in index_of.items():
            _record(outcome, index, external_id, *written[external_id])
        listing.count_created(session, org_id, base.name, outcome.created)
    outcome.results.sort(key=lambda result: result[0])
    return outcome


def upsert_rows(
    session: Session,
    base: BaseObject,
    org_id: str,
    seq: int,
    now: Any,
    rows: Sequence[dict[str, Any]],
    *,
    touch: bool,
) -> dict[str, tuple[str, str, bool]]:
    """Write ``rows`` with :func:`upsert_statement`: ``{external_id: (id, action,
    changed)}`` for every row (new rows are given their id here)."""
    for row in rows:
        row.setdefault("id", ids.new_id(base.id_prefix))
    parameters: dict[str, Any] = {"org_id": org_id, "now": now, "seq": seq, "touch": touch}
    returned: Sequence[Any]
    if session.get_bind().dialect.name == "postgresql":
        driver = driver_connection(session)
        stage = staging_table(base.name)
        driver.execute(_stage_ddl(base.name))
        columns = _chunk_columns(base)
        _copy_rows(
            driver,
            OBJECT_TABLES[base.name],
            stage.name,
            columns,
            ([row.get(name) for name in columns] for row in rows),
        )
        returned = driver.execute(_upsert_sql(base.name), parameters).fetchall()
    else:
        parameters["rows"] = orjson.dumps(rows).decode()
        returned = session.execute(upsert_statement(base.name, "sqlite"), parameters).all()
    written: dict[str, tuple[str, str, bool]] = {}
    for object_id, external_id, created_seq, updated_at in returned:
        if created_seq == seq:
            written[external_id] = (object_id, "created", True)
        else:
            written[external_id] = (object_id, "updated", updated_at == now)
    # Rows a later batch already wrote are left as they are (later wins), and rows
    # whose values did not change are not written: neither is returned. For this
    # batch they count as updated, unchanged.
    lost = [row["external_id"] for row in rows if row["external_id"] not in written]
    if lost:
        for external_id, object_id in lookup_ids(session, base.name, org_id, lost).items():
            written[external_id] = (object_id, "updated", False)
    return written


def _write_postgresql(
    session: Session,
    base: BaseObject,
    org_id: str,
    seq: int,
    now: Any,
    rows: Sequence[dict[str, Any]],
    absent: frozenset[str] = frozenset(),
) -> dict[str, tuple[str, str, bool]]:
    """The PostgreSQL write (module docstring): ``{external_id: (id, action, changed)}``."""
    # First, before reading anything: may an older batch still write these objects?
    # (After the read, one could finish in between and the read would miss its values.)
    if older_writes_pending(session, org_id, base.name, seq):
        # No row may be skipped, so nothing is worth reading first. A chunk of new
        # records (a feed posted as many batches, whose chunks overlap) goes in by
        # COPY as a whole; if one of them exists, the COPY stops at it (in external_id
        # order, usually the first rows) and is rolled back, and one statement writes
        # every row (an unchanged one gets this batch's written_seq).
        new = as_new_rows(base, rows)
        if insert_new_rows(session, base, org_id, seq, now, new):
            return {row["external_id"]: (row["id"], "created", True) for row in new}
        return upsert_rows(session, base, org_id, seq, now, rows, touch=True)
    columns = carried_columns(base, rows)
    wanted = (row["external_id"] for row in rows if row["external_id"] not in absent)
    stored = stored_rows(session, base.name, org_id, wanted, columns)
    written, new, to_upsert = sort_rows(base, rows, stored, columns)
    if new:
        if insert_new_rows(session, base, org_id, seq, now, new):
            written.update((row["external_id"], (row["id"], "created", True)) for row in new)
        else:
            to_upsert += new
    if to_upsert:
        written.update(upsert_rows(session, base, org_id, seq, now, to_upsert, touch=False))
    return written


def sort_rows(
    base: BaseObject,
    rows: Sequence[dict[str, Any]],
    stored: Mapping[str, Sequence[Any]],
    columns: Sequence[str],
) -> tuple[dict[str, tuple[str, str, bool]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Sort a chunk's rows by what they need, from the key read (``stored``, with the
    stored values of ``columns``): ``(unchanged, new, to_upsert)``. ``unchanged``
    holds the rows that need no write (their results); ``new`` the rows to insert,
    each given its id, in external_id order (the order every writer locks in);
    ``to_upsert`` the rows whose values differ.
    """
    unchanged: dict[str, tuple[str, str, bool]] = {}
    new: list[dict[str, Any]] = []
    to_upsert: list[dict[str, Any]] = []
    for row in rows:
        found = stored.get(row["external_id"])
        if found is None:
            new.append(row)
        elif not _changes(row, found, columns):
            unchanged[row["external_id"]] = (found[0], "updated", False)
        else:
            to_upsert.append(row | {"id": found[0]})
    return unchanged, as_new_rows(base, new), to_upsert


def as_new_rows(base: BaseObject, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows to insert, each given a new id, in external_id order (the order every
    writer locks in, so two chunks inserting the same keys never deadlock)."""
    new = sorted(rows, key=lambda row: row["external_id"])
    for row in new:
        row["id"] = ids.new_id(base.id_prefix)
    return new


def insert_new_rows(
    session: Session,
    base: BaseObject,
    org_id: str,
    seq: int,
    now: Any,
    rows: Sequence[dict[str, Any]],
) -> bool:
    """``COPY`` rows that did not exist when read straight into the table. False
    (and nothing written) when another batch inserted one of them meanwhile: its
    ``COPY`` then fails on the unique constraint and is rolled back to a savepoint,
    and the caller writes these rows with the upsert instead."""
    driver = driver_connection(session)
    table = OBJECT_TABLES[base.name]
    columns = _row_columns(base)
    constants = [org_id, now, now, seq, seq]
    carried = _chunk_columns(base)  # the head of ``columns``; each row has its id
    driver.execute("SAVEPOINT new_rows")
    try:
        _copy_rows(
            driver,
            table,
            table.name,
            columns,
            ([*(row.get(name) for name in carried), *constants] for row in rows),
        )
    except psycopg.errors.UniqueViolation:
        driver.execute("ROLLBACK TO SAVEPOINT new_rows")
        return False
    driver.execute("RELEASE SAVEPOINT new_rows")
    return True


def plan_records(
    session: Session,
    *,
    org_id: str,
    base_object: str,
    mapping: Mapping[str, str],
    seq: int,
    records: Sequence[tuple[int, dict[str, Any]]],
) -> WriteOutcome:
    """What :func:`write_records` would do, read-only (a dry run): references are
    checked the same way, and ``action`` and ``changed`` come from a read of the
    stored objects (``coverbase_id`` is null for a record that would create one)."""
    del seq  # a dry run takes no part in "later wins"
    outcome = WriteOutcome()
    base = catalog.CATALOG[base_object]
    records = _typed(base, records)
    resolved = _resolve_references(session, base, org_id, mapping, records, outcome)
    rows = [row for _, row in resolved]
    columns = carried_columns(base, rows)
    existing = stored_rows(
        session, base.name, org_id, (row["external_id"] for row in rows), columns
    )
    for index, row in resolved:
        found = existing.get(row["external_id"])
        if found is None:
            _record(outcome, index, row["external_id"], None, "created", True)
        else:
            changed = _changes(row, found, columns)
            _record(outcome, index, row["external_id"], found[0], "updated", changed)
    return outcome
