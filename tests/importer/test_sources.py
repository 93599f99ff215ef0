"""A record's digest covers everything its validation depends on: change any of it and
the stored digest no longer matches, so the record is validated again."""

from __future__ import annotations

from importer.sources import SourceDigests
from tests.factories import VENDOR_MAPPING, vendor

CHOICES = {"vendor_statuses": ["active", "inactive"]}


def digest(record, mapping=VENDOR_MAPPING, required=(), choices=CHOICES):
    return SourceDigests("vendor", mapping, list(required), choices).of(record)


def test_the_same_record_under_the_same_rules_has_the_same_digest():
    assert digest(vendor(1)) == digest(vendor(1)) != digest(vendor(2))


def test_another_mapping_required_field_or_choice_list_changes_the_digest():
    plain = digest(vendor(1))
    remapped = {k: v for k, v in VENDOR_MAPPING.items() if k != "website"}
    assert digest(vendor(1), mapping=remapped) != plain
    assert digest(vendor(1), required=["website"]) != plain
    assert digest(vendor(1), choices={"vendor_statuses": ["active"]}) != plain


def test_records_that_warn_or_are_not_objects_have_none():
    assert digest(vendor(1, Notes="unmapped")) is None
    assert digest(["V-1"]) is None
