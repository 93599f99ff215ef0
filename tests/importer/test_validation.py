"""The value rules of the catalog, through validate_records (where a record is validated)."""

from __future__ import annotations

import datetime as dt

import pytest

from importer.validation import (
    compiled_schema,
    compiled_validator,
    screen_records,
    validate_records,
)

MAPPING = {
    "external_id": "id",
    "name": "name",
    "website": "web",
    "status": "status",
    "tags": "tags",
    "enterprise": "ent",
    "raw_irq_score": "irq",
    "next_assessment_date": "next",
    "primary_contact_email": "email",
}
CHOICES = {"vendor_statuses": ["intake", "active", "on hold"]}


def check(field, value):
    """(loaded value or None, error codes) for one vendor record carrying ``field``."""
    outcome = validate_records(
        [{"id": "v1", "name": "n", field: value}],
        base_object="vendor",
        mapping=MAPPING,
        org_choices=CHOICES,
    )
    if outcome.valid:
        service_name = {v: k for k, v in MAPPING.items()}[field]
        return outcome.valid[0][1].get(service_name, "<absent>"), []
    return None, [(e["error_code"], e["field"]) for e in outcome.errors]


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("name", "  Acme  ", "Acme"),
        ("id", 12345, "12345"),
        ("id", 12.0, "12"),
        ("web", "acme.com", "https://acme.com"),
        ("web", "http://acme.com/a?b=c", "http://acme.com/a?b=c"),
        ("web", "", "<absent>"),
        ("web", None, "<absent>"),
        ("web", "   ", "<absent>"),
        ("status", "Active", "active"),
        ("status", "On-Hold", "on hold"),
        ("tags", "a, b ,,c", ["a", "b", "c"]),
        ("tags", ["x", " y "], ["x", "y"]),
        ("tags", ", ,", "<absent>"),
        ("tags", [], "<absent>"),
        ("ent", True, True),
        ("ent", "Yes", True),
        ("ent", "no", False),
        ("ent", "1", True),
        ("ent", 0, False),
        ("irq", "85", 85.0),
        ("irq", " 85.5 ", 85.5),
        ("irq", 0, 0.0),
        ("irq", 100, 100.0),
        ("next", "2026-01-31", dt.date(2026, 1, 31)),
        ("next", "2026-01-31T23:30:00-05:00", dt.date(2026, 1, 31)),
        ("next", "2026-01-31T10:00:00Z", dt.date(2026, 1, 31)),
        ("next", 1769817600, dt.date(2026, 1, 31)),
        ("next", "1769817600", dt.date(2026, 1, 31)),
        ("email", "sec@acme.example.com", "sec@acme.example.com"),
    ],
)
def test_accepted_values(field, value, expected):
    assert check(field, value) == (expected, [])


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ["a"]),
        ("name", {"a": 1}),
        ("name", True),
        ("name", "x" * 256),
        ("name", "a\x00b"),
        ("web", "not a url"),
        ("web", "ftp://acme.com"),
        ("web", ("a" * 59 + ".") * 34 + "b.com"),  # 2,045 characters; with https://, 2,053
        ("irq", 1e400),
        ("irq", "-1e400"),
        ("status", "retired"),
        ("status", 3),
        ("tags", {"a": 1}),
        ("tags", [["nested"]]),
        ("tags", ["x"] * 101),
        ("ent", "maybe"),
        ("ent", 2),
        ("irq", "eighty"),
        ("irq", 100.5),
        ("irq", -1),
        ("irq", True),
        ("irq", "nan"),
        ("irq", "inf"),
        ("next", "31/01/2026"),
        ("next", "2026-02-30"),
        ("next", 1.5),
        ("next", True),
        ("next", 10**15),
        ("email", "not-an-email"),
    ],
)
def test_rejected_values_are_invalid_field_value(field, value):
    loaded, errors = check(field, value)
    assert errors == [("invalid_field_value", field)]


def test_messages_name_the_field_and_the_expected_form():
    outcome = validate_records(
        [{"id": "v1", "name": "n", "irq": "high", "next": "soon"}],
        base_object="vendor",
        mapping=MAPPING,
    )
    messages = [e["message"] for e in outcome.errors]
    assert messages[0] == "Field 'irq' (raw_irq_score) must be a number from 0 to 100, got 'high'."
    assert "'next' (next_assessment_date) must be a date: ISO-8601" in messages[1]
    assert "Unix seconds" in messages[1]


