"""Import reports: ``/v1/import-reports``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Response

from app.api import api
from app.auth import current_org
from app.blueprint import sends
from app.errors import (
    InvalidBody,
    InvalidMapping,
    PayloadTooLarge,
    ReportNotFound,
    SlugTaken,
    UnsupportedMediaType,
)
from app.extensions import db_session
from app.pagination import query_page, scope_digest
from app.schemas import (
    BodyHeadersSchema,
    PageQuerySchema,
    ReportCreateSchema,
    ReportPageSchema,
    ReportSchema,
    ReportUpdateSchema,
    SlugPathSchema,
)
from importer import listing, reports
from importer.models import ImportReport

TAGS = ["Import reports"]
#: What a body's checks can answer (app.parsing.json_body, then the schema).
_BODY_ERRORS = (PayloadTooLarge, UnsupportedMediaType, InvalidBody, InvalidMapping, SlugTaken)

_EXAMPLE = {
    "slug": "supplier-feed",
    "report_name": "Supplier feed",
    "base_object": "vendor",
    "mapping": {"external_id": "Supplier ID", "name": "Supplier Name", "website": "Website"},
    "required": ["website"],
}


def _report_or_404(slug: str) -> ImportReport:
    report = reports.active_report(db_session(), current_org().id, slug)
    if report is None:
        raise ReportNotFound(f"No import report {slug!r} in this org.")
    return report


def _report_first(view: Callable[..., Any]) -> Callable[..., Any]:
    """Look the report up before the body is read: another org's slug is a 404 whatever
    the body holds."""

    @functools.wraps(view)
    def looked_up(*args: Any, slug: str, **kwargs: Any) -> Any:
        return view(*args, report=_report_or_404(slug), **kwargs)

    return looked_up


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


@api.post("/import-reports", tags=TAGS)
@api.arguments(ReportCreateSchema, example=_EXAMPLE)
@api.response(201, ReportSchema, description="The report.", headers=sends("Location"))
@api.request_headers(BodyHeadersSchema)
@api.errors(*_BODY_ERRORS)
def create_report(body: dict[str, Any]) -> tuple[ImportReport, int, dict[str, str]]:
    """Create an import report"""
    session = db_session()
    report = _checked(lambda: reports.create_report(session, current_org(), **body))
    session.commit()
    return report, 201, {"Location": f"/v1/import-reports/{report.slug}"}


@api.get("/import-reports", tags=TAGS)
@api.arguments(PageQuerySchema, location="query")
@api.response(200, ReportPageSchema, description="A page of reports.")
def list_reports(page: dict[str, Any]) -> dict[str, Any]:
    """List the org's live reports, by slug"""
    org_id = current_org().id
    session = db_session()
    query = sa.select(ImportReport).where(
        ImportReport.org_id == org_id, ImportReport.archived_at.is_(None)
    )
    return query_page(
        session,
        query,
        [ImportReport.slug],
        page,
        entities=True,
        scope=scope_digest("reports", org_id),
        kinds=("str",),
        total=lambda: listing.bounded_count(session, query),
    )


@api.get("/import-reports/<slug>", tags=TAGS)
@api.path_parameters(SlugPathSchema)
@api.response(200, ReportSchema, description="The report.")
@api.errors(ReportNotFound)
def get_report(slug: str) -> ImportReport:
    """Read a report"""
    return _report_or_404(slug)


@api.patch("/import-reports/<slug>", tags=TAGS)
@_report_first
@api.path_parameters(SlugPathSchema)
@api.arguments(ReportUpdateSchema)
@api.response(200, ReportSchema, description="The report as changed.")
@api.request_headers(BodyHeadersSchema)
@api.errors(ReportNotFound, *_BODY_ERRORS)
def update_report(changes: dict[str, Any], report: ImportReport) -> ImportReport:
    """Change a report's name, slug, mapping or required fields

    `version` goes up when `mapping` or `required` changes.
    """
    session = db_session()
    _checked(lambda: reports.update_report(session, report, changes))
    session.commit()
    return report


@api.delete("/import-reports/<slug>", tags=TAGS)
@api.path_parameters(SlugPathSchema)
@api.response(204, description="Archived.")
@api.errors(ReportNotFound)
def archive_report(slug: str) -> Response:
    """Archive a report (its slug becomes free)"""
    report = _report_or_404(slug)
    session = db_session()
    reports.archive_report(session, report)
    session.commit()
    return Response(status=204)
