"""Where a record is written.

A chunk of validated records is written with ONE statement,
``INSERT ... SELECT ... ON CONFLICT (org_id, external_id) DO UPDATE``. On
PostgreSQL its rows are first ``COPY``-ed into a temporary staging table (the
fastest way in, measured in bench/); on SQLite they come from one JSON parameter
(``json_each``). There is no round trip per record.

The statement carries three guarantees:

* **One object per external_id**: the unique constraint on ``(org_id, external_id)``
  decides; two batches racing on a new external_id end in one insert and one update.
* **Later wins**: a row is only overwritten by a batch whose ``seq`` is not lower
  than the one that last wrote it (``WHERE written_seq <= excluded.written_seq``).
* **Absent means unchanged**: a field the record did not carry keeps its stored
  value (``COALESCE(excluded.f, f)``).

``action`` and ``coverbase_id`` come from the statement's ``RETURNING``: a row
whose ``created_seq`` is this batch's seq was created by it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from importer import catalog, ids, listing
from importer.catalog import BaseObject
from importer.db import UTCDateTime, utcnow
from importer.models import OBJECT_TABLES
from importer.problems import ErrorCode, Problem, problem

#: Lookups by external_id are sliced so no statement exceeds a driver's parameter limit.
_LOOKUP_SLICE = 1000


@dataclass
class WriteOutcome:
    #: ``[index, external_id, coverbase_id, action]`` per written record, by index.
    results: list[list[Any]] = field(default_factory=list)
    #: Records rejected at write time (unknown references).
    errors: list[Problem] = field(default_factory=list)
    created: int = 0
    updated: int = 0

    @property
    def rejected(self) -> int:
        return len({error["index"] for error in self.errors})


def _written_columns(base: BaseObject) -> list[str]:
    names: list[str] = []
    for spec in base.fields:
        names.append(spec.name)
        if spec.reference_column:
            names.append(spec.reference_column)
    return names


def _chunk_columns(base: BaseObject) -> list[str]:
    return ["id", *_written_columns(base)]


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


@functools.lru_cache(maxsize=16)
def upsert_statement(base_name: str, dialect: str) -> sa.Insert:
    """The chunk upsert for one base object, built once per process."""
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
    updates: dict[str, Any] = {
        name: sa.func.coalesce(excluded[name], table.c[name])
        for name in _written_columns(base)
        if name != "external_id"
    }
    updates["updated_at"] = excluded.updated_at
    updates["written_seq"] = excluded.written_seq
    return statement.on_conflict_do_update(
        index_elements=["org_id", "external_id"],
        set_=updates,
        where=table.c.written_seq <= excluded.written_seq,
    ).returning(table.c.id, table.c.external_id, table.c.created_seq)


def _stage(session: Session, base: BaseObject, rows: Sequence[dict[str, Any]]) -> None:
    """COPY a chunk's rows into its staging table, in the session's transaction."""
    stage = staging_table(base.name)
    session.execute(CreateTable(stage, if_not_exists=True))
    columns = _chunk_columns(base)
    lists = {name for name in columns if isinstance(stage.c[name].type, sa.JSON)}
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor().copy(f"COPY {stage.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [
                    orjson.dumps(row[name]).decode()
                    if name in lists and row.get(name) is not None
                    else row.get(name)
                    for name in columns
                ]
            )


def lookup_ids(
    session: Session, base_name: str, org_id: str, external_ids: Iterable[str]
) -> dict[str, str]:
    """``{external_id: id}`` of the org's objects among ``external_ids``."""
    table = OBJECT_TABLES[base_name]
    wanted = sorted(set(external_ids))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _LOOKUP_SLICE):
        rows = session.execute(
            sa.select(table.c.external_id, table.c.id).where(
                table.c.org_id == org_id,
                table.c.external_id.in_(wanted[start : start + _LOOKUP_SLICE]),
            )
        )
        found.update({external_id: object_id for external_id, object_id in rows})
    return found


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


def _record(
    outcome: WriteOutcome, index: int, external_id: str, object_id: str | None, action: str
) -> None:
    outcome.results.append([index, external_id, object_id, action])
    if action == "created":
        outcome.created += 1
    else:
        outcome.updated += 1


def write_records(
    session: Session,
    *,
    org_id: str,
    base_object: str,
    mapping: Mapping[str, str],
    seq: int,
    records: Sequence[tuple[int, dict[str, Any]]],
) -> WriteOutcome:
    """Upsert validated records (``(index, values)`` pairs) in one statement.

    Only adds and flushes: the caller owns the transaction.
    """
    outcome = WriteOutcome()
    base = catalog.CATALOG[base_object]
    resolved = _resolve_references(session, base, org_id, mapping, records, outcome)
    if resolved:
        rows = []
        index_of: dict[str, int] = {}
        for index, row in resolved:
            row["id"] = ids.new_id(base.id_prefix)
            rows.append(row)
            index_of[row["external_id"]] = index
        dialect = session.get_bind().dialect.name
        parameters: dict[str, Any] = {"org_id": org_id, "now": utcnow(), "seq": seq}
        if dialect == "postgresql":
            _stage(session, base, rows)
        else:
            parameters["rows"] = orjson.dumps(rows).decode()
        returned = session.execute(upsert_statement(base.name, dialect), parameters).all()
        written: dict[str, tuple[str, str]] = {}
        for object_id, external_id, created_seq in returned:
            written[external_id] = (object_id, "created" if created_seq == seq else "updated")
        # Rows a later batch already wrote are left as they are (later wins) and
        # not returned; for this batch they still count as updated.
        lost = [external_id for external_id in index_of if external_id not in written]
        if lost:
            for external_id, object_id in lookup_ids(session, base.name, org_id, lost).items():
                written[external_id] = (object_id, "updated")
        for external_id, index in index_of.items():
            _record(outcome, index, external_id, *written[external_id])
        listing.count_created(session, org_id, base.name, outcome.created)
    outcome.results.sort(key=lambda result: result[0])
    return outcome


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
    checked the same way, and ``action`` comes from a read of existing external_ids
    (``coverbase_id`` is null for a record that would create an object)."""
    del seq  # a dry run takes no part in "later wins"
    outcome = WriteOutcome()
    base = catalog.CATALOG[base_object]
    resolved = _resolve_references(session, base, org_id, mapping, records, outcome)
    existing = lookup_ids(session, base.name, org_id, (row["external_id"] for _, row in resolved))
    for index, row in resolved:
        object_id = existing.get(row["external_id"])
        _record(
            outcome, index, row["external_id"], object_id, "updated" if object_id else "created"
        )
    return outcome
