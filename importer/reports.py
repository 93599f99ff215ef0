"""Import reports: the checks a mapping must pass, and report changes with versioning."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import catalog, ids
from importer.db import utcnow
from importer.models import ImportReport, Org

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
MAX_INCOMING_NAME = 255
#: Slugs that would read as another endpoint (``/v1/import/batches``).
RESERVED_SLUGS = frozenset({"batches"})


class ReportProblem(Exception):
    """A report definition the catalog does not allow. ``problems`` lists each one."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(item["message"] for item in problems))
        self.problems = problems


class SlugTaken(Exception):
    def __init__(self, slug: str) -> None:
        super().__init__(f"The org already has a report with slug {slug!r}.")
        self.slug = slug


def check_slug(slug: str) -> list[dict[str, str]]:
    if slug in RESERVED_SLUGS:
        return [{"field": "slug", "message": f"slug {slug!r} is reserved; choose another"}]
    if SLUG_RE.match(slug):
        return []
    return [
        {
            "field": "slug",
            "message": "slug must be 1 to 100 characters of a-z, 0-9 and '-', "
            f"not starting or ending with '-'; got {slug!r}",
        }
    ]


def check_mapping(
    base_object: str, mapping: Mapping[str, str], required: Sequence[str]
) -> tuple[list[str], list[dict[str, str]]]:
    """Check a mapping against the catalog.

    Returns the effective required list (the given one plus the base object's own
    required fields, in catalog order) and the problems found, each naming its field.
    """
    base = catalog.get(base_object)
    if base is None:
        return [], [
            {
                "field": "base_object",
                "message": f"base_object must be one of {', '.join(catalog.CATALOG)}; "
                f"got {base_object!r}",
            }
        ]
    problems: list[dict[str, str]] = []
    for name in mapping:
        if base.field(name) is None:
            problems.append(
                {
                    "field": f"mapping.{name}",
                    "message": f"{name!r} is not a field of {base.name}; "
                    f"its fields are {', '.join(base.field_names)}",
                }
            )
    seen: dict[str, str] = {}
    for name, incoming in mapping.items():
        if incoming.strip() != incoming or not incoming or len(incoming) > MAX_INCOMING_NAME:
            problems.append(
                {
                    "field": f"mapping.{name}",
                    "message": f"the incoming name for {name!r} must be 1 to "
                    f"{MAX_INCOMING_NAME} characters without leading or trailing spaces",
                }
            )
        if incoming in seen:
            problems.append(
                {
                    "field": f"mapping.{name}",
                    "message": f"incoming name {incoming!r} is used for both "
                    f"{seen[incoming]!r} and {name!r}",
                }
            )
        seen.setdefault(incoming, name)
    for name in required:
        if base.field(name) is None:
            problems.append(
                {
                    "field": "required",
                    "message": f"required names {name!r}, which is not a field of {base.name}",
                }
            )
    wanted = set(required) | set(base.required_fields)
    effective = [spec.name for spec in base.fields if spec.name in wanted]
    for name in effective:
        if name not in mapping:
            problems.append(
                {
                    "field": f"mapping.{name}",
                    "message": f"{name!r} is required for {base.name} but has no mapping",
                }
            )
    return effective, problems


def active_report(session: Session, org_id: str, slug: str) -> ImportReport | None:
    return session.scalars(
        sa.select(ImportReport).where(
            ImportReport.org_id == org_id,
            ImportReport.slug == slug,
            ImportReport.archived_at.is_(None),
        )
    ).one_or_none()


def _ensure_slug_free(session: Session, org_id: str, slug: str) -> None:
    if active_report(session, org_id, slug) is not None:
        raise SlugTaken(slug)


def create_report(
    session: Session,
    org: Org,
    *,
    slug: str,
    report_name: str,
    base_object: str,
    mapping: Mapping[str, str],
    required: Sequence[str] = (),
) -> ImportReport:
    effective, problems = check_mapping(base_object, mapping, required)
    problems = check_slug(slug) + problems
    if problems:
        raise ReportProblem(problems)
    _ensure_slug_free(session, org.id, slug)
    now = utcnow()
    report = ImportReport(
        id=ids.new_id(ids.IMPORT_REPORT),
        org_id=org.id,
        slug=slug,
        report_name=report_name,
        base_object=base_object,
        mapping=dict(mapping),
        required=effective,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(report)
    session.flush()
    return report


def update_report(
    session: Session, report: ImportReport, changes: Mapping[str, Any]
) -> ImportReport:
    """Apply a partial change; ``version`` goes up when the mapping or required list changes."""
    mapping = dict(changes.get("mapping", report.mapping))
    required = list(changes.get("required", report.required))
    effective, problems = check_mapping(report.base_object, mapping, required)
    slug = changes.get("slug", report.slug)
    problems = check_slug(slug) + problems
    if problems:
        raise ReportProblem(problems)
    if slug != report.slug:
        _ensure_slug_free(session, report.org_id, slug)
        report.slug = slug
    if "report_name" in changes:
        report.report_name = changes["report_name"]
    if mapping != report.mapping or effective != list(report.required):
        report.mapping = mapping
        report.required = effective
        report.version += 1
    report.updated_at = utcnow()
    session.flush()
    return report


def archive_report(session: Session, report: ImportReport) -> None:
    report.archived_at = utcnow()
    session.flush()
