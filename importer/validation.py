"""Where a record is validated.

A report's mapping and required list are compiled once into a marshmallow schema
(cached by their content, so every report version has exactly one compiled schema
per process), the source of truth for the value rules, and from that schema into a
straight-line function applying the same rules (``importer.compiled``), cached the
same way. :func:`validate_records` runs every record through the function; the
records it does not find valid go through the schema in one ``load(many=True)``
call, and what marshmallow reports becomes the API's per-record problems. So a valid
record costs a few string operations per field, and an invalid one gets
marshmallow's own errors and messages.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, validates_schema

from importer import catalog
from importer.catalog import BaseObject, FieldSpec, Kind
from importer.compiled import CompiledValidator, compile_validator
from importer.fields import (
    REQUIRED_MESSAGE,
    Boolean,
    CatalogField,
    Choice,
    Date,
    Email,
    Number,
    Text,
    TextList,
    Url,
)
from importer.problems import ErrorCode, Problem, problem


@dataclass
class ValidationOutcome:
    """What validation found in a batch, in record order."""

    #: ``(index, values)`` for every record that passed, values keyed by service field name.
    valid: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    failed_count: int = 0


class RecordSchema(Schema):
    """Base of the compiled per-report schemas."""

    class Meta:
        unknown = EXCLUDE

    base: BaseObject

    @validates_schema(skip_on_field_errors=False)
    def _dates_in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        for later, earlier in self.base.not_before:
            if later in data and earlier in data and data[later] < data[earlier]:
                raise ValidationError(
                    f"must not be before {earlier} ({data[earlier].isoformat()}), "
                    f"got {data[later].isoformat()}",
                    field_name=self.fields[later].data_key or later,
                )


def _make_field(spec: FieldSpec, incoming: str, required: bool, org_choices: Any) -> CatalogField:
    options: dict[str, Any] = {"data_key": incoming, "required": required}
    match spec.kind:
        case Kind.STRING:
            return Text(max_length=spec.max_length, **options)
        case Kind.URL:
            return Url(max_length=spec.max_length, **options)
        case Kind.EMAIL:
            return Email(max_length=spec.max_length, **options)
        case Kind.NUMBER:
            return Number(minimum=spec.minimum, maximum=spec.maximum, **options)
        case Kind.BOOLEAN:
            return Boolean(**options)
        case Kind.DATE:
            return Date(**options)
        case Kind.STRING_LIST:
            return TextList(max_length=spec.max_length, **options)
        case Kind.CHOICE:
            choices = dict(org_choices).get(spec.org_choices, ()) if spec.org_choices else ()
            return Choice(choices=tuple(choices) or spec.choices, **options)
    raise AssertionError(f"no field for kind {spec.kind}")


@functools.lru_cache(maxsize=512)
def compiled_schema(
    base_name: str,
    mapping: tuple[tuple[str, str], ...],
    required: tuple[str, ...],
    org_choices: tuple[tuple[str, tuple[str, ...]], ...],
) -> RecordSchema:
    """The schema of one report version: built once per process, then reused.

    Building a schema per request (or worse, per record) costs more than the
    validation itself, so every argument is hashable and the result is cached.
    """
    base = catalog.CATALOG[base_name]
    incoming_by_field = dict(mapping)
    attrs: dict[str, Any] = {}
    for spec in base.fields:
        incoming = incoming_by_field.get(spec.name)
        if incoming is not None:
            attrs[spec.name] = _make_field(
                spec, incoming, spec.name in required or spec.required, org_choices
            )
    attrs["base"] = base
    schema_class = type(f"{base.name.title()}RecordSchema", (RecordSchema,), attrs)
    schema: RecordSchema = schema_class(many=True)
    return schema


@functools.lru_cache(maxsize=512)
def compiled_validator(
    base_name: str,
    mapping: tuple[tuple[str, str], ...],
    required: tuple[str, ...],
    org_choices: tuple[tuple[str, tuple[str, ...]], ...],
) -> CompiledValidator:
    """The straight-line validator of one report version, compiled from its schema
    once per process (see ``importer.compiled``)."""
    schema = compiled_schema(base_name, mapping, required, org_choices)
    return compile_validator(catalog.CATALOG[base_name], schema)


def _freeze(
    mapping: Mapping[str, str], required: Sequence[str], org_choices: Mapping[str, Sequence[str]]
) -> tuple[Any, ...]:
    return (
        tuple(sorted(mapping.items())),
        tuple(sorted(set(required))),
        tuple(sorted((key, tuple(values)) for key, values in org_choices.items())),
    )


def validator_for(
    base_name: str,
    mapping: Mapping[str, str],
    required: Sequence[str],
    org_choices: Mapping[str, Sequence[str]],
) -> CompiledValidator:
    """The compiled validator of a report version (the one validate_records uses)."""
    return compiled_validator(base_name, *_freeze(mapping, required, org_choices))


def raw_external_id(record: Any, incoming: str | None) -> str | None:
    """The external_id as sent, read as the field stores it (``importer.fields.Text``:
    trimmed, a number as its text), for error reports, duplicate detection, and the push
    client's ``results.csv``. None: absent, blank, or of a type no external_id is."""
    if incoming is None or not isinstance(record, dict):
        return None
    value = record.get(incoming)
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _duplicates(raw_ids: Sequence[str | None]) -> set[str]:
    return {key for key, count in Counter(raw_ids).items() if key is not None and count > 1}


