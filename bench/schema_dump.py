"""What a response schema's dump costs, against the body built by hand, in one process.

The views that answer on the hot path (the import call and a batch, with up to
IMPORTER_INLINE_ITEMS results; pages of base objects) build their bodies by hand and
are documented by their schemas (``@api.answers``); the others are dumped by their
schemas (``@api.response``). This prints why, for each body: the time to serialise it
as the view does (orjson of the hand-built dict) and with the schema's dump first,
as a ratio measured in the same run, and the time the dump adds per response.

    python -m bench.schema_dump [--rounds 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson

from app.schemas import (
    OBJECT_PAGE_SCHEMAS,
    BatchSchema,
    ReportPageSchema,
)
from importer import catalog

NOW = 1_764_700_000


def batch_body(results: int, errors: int) -> dict[str, Any]:
    """A batch's body as the import call answers it (importer.outcomes.batch_body)."""
    return {
        "id": "cbimprpt_" + "0" * 32,
        "slug": "vendors",
        "report_name": "Vendors",
        "base_object": "vendor",
        "mapping": {"external_id": "Supplier ID", "name": "Supplier Name"},
        "report_version": 1,
        "batch_id": "cbbatch_" + "1" * 32,
        "dry_run": False,
        "status": "completed",
        "received_count": results + errors,
        "created_count": results,
        "updated_count": 0,
        "unchanged_count": 0,
        "failed_count": errors,
        "received_at": NOW,
        "completed_at": NOW + 1,
        "progress": {"processed": results + errors, "total": results + errors},
        "results_total": results,
        "errors_total": errors,
        "warnings_total": 0,
        "details_purged_at": None,
        "links": {
            "self": "/v1/import/batches/x",
            "results": "/v1/import/batches/x/results",
            "errors": "/v1/import/batches/x/errors",
            "warnings": "/v1/import/batches/x/warnings",
        },
        "results": [
            {
                "index": i,
                "external_id": f"V-{i:06d}",
                "coverbase_id": f"cbvndr_{i:032x}",
                "action": "created",
                "changed": True,
                "status": "success",
            }
            for i in range(results)
        ],
        "errors": [
            {
                "index": results + i,
                "external_id": f"V-{results + i:06d}",
                "field": "Website",
                "error_code": "invalid_field_value",
                "message": "Not a valid URL.",
            }
            for i in range(errors)
        ],
        "warnings": [],
    }


def vendor_page(size: int) -> dict[str, Any]:
    """A page of vendors as GET /v1/vendors answers it (app.api.objects.object_body)."""
    base = catalog.CATALOG["vendor"]
    items = []
    for i in range(size):
        item: dict[str, Any] = {"id": f"cbvndr_{i:032x}"}
        for spec in base.fields:
            item[spec.name] = None
            if spec.reference_column:
                item[spec.reference_column] = None
        item.update(external_id=f"V-{i:06d}", name=f"Vendor {i}", created_at=NOW, updated_at=NOW)
        items.append(item)
    return page_of(items)


def report_page(size: int) -> dict[str, Any]:
    """A page of reports (ORM rows, dumped by ReportSchema as the view does)."""
    when = dt.datetime.fromtimestamp(NOW, dt.UTC)
    items = [
        SimpleNamespace(
            id=f"cbimprpt_{i:032x}",
            slug=f"feed-{i}",
            report_name=f"Feed {i}",
            base_object="vendor",
            mapping={"external_id": "Supplier ID", "name": "Supplier Name"},
            required=["external_id", "name"],
            version=1,
            created_at=when,
            updated_at=when,
        )
        for i in range(size)
    ]
    return page_of(items)


def page_of(items: list[Any]) -> dict[str, Any]:
    return {
        "items": items,
        "total": len(items),
        "total_is_lower_bound": False,
        "limit": len(items),
        "offset": 0,
        "next_cursor": None,
    }


def median_ms(call: Callable[[], Any], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    batch_schema = BatchSchema()
    vendor_schema = OBJECT_PAGE_SCHEMAS["vendor"]()
    report_schema = ReportPageSchema()
    print(f"Response bodies: median of {args.rounds} rounds, in one process")
    print("  | body | built by hand | dumped by its schema | ratio | added per response |")
    print("  |---|---|---|---|---|")
    cases: list[tuple[str, Any, Any, bool]] = [
        ("import answer, 100 results", batch_body(100, 0), batch_schema, True),
        ("import answer, 1,000 results + 20 errors", batch_body(1000, 20), batch_schema, True),
        ("page of 200 vendors", vendor_page(200), vendor_schema, True),
        ("page of 50 reports (dumped)", report_page(50), report_schema, False),
    ]
    for label, body, schema, by_hand in cases:
        if by_hand:
            hand = median_ms(lambda body=body: orjson.dumps(body), args.rounds)
        else:  # the hand-built equivalent: the dict the schema makes, serialised
            built = schema.dump(body)
            hand = median_ms(lambda built=built: orjson.dumps(built), args.rounds)
        dumped = median_ms(
            lambda body=body, schema=schema: orjson.dumps(schema.dump(body)), args.rounds
        )
        print(
            f"  | {label} | {hand:.3f} ms | {dumped:.3f} ms | {dumped / hand:.1f} x "
            f"| +{dumped - hand:.2f} ms |"
        )


if __name__ == "__main__":
    main()
