"""Where the time of a 100,000-record import goes: each stage of the pipeline timed
in one process, on this machine's PostgreSQL, in the order a batch goes through them.

    python -m bench.profile [--records 100000]
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
from importer import orgs
from importer.config import normalize_database_url
from importer.db import Database
from importer.upsert import write_records
from importer.validation import raw_external_id, screen_records, validate_records


class Envelope(msgspec.Struct):
    data: list[msgspec.Raw]


def timed(stages: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = step()
    stages[name] = stages.get(name, 0.0) + time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=5000)
    args = parser.parse_args()
    count, size = args.records, args.chunk_size
    stages: dict[str, float] = {}
    with deployment() as stack:
        db = Database(normalize_database_url(stack.env["DATABASE_URL"]))
        with db.session() as session:
            org, _ = orgs.create_org(session, "profile")
            choices = org.choices()
        # Half of the batch updates existing objects, as in bench/e2e.py.
        seed = validate_records(
            records(0, count // 2), base_object="vendor", mapping=MAPPING, org_choices=choices
        )
        for start in range(0, len(seed.valid), size):
            with db.session() as session:
                write_records(
                    session,
                    org_id=org.id,
                    base_object="vendor",
                    mapping=MAPPING,
                    seq=1,
                    records=seed.valid[start : start + size],
                )
        body = orjson.dumps({"data": records(0, count, generation=1)})

        # The web: split the body into records, read their external_ids, find
        # duplicates, build the chunks' payloads.
        envelope = timed(
            stages,
            "web: split the JSON body into records (msgspec)",
            lambda: msgspec.json.decode(body, type=Envelope),
        )
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
        # The workers: per chunk, read the payload, validate, upsert.
        for payload in payloads:
            pairs = timed(
                stages, "worker: read the chunk payload", lambda p=payload: orjson.loads(p)
            )
            checked = timed(
                stages,
                "worker: validate (marshmallow, cached schema)",
                lambda p=pairs: validate_records(
                    [r for _, r in p],
                    indexes=[i for i, _ in p],
                    base_object="vendor",
                    mapping=MAPPING,
                    org_choices=choices,
                    check_duplicates=False,
                ),
            )
            with db.session() as session:
                timed(
                    stages,
                    "worker: upsert (COPY to staging + INSERT ... ON CONFLICT)",
                    lambda c=checked, s=session: write_records(
                        s,
                        org_id=org.id,
                        base_object="vendor",
                        mapping=MAPPING,
                        seq=2,
                        records=c.valid,
                    ),
                )
        db.dispose()
    total = sum(stages.values())
    print(f"Where the time of a {count:,}-record import goes (half updates), one process:")
    print("  | stage | seconds | share | records/s |")
    print("  |---|---|---|---|")
    for name, seconds in stages.items():
        print(f"  | {name} | {seconds:.2f} | {seconds / total:.0%} | {count / seconds:,.0f} |")
    print(f"  | total | {total:.2f} | 100% | {count / total:,.0f} |")


if __name__ == "__main__":
    main()
