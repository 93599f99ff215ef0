"""The demo org of the embedded deployment: one example report per base object."""

from __future__ import annotations

import shlex

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import orgs, reports
from importer.models import Org

DEMO_ORG_NAME = "Demo org"

DEMO_REPORTS = (
    {
        "slug": "vendors",
        "report_name": "Vendors (demo)",
        "base_object": "vendor",
        "mapping": {
            "external_id": "Supplier ID",
            "name": "Supplier Name",
            "website": "Website",
            "status": "Status",
            "tags": "Tags",
            "raw_irq_score": "IRQ Score",
            "contract_end_date": "Contract End",
            "primary_contact_email": "Contact Email",
        },
    },
    {
        "slug": "services",
        "report_name": "Services (demo)",
        "base_object": "service",
        "mapping": {
            "external_id": "Service ID",
            "name": "Service Name",
            "vendor_external_id": "Supplier ID",
            "hosting_model": "Hosting",
            "criticality_tier": "Tier",
            "data_types": "Data Types",
        },
    },
    {
        "slug": "assessments",
        "report_name": "Assessments (demo)",
        "base_object": "assessment",
        "mapping": {
            "external_id": "Assessment ID",
            "vendor_external_id": "Supplier ID",
            "name": "Name",
            "assessment_type": "Type",
            "status": "Status",
            "period_start": "Start",
            "period_end": "End",
            "score_percent": "Score",
        },
    },
)

SAMPLE_VENDORS = [
    {
        "Supplier ID": "V-001",
        "Supplier Name": "Acme Cloud",
        "Website": "acme.example.com",
        "Status": "active",
        "Tags": "hosting, pii",
        "IRQ Score": "72",
        "Contract End": "2027-06-30",
        "Contact Email": "security@acme.example.com",
    },
    {
        "Supplier ID": "V-002",
        "Supplier Name": "Globex Payroll",
        "Status": "onboarding",
        "IRQ Score": 41.5,
    },
    {"Supplier ID": "V-003", "Supplier Name": "Initech Support", "Status": "intake"},
]


def demo_exists(session: Session) -> bool:
    return session.scalar(sa.select(Org.id).where(Org.name == DEMO_ORG_NAME).limit(1)) is not None


def create_demo(session: Session) -> tuple[Org, str]:
    """The demo org, its API key (in clear, to print once) and its example reports."""
    org, api_key = orgs.create_org(session, DEMO_ORG_NAME)
    for definition in DEMO_REPORTS:
        reports.create_report(session, org, **definition)  # type: ignore[arg-type]
    return org, api_key


def sample_curl(base_url: str, api_key: str) -> str:
    body = orjson.dumps({"data": SAMPLE_VENDORS}).decode()
    return (
        f"curl -sS -X POST {base_url}/v1/import/vendors "
        f"-H {shlex.quote('Authorization: Bearer ' + api_key)} "
        "-H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)}"
    )
