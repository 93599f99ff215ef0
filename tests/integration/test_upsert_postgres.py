"""The write on PostgreSQL: new rows COPY-ed after one key read, changed rows upserted,
unchanged rows left alone; and each guarantee under the concurrency it has to survive:
one object per external_id when two batches insert the same new one at once, later
wins when the later batch found the values unchanged (in both orders, and while the
older batch is still being accepted), ``created``/``updated`` from the write itself,
references checked in the writing transaction."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from importer import orgs
from importer.batches import accept_batch
from importer.models import OBJECT_TABLES, ImportBatch
from importer.notify import PollingNotifier
from importer.outcomes import page
from importer.upsert import write_records
from importer.validation import validate_records
from tests.factories import SERVICE_MAPPING, VENDOR_MAPPING, accept_records, recording_outbox
from tests.integration.factories import object_rows as rows
from tests.integration.factories import vendor_report, wait_until, waiting_on_a_lock
from worker.tasks import run_chunk

VENDORS = OBJECT_TABLES["vendor"]


def new_org(db):
    with db.session() as session:
        org, _ = orgs.create_org(session, f"upsert-{uuid.uuid4().hex[:6]}")
    return org


def write(session, org, seq, records, base_object="vendor", mapping=VENDOR_MAPPING):
    return write_records(
        session,
        org_id=org.id,
        base_object=base_object,
        mapping=mapping,
        seq=seq,
        records=list(enumerate(records)),
    )


def committed_write(db, org, seq, records, **options):
    with db.session() as session:
        return write(session, org, seq, records, **options)


def in_thread(target):
    """Run ``target`` in a thread; ``join()`` returns its result (or raises its error)."""
    box = {}

    def run():
        try:
            box["result"] = target()
        except BaseException as error:  # re-raised in the test's thread
            box["error"] = error

    thread = threading.Thread(target=run)
    thread.start()

    def join():
        thread.join(60)
        assert not thread.is_alive(), "the concurrent write never finished"
        if "error" in box:
            raise box["error"]
        return box["result"]

    join.running = thread.is_alive
    return join


def test_new_rows_are_copied_and_changed_rows_upserted(pg):
    org = new_org(pg)
    first = committed_write(
        pg,
        org,
        1,
        [
            {"external_id": "a", "name": "A", "tags": ["x"], "raw_irq_score": 85.5},
            {"external_id": "b", "name": "B", "enterprise": True},
        ],
    )
    assert [(r[1], r[3], r[4]) for r in first.results] == [
        ("a", "created", True),
        ("b", "created", True),
    ]
    before = rows(pg, org)
    second = committed_write(
        pg,
        org,
        2,
        [
            {"external_id": "a", "name": "A", "tags": ["x"], "raw_irq_score": 85.5},
            {"external_id": "b", "name": "B2"},
            {"external_id": "c", "name": "C"},
        ],
    )
    assert [(r[1], r[2], r[3], r[4]) for r in second.results] == [
        ("a", before["a"].id, "updated", False),
        ("b", before["b"].id, "updated", True),
        ("c", second.results[2][2], "created", True),
    ]
    assert (second.created, second.updated, second.unchanged) == (1, 2, 1)
    after = rows(pg, org)
    # The unchanged row was not written at all: the same row version, the same times.
    assert (after["a"].xmin, after["a"].ctid) == (before["a"].xmin, before["a"].ctid)
    assert (after["a"].updated_at, after["a"].written_seq) == (before["a"].updated_at, 1)
    # The changed one: its new value, the others kept, updated_at moved.
    assert (after["b"].name, after["b"].enterprise, after["b"].written_seq) == ("B2", True, 2)
    assert after["b"].updated_at > before["b"].updated_at
    assert after["c"].created_seq == after["c"].written_seq == 2


@pytest.mark.parametrize("first_seq, second_seq", [(1, 2), (2, 1)])
def test_two_batches_inserting_the_same_new_external_id_make_one_object(pg, first_seq, second_seq):
    """The second write read no row for "k" (the first had not committed), so its COPY
    of "k" waits on the unique index, then fails on it: it is rolled back to its
    savepoint and "k" is upserted instead; the chunk does not fail."""
    org = new_org(pg)
    holder = pg.new_session()
    try:
        first = write(holder, org, first_seq, [{"external_id": "k", "name": "first"}])

        def second_write():
            return committed_write(
                pg,
                org,
                second_seq,
                [{"external_id": "k", "name": "second"}, {"external_id": "n", "name": "new"}],
            )

        join = in_thread(second_write)
        wait_until(lambda: waiting_on_a_lock(pg), what="the second COPY to wait on the first")
        holder.commit()
        second = join()
    finally:
        holder.close()
    stored = rows(pg, org)
    assert sorted(stored) == ["k", "n"]
    assert first.results == [[0, "k", stored["k"].id, "created", True]]
    later_wins = second_seq > first_seq
    # "updated", though its read found nothing: the action comes from the write.
    assert second.results[0] == [0, "k", stored["k"].id, "updated", later_wins]
    assert second.results[1][3:] == ["created", True]
    assert stored["k"].name == ("second" if later_wins else "first")
    assert stored["k"].written_seq == max(first_seq, second_seq)


def test_a_racing_insert_rolled_back_leaves_the_row_to_the_other(pg):
    org = new_org(pg)
    holder = pg.new_session()
    try:
        write(holder, org, 1, [{"external_id": "k", "name": "first"}])
        join = in_thread(lambda: committed_write(pg, org, 2, [{"external_id": "k", "name": "2"}]))
        wait_until(lambda: waiting_on_a_lock(pg), what="the second COPY to wait on the first")
        holder.rollback()
        second = join()
    finally:
        holder.close()
    stored = rows(pg, org)
    assert second.results == [[0, "k", stored["k"].id, "created", True]]
    assert (stored["k"].name, stored["k"].created_seq) == ("2", 2)


def test_later_batch_wins_whatever_order_the_writes_run_in(pg):
    org = new_org(pg)
    later = committed_write(
        pg, org, 7, [{"external_id": "a", "name": "7", "website": "https://b7"}]
    )
    earlier = committed_write(pg, org, 5, [{"external_id": "a", "name": "5", "status": "active"}])
    stored = rows(pg, org)["a"]
    assert (stored.name, stored.website, stored.status, stored.written_seq) == (
        "7",
        "https://b7",
        None,
        7,
    )
    assert earlier.results == [[0, "a", later.results[0][2], "updated", False]]


#: External ids that PostgreSQL's array text form must quote (the keys are looked up
#: as one array literal).
ODD_IDS = ['a"b', "c\\d", "{e,f}", " g ", "NULL", "ü ∑", "h'i", "", "\\"]


def test_external_ids_an_array_must_quote_are_found_again(pg):
    org = new_org(pg)
    first = committed_write(pg, org, 1, [{"external_id": x, "name": "A"} for x in ODD_IDS])
    second = committed_write(pg, org, 2, [{"external_id": x, "name": "B"} for x in ODD_IDS])
    assert [r[3] for r in first.results] == ["created"] * len(ODD_IDS)
    assert [(r[1], r[2], r[3]) for r in second.results] == [
        (x, r[2], "updated") for x, r in zip(ODD_IDS, first.results, strict=True)
    ]
    assert sorted(rows(pg, org)) == sorted(ODD_IDS)


def test_a_batchs_results_name_their_external_ids_however_odd(pg):
    org, report = vendor_report(pg, f"odd-{uuid.uuid4().hex[:6]}")
    records = [{"Supplier ID": x, "Supplier Name": "A"} for x in ODD_IDS if x.strip()]
    batch_id, chunk_ids = accept_records(pg, org, report, records, chunk_size=4)
    for chunk_id in chunk_ids:
        run(pg, chunk_id)
    with pg.session() as session:
        results = page(session, batch_id, "results", 0, 100)
    assert [r["external_id"] for r in results] == [x.strip() for x in ODD_IDS if x.strip()]


# --- later wins when the later batch changes nothing --------------------------------


def vendor_record(hq: str) -> dict:
    return {"Supplier ID": "V-1", "Supplier Name": "Acme", "Website": hq}


def accept_one(db, org, report, record, deferred=False):
    """Accept a one-record batch (one chunk; validated, or ``deferred`` to the worker,
    which may then know it unchanged from its digest): (batch id, chunk id)."""
    batch_id, chunk_ids = accept_records(db, org, report, [record], chunk_size=1, deferred=deferred)
    return batch_id, chunk_ids[0]


def run(db, chunk_id):
    run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)


def outcome(db, batch_id):
    with db.session() as session:
        batch = session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()
        results = page(session, batch_id, "results", 0, 10)
        return (batch.updated_count, batch.unchanged_count), [r["changed"] for r in results]


@pytest.mark.parametrize("deferred", [False, True], ids=["validated by the web", "by the worker"])
@pytest.mark.parametrize("order", ["newer first", "older first"])
def test_an_unchanged_newer_batch_still_wins_over_a_changed_older_one(pg, order, deferred):
    """Stored: lyon.example. Batch N (older) says paris.example; batch M (newer) says
    lyon.example, unchanged (by the worker: the very record stored, same digest).
    Whatever order their chunks run in, M's value stays."""
    org, report = vendor_report(pg, f"later-wins-{uuid.uuid4().hex[:6]}")
    _, seed = accept_one(pg, org, report, vendor_record("lyon.example"), deferred)
    run(pg, seed)
    seeded = rows(pg, org)["V-1"]
    older, older_chunk = accept_one(pg, org, report, vendor_record("paris.example"), deferred)
    newer, newer_chunk = accept_one(pg, org, report, vendor_record("lyon.example"), deferred)
    for chunk_id in (
        [newer_chunk, older_chunk] if order == "newer first" else [older_chunk, newer_chunk]
    ):
        run(pg, chunk_id)
    stored = rows(pg, org)["V-1"]
    assert stored.website == "https://lyon.example"
    with pg.session() as session:
        newer_seq = session.scalar(sa.select(ImportBatch.seq).where(ImportBatch.id == newer))
    assert stored.written_seq == newer_seq
    if order == "newer first":
        # M changed nothing (its written_seq moved, not updated_at: N was still pending),
        # and N, run afterwards, lost against it: nothing changed at all.
        assert stored.updated_at == seeded.updated_at
        assert outcome(pg, newer) == ((1, 1), [False])
        assert outcome(pg, older) == ((1, 1), [False])
    else:
        assert stored.updated_at > seeded.updated_at
        assert outcome(pg, older) == ((1, 0), [True])
        assert outcome(pg, newer) == ((1, 0), [True])