def duplicate_message(external_id: str | None) -> str:
    """What every occurrence of a repeated external_id fails with (the push client says
    the same of a file)."""
    return (
        f"external_id {external_id!r} occurs more than once in this batch; "
        "every occurrence is rejected. Send each external_id once."
    )


def _duplicate_problem(index: int, external_id: str | None, incoming: str | None) -> Problem:
    return problem(
        index,
        external_id,
        incoming,
        ErrorCode.DUPLICATE_EXTERNAL_ID,
        duplicate_message(external_id),
    )


def _unknown_base_object(
    external_ids: Sequence[str | None], indexes: Sequence[int], base_object: str
) -> ValidationOutcome:
    outcome = ValidationOutcome(failed_count=len(external_ids))
    for index, external_id in zip(indexes, external_ids, strict=True):
        outcome.errors.append(
            problem(
                index,
                external_id,
                None,
                ErrorCode.UNKNOWN_BASE_OBJECT,
                f"The report's base object {base_object!r} is no longer supported; "
                f"supported: {', '.join(catalog.CATALOG)}.",
            )
        )
    return outcome


def screen_records(
    records: Sequence[Any],
    *,
    base_object: str,
    mapping: Mapping[str, str],
    external_ids: Sequence[str | None] | None = None,
) -> ValidationOutcome:
    """Only the checks that need the whole batch (the base object, duplicate
    external_ids), for a batch whose records the workers validate chunk by chunk.

    ``valid`` holds every record as sent, duplicates included: the workers still
    validate those, so a record gets all of its problems, but never write them.
    Records may be dicts, or their JSON bytes with ``external_ids`` given apart.
    """
    ext_incoming = mapping.get("external_id")
    indexes = range(len(records))
    raw_ids = (
        list(external_ids)
        if external_ids is not None
        else [raw_external_id(record, ext_incoming) for record in records]
    )
    if catalog.get(base_object) is None:
        return _unknown_base_object(raw_ids, indexes, base_object)
    duplicates = _duplicates(raw_ids)
    outcome = ValidationOutcome(valid=list(zip(indexes, records, strict=True)))
    if duplicates:
        for index, external_id in enumerate(raw_ids):
            if external_id in duplicates:
                outcome.errors.append(_duplicate_problem(index, external_id, ext_incoming))
                outcome.failed_count += 1
    return outcome


