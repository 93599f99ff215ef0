"""Where the time of a 100,000-record import goes: each stage of the pipeline timed
in one process, on this machine's PostgreSQL, in the order a batch goes through them.

The worker's part is timed step by step as ``importer.batches.write_chunk`` runs it on
PostgreSQL: the records sent exactly as before set aside (``importer.sources``: their
digests, then the later-wins check and one read of the stored digests), the others
validated, then written as ``importer.upsert`` does (``_write_postgresql``: the
later-wins check, the key read, sorting the rows, the COPY of the new ones, the upsert
of the changed ones), then the commit; the stages add up to the whole path. Two
batches: the one ``bench/e2e.py`` measures (half of it updates of existing objects),
then the same body again (identical: every record sent as before).

    python -m bench.profile [--records 100000] [--chunk-size 5000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from bench.data import MAPPING, records
from bench.stack import deployment
from importer import catalog, orgs
from importer.collector import gc_paused
from importer.config import normalize_database_url
from importer.db import Database, utcnow
from importer.sources import SourceDigests, sent_before
from importer.upsert import (
    SOURCE_DIGEST,
    carried_columns,
    insert_new_rows,
    older_writes_pending,
    sort_rows,
    stored_rows,
    upsert_rows,
    write_records,
)
from importer.validation import raw_external_id, screen_records, validate_records

VENDOR = catalog.CATALOG["vendor"]

STAGES = [
    "web: split the JSON body into records (msgspec)",
    "web: read each record's external_id (orjson)",
    "web: duplicate external_ids",
    "web: chunk payloads",
    "worker: read the chunk payload",
    "worker: sent as before? the records' digests",
    "worker: sent as before? later-wins check + one read of (id, source_digest)",
    "worker: validate the others (compiled from the catalog)",
    "worker: write: may an older batch still write? (accept lock, chunks)",
    "worker: write: one key read (rows not known absent, with their values)",
    "worker: write: sort rows (new, changed, unchanged)",
    "worker: write: binary COPY of the new rows into vendors",
    "worker: write: changed rows: COPY to staging + INSERT ... ON CONFLICT",
    "worker: commit",
]


class Envelope(msgspec.Struct):
    data: list[msgspec.Raw]


def timed(stages: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = step()
    stages[name] = stages.get(name, 0.0) + time.perf_counter() - started
    return result


def profile_batch(
    db: Database, org_id: str, choices: Any, body: bytes, seq: int, size: int
) -> dict[str, float]:
    sources = SourceDigests("vendor", MAPPING, [], choices)
    # Every stage in pipeline order (a step a batch does not need stays at 0).
    stages = dict.fromkeys(STAGES, 0.0)
    # The web: split the body into records, read their external_ids, find
    # duplicates, build the chunks' payloads.
    envelope = timed(
        stages,
        "web: split the JSON body into records (msgspec)",
        lambda: msgspec.json.decode(body, type=Envelope),
    )
    count = len(envelope.data)
    ids = timed(
        stages,
        "web: read each record's external_id (orjson)",
        lambda: [
            raw_external_id(orjson.loads(memoryview(raw)), MAPPING["external_id"])
            for raw in envelope.data
        ],
    )
    outcome = timed(
        stages,
        "web: duplicate external_ids",
        lambda: screen_records(
            envelope.data, base_object="vendor", mapping=MAPPING, external_ids=ids
        ),
    )
    payloads = timed(
        stages,
        "web: chunk payloads",
        lambda: [
            orjson.dumps(
                outcome.valid[start : start + size],
                default=lambda raw: orjson.Fragment(memoryview(raw).tobytes()),
            )
            for start in range(0, count, size)
        ],
    )

    # The workers: per chunk, read the payload, set aside the records sent as before,
    # validate the others, write, commit; with the cyclic GC paused, as write_chunk is.
    @gc_paused()
    def one_chunk(payload: bytes) -> None:
        pairs = timed(stages, "worker: read the chunk payload", lambda p=payload: orjson.loads(p))
        session = db.new_session()
        digests = timed(
            stages,
            "worker: sent as before? the records' digests",
            lambda p=pairs: sources.digests(p),
        )
        before = timed(
            stages,
            "worker: sent as before? later-wins check + one read of (id, source_digest)",
            lambda s=session, p=pairs, d=digests: sent_before(
                s,
                org_id=org_id,
                base_object="vendor",
                seq=seq,
                external_id_field=MAPPING["external_id"],
                payload=p,
                digests=d,
            ),
        )
        rest = [pair for pair in pairs if pair[0] not in before.same]
        checked = timed(
            stages,
            "worker: validate the others (compiled from the catalog)",
            lambda p=rest: validate_records(
                [r for _, r in p],
                indexes=[i for i, _ in p],
                base_object="vendor",
                mapping=MAPPING,
                org_choices=choices,
                check_duplicates=False,
            ),
        )
        for index, values in checked.valid:
            values[SOURCE_DIGEST] = digests[index]
        rows = [values for _, values in checked.valid]
        now = utcnow()
        try:
            if not rows:  # every record sent as before: nothing to write
                timed(stages, "worker: commit", session.commit)
                return
            pending = timed(
                stages,
                "worker: write: may an older batch still write? (accept lock, chunks)",
                lambda s=session: older_writes_pending(s, org_id, "vendor", seq),
            )
            assert not pending  # nothing else runs: unchanged rows may be skipped
            columns = carried_columns(VENDOR, rows)
            stored = timed(
                stages,
                "worker: write: one key read (rows not known absent, with their values)",
                lambda s=session, r=rows, c=columns, a=before.absent: stored_rows(
                    s,
                    "vendor",
                    org_id,
                    (row["external_id"] for row in r if row["external_id"] not in a),
                    c,
                ),
            )
            _, new, to_upsert = timed(
                stages,
                "worker: write: sort rows (new, changed, unchanged)",
                lambda r=rows, st=stored, c=columns: sort_rows(VENDOR, r, st, c),
            )
            if new:
                inserted = timed(
                    stages,
                    "worker: write: binary COPY of the new rows into vendors",
                    lambda s=session, n=new, t=now: insert_new_rows(s, VENDOR, org_id, seq, t, n),
                )
                assert inserted
            if to_upsert:
                timed(
                    stages,
                    "worker: write: changed rows: COPY to staging + INSERT ... ON CONFLICT",
                    lambda s=session, u=to_upsert, t=now: upsert_rows(
                        s, VENDOR, org_id, seq, t, u, touch=False
                    ),
                )
            timed(stages, "worker: commit", session.commit)
        finally:
            session.close()

    for payload in payloads:
        one_chunk(payload)
    return stages


def show(title: str, stages: dict[str, float], count: int) -> None:
    total = sum(stages.values())
    print(title)
    print("  | stage | seconds | share | records/s |")
    print("  |---|---|---|---|")
    for name, seconds in stages.items():
        rate = f"{count / seconds:,.0f}" if seconds else "-"
        print(f"  | {name} | {seconds:.2f} | {seconds / total:.0%} | {rate} |")
    print(f"  | total | {total:.2f} | 100% | {count / total:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=5000)
    args = parser.parse_args()
    count, size = args.records, args.chunk_size
    with deployment() as stack:
        db = Database(normalize_database_url(stack.env["DATABASE_URL"]))
        with db.session() as session:
            org, _ = orgs.create_org(session, "profile")
            org_id, choices = org.id, org.choices()
        # Half of the batch updates existing objects, as in bench/e2e.py.
        seed = validate_records(
            records(0, count // 2), base_object="vendor", mapping=MAPPING, org_choices=choices
        )
        for start in range(0, len(seed.valid), size):
            with db.session() as session:
                write_records(
                    session,
                    org_id=org_id,
                    base_object="vendor",
                    mapping=MAPPING,
                    seq=1,
                    records=seed.valid[start : start + size],
                )
        body = orjson.dumps({"data": records(0, count, generation=1)})
        first = profile_batch(db, org_id, choices, body, 2, size)
        again = profile_batch(db, org_id, choices, body, 3, size)
        db.dispose()
    show(
        f"Where the time of a {count:,}-record import goes (half updates), one process:",
        first,
        count,
    )
    show(f"The same {count:,} records again (identical), one process:", again, count)


if __name__ == "__main__":
    main()