def test_required_blank_is_missing_not_invalid():
    outcome = validate_records(
        [{"id": " ", "name": None}, {}], base_object="vendor", mapping=MAPPING
    )
    assert [(e["index"], e["field"], e["error_code"]) for e in outcome.errors] == [
        (0, "id", "missing_required_field"),
        (0, "name", "missing_required_field"),
        (1, "id", "missing_required_field"),
        (1, "name", "missing_required_field"),
    ]
    assert outcome.failed_count == 2


def test_report_level_required_fields_are_enforced():
    outcome = validate_records(
        [{"id": "v1", "name": "n"}], base_object="vendor", mapping=MAPPING, required=["website"]
    )
    assert [(e["field"], e["error_code"]) for e in outcome.errors] == [
        ("web", "missing_required_field")
    ]


def test_vendor_statuses_come_from_the_org():
    outcome = validate_records(
        [{"id": "v1", "name": "n", "status": "active"}],
        base_object="vendor",
        mapping=MAPPING,
        org_choices={"vendor_statuses": ["approved"]},
    )
    assert outcome.errors[0]["message"].endswith("must be one of approved, got 'active'.")


def test_problems_carry_the_records_positions_in_their_batch():
    outcome = validate_records(
        [{"id": "a", "name": "n", "extra": 1}, {"id": "b"}],
        base_object="vendor",
        mapping=MAPPING,
        indexes=[100, 205],
    )
    assert [e["index"] for e in outcome.errors] == [205]
    assert [w["index"] for w in outcome.warnings] == [100]
    assert [index for index, _ in outcome.valid] == [100]


def test_screening_finds_only_batch_wide_problems():
    records = [{"id": "a"}, {"id": "b", "name": "n"}, {"id": " a ", "irq": "x"}]
    outcome = screen_records(records, base_object="vendor", mapping=MAPPING)
    assert [(e["index"], e["error_code"]) for e in outcome.errors] == [
        (0, "duplicate_external_id"),
        (2, "duplicate_external_id"),
    ]
    assert outcome.failed_count == 2
    # Every record goes on to the workers as sent, duplicates included.
    assert outcome.valid == list(enumerate(records))
    unknown = screen_records(records, base_object="contract", mapping=MAPPING)
    assert unknown.failed_count == 3 and unknown.valid == []


def test_an_external_id_sent_as_a_number_is_the_same_key_as_its_text():
    # 1.5 is stored as "1.5" and 7.0 as "7": sent once as a number and once as text,
    # they would be one object written twice by one batch.
    records = [{"id": 1.5}, {"id": "1.5"}, {"id": 7.0}, {"id": " 7 "}, {"id": 8}]
    outcome = screen_records(records, base_object="vendor", mapping=MAPPING)
    assert [e["index"] for e in outcome.errors] == [0, 1, 2, 3]
    assert {e["external_id"] for e in outcome.errors} == {"1.5", "7"}
    stored = validate_records(
        [{"id": 1.5, "name": "n"}], base_object="vendor", mapping=MAPPING
    ).valid
    assert [record["external_id"] for _, record in stored] == ["1.5"]


def test_one_compiled_schema_and_validator_per_report_version():
    compiled_validator.cache_clear()
    compiled_schema.cache_clear()
    for _ in range(3):
        validate_records([{"id": "a", "name": "n"}], base_object="vendor", mapping=MAPPING)
    validate_records(
        [{"id": "a", "name": "n"}], base_object="vendor", mapping={**MAPPING, "category": "c"}
    )
    assert compiled_validator.cache_info().misses == 2
    assert compiled_validator.cache_info().hits == 2
    # Each validator is compiled from its version's schema, built once.
    assert compiled_schema.cache_info().misses == 2
    # A record the validator does not find valid goes through that same schema.
    validate_records([{"id": "a"}], base_object="vendor", mapping=MAPPING)
    assert compiled_schema.cache_info().misses == 2
