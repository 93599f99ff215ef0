"""A record re-sent exactly as the one whose values its object holds is answered
unchanged without being validated or written (importer.sources); anything that could
make its values differ (another mapping, another form, an unmapped field) takes the
full path."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from importer import batches, reports
from importer.models import ImportBatch
from importer.notify import PollingNotifier
from importer.outcomes import page
from importer.upsert import write_records
from tests.factories import VENDOR_MAPPING, accept_records, recording_outbox
from tests.integration.factories import object_rows as rows
from tests.integration.factories import vendor_report
from worker.tasks import run_chunk

pytestmark = pytest.mark.integration


def vendors(first: int, count: int, **extra) -> list[dict]:
    return [
        {"Supplier ID": f"V-{n}", "Supplier Name": f"Vendor {n}", "Website": f"v{n}.example"}
        | extra
        for n in range(first, first + count)
    ]


@pytest.fixture
def validated(monkeypatch):
    """The records the workers validate, import after import."""
    seen: list[list[dict]] = []
    validate = batches.validate_records

    def spy(records, **options):
        seen.append(list(records))
        return validate(records, **options)

    monkeypatch.setattr(batches, "validate_records", spy)
    return seen


def import_deferred(db, org, report, records):
    """Accept as a batch the workers validate, run its chunks: (counts, results)."""
    batch_id, chunk_ids = accept_records(db, org, report, records, chunk_size=2, deferred=True)
    for chunk_id in chunk_ids:
        run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)
    with db.session() as session:
        batch = session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()
        results = page(session, batch_id, "results", 0, 100)
        warnings = page(session, batch_id, "warnings", 0, 100)
        counts = (batch.created_count, batch.updated_count, batch.unchanged_count)
        return counts, results, warnings


def test_a_record_sent_again_as_it_was_is_neither_validated_nor_written(pg, validated):
    org, report = vendor_report(pg, f"same-{uuid.uuid4().hex[:6]}")
    sent = vendors(1, 5)
    first, created, _ = import_deferred(pg, org, report, sent)
    before = rows(pg, org)
    validated.clear()

    again, results, _ = import_deferred(pg, org, report, sent)

    assert first == (5, 0, 0)
    assert again == (0, 5, 5)
    assert [r for batch in validated for r in batch] == []
    assert [(r["external_id"], r["coverbase_id"], r["action"], r["changed"]) for r in results] == [
        (r["external_id"], r["coverbase_id"], "updated", False) for r in created
    ]
    after = rows(pg, org)
    assert {k: (v.xmin, v.updated_at, v.written_seq) for k, v in after.items()} == {
        k: (v.xmin, v.updated_at, v.written_seq) for k, v in before.items()
    }


def test_the_same_record_under_another_mapping_is_validated_and_written(pg, validated):
    org, report = vendor_report(pg, f"remap-{uuid.uuid4().hex[:6]}")
    sent = vendors(1, 2)
    import_deferred(pg, org, report, sent)
    with pg.session() as session:
        other = reports.create_report(
            session,
            session.merge(org),
            slug=f"w-{uuid.uuid4().hex[:6]}",
            report_name="w",
            base_object="vendor",
            # The same columns, the website read as the HQ's location instead.
            mapping={**{k: v for k, v in VENDOR_MAPPING.items() if k != "website"}}
            | {"hq_location": "Website"},
        )
    validated.clear()

    counts, results, _ = import_deferred(pg, org, other, sent)

    assert counts == (0, 2, 0)
    assert [r["changed"] for r in results] == [True, True]
    assert len([r for batch in validated for r in batch]) == 2
    assert rows(pg, org)["V-1"].hq_location == "v1.example"


def test_the_same_values_sent_in_another_form_are_compared_then_remembered(pg, validated):
    org, report = vendor_report(pg, f"form-{uuid.uuid4().hex[:6]}")
    import_deferred(pg, org, report, vendors(1, 2))
    reordered = [dict(reversed(record.items())) for record in vendors(1, 2)]
    validated.clear()

    counts, results, _ = import_deferred(pg, org, report, reordered)
    assert counts == (0, 2, 2) and [r["changed"] for r in results] == [False, False]
    assert len([r for batch in validated for r in batch]) == 2  # compared value by value
    validated.clear()
    # Unchanged rows are not written, so the digest stored is still the first form's.
    counts, _, _ = import_deferred(pg, org, report, vendors(1, 2))
    assert counts == (0, 2, 2) and [r for batch in validated for r in batch] == []


def test_a_record_with_an_unmapped_field_still_warns_every_time(pg, validated):
    org, report = vendor_report(pg, f"warn-{uuid.uuid4().hex[:6]}")
    sent = vendors(1, 2, Notes="kept out")
    import_deferred(pg, org, report, sent)
    validated.clear()

    counts, _, warnings = import_deferred(pg, org, report, sent)

    assert counts == (0, 2, 2)
    assert [(w["index"], w["error_code"]) for w in warnings] == [
        (0, "unmapped_field"),
        (1, "unmapped_field"),
    ]
    assert len([r for batch in validated for r in batch]) == 2


def test_a_record_another_batch_creates_meanwhile_is_updated_not_duplicated(pg, monkeypatch):
    """The chunk's read finds V-1 absent, so the write does not read it again; another
    batch creates V-1 before the write: the COPY of the new rows fails on the unique
    key and falls back to the upsert, which updates V-1 (one object, the later values)."""
    org, report = vendor_report(pg, f"race-{uuid.uuid4().hex[:6]}")
    validate = batches.validate_records

    def another_batch_creates_it_meanwhile(records, **options):
        with pg.session() as session:
            write_records(
                session,
                org_id=org.id,
                base_object="vendor",
                mapping=VENDOR_MAPPING,
                seq=0,  # accepted before this batch
                records=[(0, {"external_id": "V-1", "name": "Meanwhile"})],
            )
        return validate(records, **options)

    monkeypatch.setattr(batches, "validate_records", another_batch_creates_it_meanwhile)

    counts, results, _ = import_deferred(pg, org, report, vendors(1, 2))

    assert counts == (1, 1, 0)
    stored = rows(pg, org)
    assert sorted(stored) == ["V-1", "V-2"]
    assert [(r["external_id"], r["action"], r["coverbase_id"]) for r in results] == [
        ("V-1", "updated", stored["V-1"].id),
        ("V-2", "created", stored["V-2"].id),
    ]
    assert stored["V-1"].name == "Vendor 1"