def test_new_records_of_a_batch_behind_an_older_pending_one_still_let_the_later_win(pg):
    """A feed posted as many batches: M's chunk runs while the older N's is pending.
    M's new records go in as a whole (created, M's seq); its chunk with a record that
    exists falls back to the upsert (created and updated from the write). N, run
    afterwards on the same external_ids, loses against M on every one of them."""
    org, report = vendor_report(pg, f"feed-{uuid.uuid4().hex[:6]}")
    _, seed = accept_one(pg, org, report, vendor_record("lyon.example"))
    run(pg, seed)

    def feed(hq: str, ids: list[str]) -> list[dict]:
        return [vendor_record(hq) | {"Supplier ID": external_id} for external_id in ids]

    older, older_chunks = accept_records(
        pg, org, report, feed("old.example", ["N-1", "N-2", "N-3", "V-1"]), chunk_size=2
    )
    newer, newer_chunks = accept_records(
        pg, org, report, feed("new.example", ["N-2", "N-1", "V-1", "N-3"]), chunk_size=2
    )
    for chunk_id in [*newer_chunks, *older_chunks]:
        run(pg, chunk_id)

    stored = rows(pg, org)
    with pg.session() as session:
        newer_seq = session.scalar(sa.select(ImportBatch.seq).where(ImportBatch.id == newer))
    assert {key: (row.website, row.written_seq) for key, row in stored.items()} == {
        key: ("https://new.example", newer_seq) for key in ("N-1", "N-2", "N-3", "V-1")
    }
    assert [stored[key].created_seq for key in ("N-1", "N-2", "N-3")] == [newer_seq] * 3
    with pg.session() as session:
        made = [
            (r["external_id"], r["coverbase_id"], r["action"], r["changed"])
            for r in page(session, newer, "results", 0, 10)
        ]
        lost = [
            (r["external_id"], r["action"], r["changed"])
            for r in page(session, older, "results", 0, 10)
        ]
    assert made == [
        ("N-2", stored["N-2"].id, "created", True),
        ("N-1", stored["N-1"].id, "created", True),
        ("V-1", stored["V-1"].id, "updated", True),
        ("N-3", stored["N-3"].id, "created", True),
    ]
    assert lost == [(key, "updated", False) for key in ("N-1", "N-2", "N-3", "V-1")]


