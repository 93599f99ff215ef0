"""The write: one statement per chunk, later wins, one object per external_id, and
records that change nothing write nothing. On SQLite here; on PostgreSQL, with its
concurrent races, in tests/integration/test_upsert_postgres.py."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from importer.models import OBJECT_TABLES
from importer.upsert import write_records
from tests.factories import VENDOR_MAPPING


def write(db, org, seq, records, base_object="vendor"):
    with db.session() as session:
        return write_records(
            session,
            org_id=org.id,
            base_object=base_object,
            mapping=VENDOR_MAPPING,
            seq=seq,
            records=list(enumerate(records)),
        )


def stored(db, org, base_object="vendor"):
    table = OBJECT_TABLES[base_object]
    with db.session() as session:
        rows = session.execute(
            sa.select(table).where(table.c.org_id == org.id).order_by(table.c.external_id)
        )
        return {row.external_id: row for row in rows}


def test_one_insert_statement_per_chunk_whatever_its_size(db, org_and_key):
    org, _ = org_and_key
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()[:3]).upper())

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        outcome = write(
            db, org, 1, [{"external_id": f"e{n}", "name": f"n{n}"} for n in range(2500)]
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert outcome.created == 2500
    assert statements.count("INSERT INTO VENDORS") == 1
    # The upsert, the org's object count, at most the session's own housekeeping.
    assert statements.count("INSERT INTO OBJECT_COUNTS") == 1
    assert len(statements) <= 4


def test_action_and_id_come_from_the_write(db, org_and_key):
    org, _ = org_and_key
    first = write(
        db, org, 1, [{"external_id": "a", "name": "A"}, {"external_id": "b", "name": "B"}]
    )
    second = write(
        db, org, 2, [{"external_id": "b", "name": "B2"}, {"external_id": "c", "name": "C"}]
    )
    assert [r[3:] for r in first.results] == [["created", True], ["created", True]]
    assert [(r[1], r[3], r[4]) for r in second.results] == [
        ("b", "updated", True),
        ("c", "created", True),
    ]
    assert second.results[0][2] == first.results[1][2]
    assert (second.created, second.updated) == (1, 1)


def test_later_batch_wins_whatever_order_the_workers_run_in(db, org_and_key):
    org, _ = org_and_key
    later = write(
        db, org, 7, [{"external_id": "a", "name": "from batch 7", "website": "https://b7"}]
    )
    earlier = write(db, org, 5, [{"external_id": "a", "name": "from batch 5", "category": "c5"}])
    row = stored(db, org)["a"]
    assert (row.name, row.website, row.category) == ("from batch 7", "https://b7", None)
    assert row.written_seq == 7
    # The batch that lost still reports the record, as an update of the same object
    # that changed nothing.
    assert earlier.results == [[0, "a", later.results[0][2], "updated", False]]
    assert (earlier.updated, earlier.unchanged) == (1, 1)


def test_running_the_same_write_twice_changes_nothing(db, org_and_key):
    org, _ = org_and_key
    records = [{"external_id": "a", "name": "A", "tags": ["x"]}]
    write(db, org, 3, records)
    before = stored(db, org)["a"]
    again = write(db, org, 3, records)
    after = stored(db, org)["a"]
    assert len(stored(db, org)) == 1
    assert (after.id, after.name, after.tags, after.written_seq) == (
        before.id,
        before.name,
        before.tags,
        before.written_seq,
    )
    assert again.results[0][2] == before.id


def test_org_scoping_of_external_ids(db, make_org):
    first, _ = make_org("One")
    second, _ = make_org("Two")
    a = write(db, first, 1, [{"external_id": "same", "name": "one"}])
    b = write(db, second, 2, [{"external_id": "same", "name": "two"}])
    assert a.results[0][3] == b.results[0][3] == "created"
    assert a.results[0][2] != b.results[0][2]


def test_references_resolve_in_the_org_or_fail_the_record(db, make_org):
    org, _ = make_org("One")
    other, _ = make_org("Two")
    write(db, org, 1, [{"external_id": "v1", "name": "V"}])
    write(db, other, 2, [{"external_id": "v2", "name": "theirs"}])
    outcome = write(
        db,
        org,
        3,
        [
            {"external_id": "s1", "name": "S1", "vendor_external_id": "v1"},
            {"external_id": "s2", "name": "S2", "vendor_external_id": "v2"},
        ],
        base_object="service",
    )
    assert [r[1] for r in outcome.results] == ["s1"]
    assert [(e["index"], e["error_code"]) for e in outcome.errors] == [(1, "invalid_field_value")]
    assert outcome.rejected == 1
    assert stored(db, org, "service")["s1"].vendor_id == stored(db, org)["v1"].id


def test_a_record_equal_to_the_stored_values_changes_nothing(db, org_and_key):
    org, _ = org_and_key
    full = {"external_id": "a", "name": "A", "tags": ["x", "y"], "raw_irq_score": 85.0}
    write(db, org, 1, [full, {"external_id": "b", "name": "B"}])
    before = stored(db, org)
    again = write(db, org, 2, [full, {"external_id": "b", "name": "B"}])
    assert [(r[1], r[3], r[4]) for r in again.results] == [
        ("a", "updated", False),
        ("b", "updated", False),
    ]
    assert [r[2] for r in again.results] == [before["a"].id, before["b"].id]
    assert (again.created, again.updated, again.unchanged) == (0, 2, 2)
    after = stored(db, org)
    for external_id in ("a", "b"):
        assert after[external_id].updated_at == before[external_id].updated_at
        assert after[external_id].tags == before[external_id].tags


def test_only_real_changes_move_updated_at(db, org_and_key):
    org, _ = org_and_key
    write(
        db,
        org,
        1,
        [{"external_id": "a", "name": "A", "category": "c"}, {"external_id": "b", "name": "B"}],
    )
    before = stored(db, org)
    outcome = write(
        db,
        org,
        2,
        [
            {"external_id": "a", "name": "A"},  # a subset of the stored values
            {"external_id": "b", "name": "B", "category": "new"},  # one value more
        ],
    )
    assert [(r[1], r[4]) for r in outcome.results] == [("a", False), ("b", True)]
    assert (outcome.updated, outcome.unchanged) == (2, 1)
    after = stored(db, org)
    assert after["a"].updated_at == before["a"].updated_at
    assert after["b"].updated_at > before["b"].updated_at
    assert (after["b"].category, after["b"].written_seq) == ("new", 2)


@pytest.mark.parametrize("order", ["newer first", "older first"])
def test_an_unchanged_newer_batch_wins_over_a_changed_older_one(db, org_and_key, order):
    """Batch 3 re-sends the stored values, batch 2 (older) changes them: in whatever
    order they are written, batch 3's values stay (on SQLite an unchanged row always
    takes the batch's written_seq; PostgreSQL's shortcut is tested on PostgreSQL)."""
    org, _ = org_and_key
    write(db, org, 1, [{"external_id": "a", "name": "A"}])
    seeded = stored(db, org)["a"]
    newer = lambda: write(db, org, 3, [{"external_id": "a", "name": "A"}])  # noqa: E731
    older = lambda: write(db, org, 2, [{"external_id": "a", "name": "changed"}])  # noqa: E731
    if order == "newer first":
        results = [newer().results, older().results]
        assert stored(db, org)["a"].updated_at == seeded.updated_at
    else:
        results = [older().results, newer().results]
    row = stored(db, org)["a"]
    assert (row.name, row.written_seq) == ("A", 3)
    assert [r[0][3:] for r in results] == (
        [["updated", False], ["updated", False]]
        if order == "newer first"
        else [["updated", True], ["updated", True]]
    )
