"""Validation alone, one process: the compiled validator against marshmallow.

Validates the same 100,000 bench records (``bench/data.py``) with
``validate_records`` as the service runs it (the validator compiled from the catalog,
marshmallow for the records it does not find valid) and with every record through the
marshmallow schema (``compiled=False``: the path before the compiled validator), in
the same run, alternating, median of the rounds; checks that both give the same
outcome, then prints records/s and the ratio.

    python -m bench.validation [--records 100000] [--rounds 5] [--chunk-size 5000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.data import MAPPING, records
from importer import catalog
from importer.validation import ValidationOutcome, validate_records

CHOICES = {"vendor_statuses": list(catalog.DEFAULT_VENDOR_STATUSES)}


def validate_in_chunks(batch: list[dict], chunk_size: int, compiled: bool) -> ValidationOutcome:
    """As the workers do: chunk by chunk, records at their indexes in the batch."""
    outcome = ValidationOutcome()
    for start in range(0, len(batch), chunk_size):
        part = validate_records(
            batch[start : start + chunk_size],
            indexes=range(start, min(start + chunk_size, len(batch))),
            base_object="vendor",
            mapping=MAPPING,
            org_choices=CHOICES,
            check_duplicates=False,
            compiled=compiled,
        )
        outcome.valid += part.valid
        outcome.errors += part.errors
        outcome.warnings += part.warnings
        outcome.failed_count += part.failed_count
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=5000)
    args = parser.parse_args()
    batch = records(0, args.records, generation=1)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    outcomes: dict[bool, ValidationOutcome] = {}
    for _ in range(args.rounds):
        for compiled in (False, True):
            started = time.perf_counter()
            outcomes[compiled] = validate_in_chunks(batch, args.chunk_size, compiled)
            seconds[compiled].append(time.perf_counter() - started)
    if outcomes[True] != outcomes[False]:
        raise SystemExit("the two paths disagree on the bench records")
    schema = args.records / statistics.median(seconds[False])
    compiled = args.records / statistics.median(seconds[True])
    print(
        f"Validation of {args.records:,} vendor records, one process, "
        f"chunks of {args.chunk_size:,}, median of {args.rounds}:"
    )
    print(f"  marshmallow schema, every record (before): {schema:,.0f} records/s")
    print(f"  compiled from the catalog (now):           {compiled:,.0f} records/s")
    print(f"  compiled / marshmallow = {compiled / schema:.2f}  (target >= 3)")


if __name__ == "__main__":
    main()