def validate_records(
    records: Sequence[dict[str, Any]],
    *,
    base_object: str,
    mapping: Mapping[str, str],
    required: Sequence[str] = (),
    org_choices: Mapping[str, Sequence[str]] | None = None,
    indexes: Sequence[int] | None = None,
    check_duplicates: bool = True,
    compiled: bool = True,
) -> ValidationOutcome:
    """Validate records keyed by the report's *incoming* names.

    ``indexes`` are the records' positions in their batch (default: 0, 1, 2...).
    Every problem of a record is reported, so a sender can fix everything in one
    pass. ``check_duplicates=False`` when the batch-wide duplicate check was made
    already (see :func:`screen_records`). ``compiled=False`` sends every record
    through the marshmallow schema (the benchmark's baseline; same outcome, slower).
    """
    if indexes is None:
        indexes = range(len(records))
    ext_incoming = mapping.get("external_id")
    base = catalog.get(base_object)
    if base is None:
        ids = [raw_external_id(record, ext_incoming) for record in records]
        return _unknown_base_object(ids, indexes, base_object)

    outcome = ValidationOutcome()
    frozen = _freeze(mapping, required, org_choices or {})
    if compiled:
        fast = compiled_validator(base.name, *frozen)
        loaded: list[dict[str, Any] | None] = [fast(record) for record in records]
        to_check = [offset for offset, values in enumerate(loaded) if values is None]
    else:
        loaded = [None] * len(records)
        to_check = list(range(len(records)))
    messages: dict[int, dict[str, list[str]]] = {}
    if to_check:
        # The records the fast path did not find valid: marshmallow decides, and says why.
        schema = compiled_schema(base.name, *frozen)
        try:
            checked: list[dict[str, Any]] = schema.load([records[offset] for offset in to_check])
            found: dict[int, dict[str, list[str]]] = {}
        except ValidationError as err:
            checked = err.valid_data  # type: ignore[assignment]
            found = err.messages  # type: ignore[assignment]
        for position, offset in enumerate(to_check):
            loaded[offset] = checked[position]
            if position in found:
                messages[offset] = found[position]

    field_of_incoming = {incoming: name for name, incoming in mapping.items()}
    mapped = set(field_of_incoming)
    raw_ids = [raw_external_id(record, ext_incoming) for record in records]
    duplicates = _duplicates(raw_ids) if check_duplicates else set()
    ordered_incoming = [mapping[spec.name] for spec in base.fields if spec.name in mapping]

    for offset, record in enumerate(records):
        index = indexes[offset]
        external_id = raw_ids[offset]
        record_messages = messages.get(offset)
        failed = False
        if record_messages:
            failed = True
            for incoming in ordered_incoming:
                for message in record_messages.get(incoming, ()):
                    name = field_of_incoming[incoming]
                    if message == REQUIRED_MESSAGE:
                        outcome.errors.append(
                            problem(
                                index,
                                external_id,
                                incoming,
                                ErrorCode.MISSING_REQUIRED_FIELD,
                                f"Required field {incoming!r} ({name}) is absent or empty.",
                            )
                        )
                    else:
                        outcome.errors.append(
                            problem(
                                index,
                                external_id,
                                incoming,
                                ErrorCode.INVALID_FIELD_VALUE,
                                f"Field {incoming!r} ({name}) {message}.",
                            )
                        )
        if external_id in duplicates:
            failed = True
            outcome.errors.append(_duplicate_problem(index, external_id, ext_incoming))
        if not mapped.issuperset(record):
            for key in record:
                if key not in mapped:
                    outcome.warnings.append(
                        problem(
                            index,
                            external_id,
                            key,
                            ErrorCode.UNMAPPED_FIELD,
                            f"Field {key!r} is not in the report's mapping; its value was ignored.",
                        )
                    )
        if failed:
            outcome.failed_count += 1
        else:
            outcome.valid.append((index, loaded[offset]))  # type: ignore[arg-type]
    return outcome