def test_an_older_batch_still_being_accepted_is_not_missed(pg):
    """N takes its seq and is not committed yet when M (newer, unchanged) is written:
    M's worker finds an accept of the org in progress (its lock held), so it moves
    the row's written_seq, without waiting for it, and N, written afterwards, loses."""
    org, report = vendor_report(pg, "accept-race")
    _, seed = accept_one(pg, org, report, vendor_record("lyon.example"))
    run(pg, seed)
    accepting = pg.new_session()
    try:
        records = [vendor_record("paris.example")]
        outcome_n = validate_records(records, base_object="vendor", mapping=report.mapping)
        older = accept_batch(
            accepting,
            org=accepting.merge(org),
            report=accepting.merge(report),
            received_count=1,
            outcome=outcome_n,
            chunk_size=1,
        )
        older_chunk = older.chunk_ids[0]
        newer, newer_chunk = accept_one(pg, org, report, vendor_record("lyon.example"))
        run(pg, newer_chunk)  # never waits for the accept in progress
        accepting.commit()
    finally:
        accepting.close()
    run(pg, older_chunk)
    stored = rows(pg, org)["V-1"]
    assert stored.website == "https://lyon.example"
    assert outcome(pg, newer) == ((1, 1), [False])
    assert outcome(pg, older.batch.id) == ((1, 1), [False])


