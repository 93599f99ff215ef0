"""The field catalog: every base object and its fields, declared once.

Validation (``importer.validation``), storage (``importer.models``), the write
(``importer.upsert``) and the read API (``app.api.objects``) are all derived from
these declarations, so adding a field to a base object is one line here plus an
Alembic migration (``alembic revision --autogenerate``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from importer import ids


class Kind(enum.StrEnum):
    """The value rules a field follows (see ``importer.fields``)."""

    STRING = "string"
    URL = "url"
    EMAIL = "email"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    STRING_LIST = "string_list"
    CHOICE = "choice"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind = Kind.STRING
    required: bool = False
    max_length: int = 255
    minimum: float | None = None
    maximum: float | None = None
    #: Allowed values of a CHOICE field, when they are the same for every org.
    choices: tuple[str, ...] = ()
    #: Name of the org setting that lists the allowed values of a CHOICE field.
    org_choices: str | None = None
    #: For ``<object>_external_id`` fields: the base object the value must name.
    #: The reference is resolved at write time and stored as ``<object>_id`` too.
    references: str | None = None

    @property
    def reference_column(self) -> str | None:
        return f"{self.references}_id" if self.references else None


@dataclass(frozen=True)
class BaseObject:
    name: str
    plural: str
    id_prefix: str
    fields: tuple[FieldSpec, ...]
    #: Pairs ``(later, earlier)`` of date fields where ``later`` may not precede ``earlier``.
    not_before: tuple[tuple[str, str], ...] = ()
    _by_name: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {spec.name: spec for spec in self.fields})

    def field(self, name: str) -> FieldSpec | None:
        return self._by_name.get(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields if spec.required)

    @property
    def references(self) -> tuple[FieldSpec, ...]:
        return tuple(spec for spec in self.fields if spec.references)


DEFAULT_VENDOR_STATUSES = (
    "intake",
    "onboarding",
    "active",
    "offboarding",
    "offboarded",
    "suspended",
)

VENDOR = BaseObject(
    name="vendor",
    plural="vendors",
    id_prefix=ids.VENDOR,
    fields=(
        FieldSpec("external_id", required=True),
        FieldSpec("name", required=True),
        FieldSpec("website", Kind.URL, max_length=2048),
        FieldSpec("description", max_length=10_000),
        FieldSpec("hq_location"),
        FieldSpec("status", Kind.CHOICE, org_choices="vendor_statuses"),
        FieldSpec("tags", Kind.STRING_LIST),
        FieldSpec("engagement_type"),
        FieldSpec("use_case"),
        FieldSpec("business_unit"),
        FieldSpec("enterprise", Kind.BOOLEAN),
        FieldSpec("category"),
        FieldSpec("raw_irq_score", Kind.NUMBER, minimum=0, maximum=100),
        FieldSpec("raw_residual_risk_score", Kind.NUMBER, minimum=0, maximum=100),
        FieldSpec("next_assessment_date", Kind.DATE),
        FieldSpec("contract_end_date", Kind.DATE),
        FieldSpec("primary_contact_email", Kind.EMAIL),
    ),
)

SERVICE = BaseObject(
    name="service",
    plural="services",
    id_prefix=ids.SERVICE,
    fields=(
        FieldSpec("external_id", required=True),
        FieldSpec("name", required=True),
        FieldSpec("vendor_external_id", required=True, references="vendor"),
        FieldSpec("description", max_length=10_000),
        FieldSpec("data_types", Kind.STRING_LIST),
        FieldSpec(
            "hosting_model", Kind.CHOICE, choices=("saas", "on_premises", "hybrid", "managed")
        ),
        FieldSpec(
            "criticality_tier", Kind.CHOICE, choices=("tier_1", "tier_2", "tier_3", "tier_4")
        ),
        FieldSpec("tags", Kind.STRING_LIST),
    ),
)

ASSESSMENT = BaseObject(
    name="assessment",
    plural="assessments",
    id_prefix=ids.ASSESSMENT,
    fields=(
        FieldSpec("external_id", required=True),
        FieldSpec("vendor_external_id", required=True, references="vendor"),
        FieldSpec("name"),
        FieldSpec("assessment_type"),
        FieldSpec(
            "status", Kind.CHOICE, choices=("created", "in_progress", "complete", "canceled")
        ),
        FieldSpec("scope", max_length=10_000),
        FieldSpec("assessor"),
        FieldSpec("period_start", Kind.DATE),
        FieldSpec("period_end", Kind.DATE),
        FieldSpec("score_percent", Kind.NUMBER, minimum=0, maximum=1),
        FieldSpec("outcome"),
    ),
    not_before=(("period_end", "period_start"),),
)

CATALOG: dict[str, BaseObject] = {base.name: base for base in (VENDOR, SERVICE, ASSESSMENT)}


def get(name: str) -> BaseObject | None:
    """The base object called ``name``, or None when the catalog no longer has it."""
    return CATALOG.get(name)
