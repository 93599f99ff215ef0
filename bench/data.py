"""The records every benchmark uses: 10-field vendor records, as a source system sends them."""

from __future__ import annotations

from typing import Any

#: The report's mapping: service field name -> incoming field name (10 fields).
MAPPING = {
    "external_id": "Supplier ID",
    "name": "Supplier Name",
    "website": "Website",
    "description": "Description",
    "hq_location": "HQ",
    "status": "Status",
    "category": "Category",
    "raw_irq_score": "IRQ Score",
    "contract_end_date": "Contract End",
    "primary_contact_email": "Contact Email",
}

#: The same fields as table columns, for the raw COPY baseline.
COLUMNS = list(MAPPING)


def record(n: int, generation: int = 0) -> dict[str, Any]:
    return {
        "Supplier ID": f"V-{n:07d}",
        "Supplier Name": f"Vendor {n} gen {generation}",
        "Website": f"https://vendor{n}.example.com",
        "Description": "Provides hosted services to several business units",
        "HQ": "Lyon, France",
        "Status": "active",
        "Category": "Software",
        "IRQ Score": str((n * 7) % 101),
        "Contract End": "2027-06-30",
        "Contact Email": f"security@vendor{n}.example.com",
    }


def records(start: int, count: int, generation: int = 0) -> list[dict[str, Any]]:
    return [record(n, generation) for n in range(start, start + count)]
