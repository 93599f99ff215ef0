"""Import reports: ``/v1/import-reports``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Response

from app.api import api
from app.auth import current_org
from app.errors import InvalidMapping, ReportNotFound, SlugTaken
from app.extensions import db_session, services
from app.pagination import query_page, scope_digest
from app.parsing import json_body
from app.schemas import dump_report, load_body, report_create_schema, report_update_schema
from importer import listing, reports
from importer.models import ImportReport


def _report_or_404(slug: str) -> ImportReport:
    report = reports.active_report(db_session(), current_org().id, slug)
    if report is None:
        raise ReportNotFound(f"No import report {slug!r} in this org.")
    return report


def _checked(action: Any) -> ImportReport:
    try:
        result: ImportReport = action()
        return result
    except reports.ReportProblem as problem:
        raise InvalidMapping(str(problem), errors=problem.problems) from None
    except reports.SlugTaken as taken:
        raise SlugTaken(str(taken)) from None
    except sa.exc.IntegrityError:
        # Another request took the slug between our check and our insert.
        db_session().rollback()
        raise SlugTaken("The org already has a report with this slug.") from None


@api.post("/import-reports")
def create_report() -> tuple[dict[str, Any], int, dict[str, str]]:
    body = load_body(report_create_schema, json_body(services().settings))
    session = db_session()
    report = _checked(lambda: reports.create_report(session, current_org(), **body))
    session.commit()
    return dump_report(report), 201, {"Location": f"/v1/import-reports/{report.slug}"}


@api.get("/import-reports")
def list_reports() -> dict[str, Any]:
    org_id = current_org().id
    session = db_session()
    query = sa.select(ImportReport).where(
        ImportReport.org_id == org_id, ImportReport.archived_at.is_(None)
    )
    return query_page(
        session,
        query,
        [ImportReport.slug],
        entities=True,
        scope=scope_digest("reports", org_id),
        kinds=("str",),
        item=dump_report,
        total=lambda: listing.bounded_count(session, query),
    )


@api.get("/import-reports/<slug>")
def get_report(slug: str) -> dict[str, Any]:
    return dump_report(_report_or_404(slug))


@api.patch("/import-reports/<slug>")
def update_report(slug: str) -> dict[str, Any]:
    report = _report_or_404(slug)
    changes = load_body(report_update_schema, json_body(services().settings))
    session = db_session()
    _checked(lambda: reports.update_report(session, report, changes))
    session.commit()
    return dump_report(report)


@api.delete("/import-reports/<slug>")
def archive_report(slug: str) -> Response:
    report = _report_or_404(slug)
    session = db_session()
    reports.archive_report(session, report)
    session.commit()
    return Response(status=204)