def test_an_unchanged_reimport_with_no_older_batch_pending_writes_no_row(pg):
    org, report = vendor_report(pg, "quiet")
    records = [vendor_record("lyon.example") | {"Supplier ID": f"V-{n}"} for n in range(5)]
    _, chunks = accept_records(pg, org, report, records, chunk_size=5)
    run(pg, chunks[0])
    before = rows(pg, org)
    again, chunks = accept_records(pg, org, report, records, chunk_size=5)
    run(pg, chunks[0])
    after = rows(pg, org)
    assert [(row.xmin, row.ctid, row.written_seq) for row in after.values()] == [
        (row.xmin, row.ctid, row.written_seq) for row in before.values()
    ]
    assert outcome(pg, again) == ((5, 5), [False] * 5)


def test_values_from_a_chunk_payload_are_written_and_compared_as_stored(pg):
    """A chunk's payload is JSON: a date arrives as its text, a score as a float. It is
    written as a date, and read back equal, so the same record again changes nothing."""
    org, report = vendor_report(pg, "payload")
    record = {
        "Supplier ID": "V-1",
        "Supplier Name": "Acme",
        "Next Assessment": "2026-01-31T23:30:00-05:00",
        "IRQ Score": "85.5",
        "Tags": "a, b",
        "Enterprise": "yes",
    }
    _, first = accept_one(pg, org, report, record)
    run(pg, first)
    stored = rows(pg, org)["V-1"]
    assert (stored.next_assessment_date.isoformat(), stored.raw_irq_score) == ("2026-01-31", 85.5)
    assert (stored.tags, stored.enterprise) == (["a", "b"], True)
    again, chunk = accept_one(pg, org, report, record | {"Next Assessment": "2026-01-31"})
    run(pg, chunk)
    assert outcome(pg, again) == ((1, 1), [False])
    assert rows(pg, org)["V-1"].xmin == stored.xmin


# --- references ---------------------------------------------------------------------


def test_references_are_checked_in_the_writing_transaction(pg):
    """A service names its vendor by external_id; the vendor is looked up in the
    transaction that writes the service: one written earlier in the same transaction
    is found, one another transaction has not committed is not (the record fails)."""
    org = new_org(pg)
    services = OBJECT_TABLES["service"]
    other = pg.new_session()
    try:
        # Another transaction's vendor, not committed (inserted as a row alone: a write
        # would also hold the org's object count, which this transaction then waits for).
        other.execute(
            sa.insert(VENDORS).values(
                id="cbvndr_" + uuid.uuid4().hex,
                org_id=org.id,
                external_id="v-uncommitted",
                name="V",
                created_at=sa.func.now(),
                updated_at=sa.func.now(),
                created_seq=1,
                written_seq=1,
            )
        )
        with pg.session() as session:
            vendors = write(session, org, 2, [{"external_id": "v1", "name": "V1"}])
            written = write(
                session,
                org,
                2,
                [
                    {"external_id": "s1", "name": "S1", "vendor_external_id": "v1"},
                    {"external_id": "s2", "name": "S2", "vendor_external_id": "v-uncommitted"},
                ],
                base_object="service",
                mapping=SERVICE_MAPPING,
            )
    finally:
        other.rollback()
        other.close()
    assert [r[1] for r in written.results] == ["s1"]
    assert [(e["index"], e["error_code"]) for e in written.errors] == [(1, "invalid_field_value")]
    stored = rows(pg, org, services)
    assert sorted(stored) == ["s1"]
    assert stored["s1"].vendor_id == vendors.results[0][2]
