"""The validator compiled from the catalog agrees with the marshmallow schema.

Over generated base objects, mappings, required lists, org choices and records (values
of every shape the JSON and CSV readers produce, and the edge cases of each value rule),
the compiled function and the schema agree on which records are valid and on their
values, type included; and :func:`validate_records` answers exactly the same outcome
(values, errors, messages, warnings) whichever path it takes.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from importer import catalog
from importer.validation import _freeze, compiled_schema, compiled_validator, validate_records

#: Strings each value rule treats specially: blanks, numbers in every form, booleans,
#: dates and Unix seconds, URLs, emails, lists, choice labels, NUL, other digits.
SPECIAL_TEXTS = [
    "",
    " ",
    "\t\n",
    "\x1f",
    "a\x00b",
    "85",
    " 85.5 ",
    "1_000",
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "-1",
    "0",
    "1",
    "100",
    "100.5",
    "0.5",
    "yes",
    "No",
    " TRUE ",
    "maybe",
    "2026-01-31",
    " 2026-01-31 ",
    "2026-02-30",
    "20260131",
    "2026-01-31T23:30:00-05:00",
    "2026-01-31T10:00:00z",
    "2026-01-31T10:00:00Z",
    "0999-12-31",
    "1769817600",
    "-1769817600",
    "-",
    "--1",
    "\u0661\u0662\u0663",  # Arabic-Indic digits: decimal digits to \\d and to int()
    "99999999999999999999",
    "acme.com",
    "  acme.com/x?y=z ",
    "http://acme.com/a?b=c",
    "HTTPS://ACME.COM",
    "ftp://acme.com",
    "https://",
    "https://localhost",
    "localhost",
    "https://[::1]:8080/",
    "not a url",
    "sec@acme.example.com",
    "a@localhost",
    "a@[127.0.0.1]",
    "@acme.com",
    "a@@b.co",
    '"quoted"@acme.com',
    "a, b ,,c",
    ", ,",
    "x" * 255,
    "x" * 256,
    "active",
    " Active ",
    "on-hold",
    "On Hold",
    "in_progress",
    "In Progress",
    "tier_1",
    "SaaS",
    "a," * 101,
]

texts = st.text(max_size=12) | st.sampled_from(SPECIAL_TEXTS)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from([0, 1, 2, -1, 100, 101, 1769817600, 10**15])
    | st.floats()
    | st.sampled_from([0.0, 1.0, 12.0, 85.5, 100.0, 100.5, -0.0, 1.5])
    | texts
)
values = scalars | st.lists(scalars, max_size=4) | st.dictionaries(texts, scalars, max_size=2)
labels = st.sampled_from(["intake", "active", "on hold", "On-Hold", "approved", " x ", "a-b c"])


def _spaced(strategy):
    """The values of ``strategy``, some of them with spaces around (trimmed by the rules)."""
    return strategy | strategy.map(lambda text: f" {text}\t")


dates = st.dates(min_value=dt.date(900, 1, 1))
#: Values likely to be valid for each kind of field, so valid records are common and
#: the values the two paths load are compared often.
PLAUSIBLE = {
    catalog.Kind.STRING: _spaced(st.text(max_size=20)) | st.integers() | st.floats(),
    catalog.Kind.URL: _spaced(
        st.sampled_from(["acme.com", "http://acme.com/a?b=c", "https://x.example.org:8443/p"])
        | st.from_regex(r"(https?://)?[a-z0-9-]{1,8}(\.[a-z]{2,4}){1,2}(/[a-z]*)?", fullmatch=True)
    ),
    catalog.Kind.EMAIL: _spaced(
        st.from_regex(r"[a-z0-9.+_-]{1,8}@[a-z0-9-]{1,8}\.[a-z]{2,4}", fullmatch=True)
        | st.sampled_from(["a@localhost", "a@[127.0.0.1]", "x@y"])
    ),
    catalog.Kind.NUMBER: st.floats(min_value=-2, max_value=102)
    | st.integers(min_value=-2, max_value=102)
    | _spaced(st.floats(min_value=-2, max_value=102).map(str))
    | st.integers(min_value=-2, max_value=102).map(str),
    catalog.Kind.BOOLEAN: st.booleans()
    | st.sampled_from([0, 1, 2])
    | _spaced(st.sampled_from(["true", "False", "YES", "no", "1", "0", "y"])),
    catalog.Kind.DATE: _spaced(dates.map(dt.date.isoformat))
    | dates.map(lambda day: f"{day.isoformat()}T23:30:00-05:00")
    | dates.map(lambda day: f"{day.isoformat()}T10:00:00z")
    | st.integers(min_value=-(10**11), max_value=10**11)
    | _spaced(st.integers(min_value=-(10**11), max_value=10**11).map(str)),
    catalog.Kind.STRING_LIST: st.lists(_spaced(st.text(max_size=6)), max_size=4)
    | st.lists(st.sampled_from(["a", " b ", "", "a\x00b", "x" * 256]), max_size=3)
    | st.integers(98, 102).map(lambda n: "a," * n)
    | _spaced(st.lists(st.text(alphabet="ab ,", max_size=4), max_size=4).map(",".join)),
    catalog.Kind.CHOICE: _spaced(
        labels
        | st.sampled_from(["saas", "On Premises", "tier-1", "In Progress", "complete"])
        | labels.map(str.upper)
    ),
}


@st.composite
def reports(draw):
    base = draw(st.sampled_from(list(catalog.CATALOG.values())))
    names = draw(st.lists(st.sampled_from(base.field_names), unique=True, min_size=1))
    mapping = {name: draw(st.sampled_from([name, name.upper(), f"In {name}"])) for name in names}
    required = draw(st.lists(st.sampled_from(names), unique=True))
    org_choices = {"vendor_statuses": draw(st.lists(labels, min_size=1, max_size=4))}
    return base, mapping, required, org_choices


@st.composite
def plausible_records(draw, base, mapping):
    record = {}
    for name, incoming in mapping.items():
        kind = base.field(name).kind
        choice = draw(st.integers(0, 9))
        if choice < 7:
            record[incoming] = draw(PLAUSIBLE[kind])
        elif choice < 9:
            record[incoming] = draw(values)
    if draw(st.booleans()):
        record["extra"] = draw(values)
    return record


@st.composite
def batches(draw):
    base, mapping, required, org_choices = draw(reports())
    keys = sorted(set(mapping.values())) + ["extra"]
    anything = st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))
    records = draw(st.lists(plausible_records(base, mapping) | anything, max_size=6))
    return base, mapping, required, org_choices, records


def typed(loaded):
    """Values with their types: 1 == 1.0 == True, but a schema that answers one for the
    other does not agree."""

    def one(value):
        if isinstance(value, list):
            return ("list", [one(item) for item in value])
        return (type(value).__name__, value)

    return {name: one(value) for name, value in loaded.items()}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_the_compiled_validator_agrees_with_the_schema(batch):
    base, mapping, required, org_choices, records = batch
    frozen = _freeze(mapping, required, org_choices)
    schema = compiled_schema(base.name, *frozen)
    fast = compiled_validator(base.name, *frozen)
    for record in records:
        try:
            expected = schema.load([record])[0]
        except ValidationError:
            expected = None
        found = fast(record)
        assert (found is None) == (expected is None), (record, found)
        event("valid" if found is not None else "invalid")
        if found is not None:
            assert typed(found) == typed(expected)

    options = dict(base_object=base.name, mapping=mapping, required=required)
    compiled = validate_records(records, org_choices=org_choices, **options)
    through_schema = validate_records(records, org_choices=org_choices, compiled=False, **options)
    assert compiled.errors == through_schema.errors
    assert compiled.warnings == through_schema.warnings
    assert compiled.failed_count == through_schema.failed_count
    assert [(i, typed(v)) for i, v in compiled.valid] == [
        (i, typed(v)) for i, v in through_schema.valid
    ]


FIELDS = [(base, spec) for base in catalog.CATALOG.values() for spec in base.fields]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(FIELDS), st.booleans(), st.data())
def test_each_field_agrees_with_its_schema_field(field, required, data):
    """One field at a time, so every value rule meets many values of its own kind."""
    base, spec = field
    mapping = {spec.name: "v"}
    frozen = _freeze(mapping, [spec.name] if required else [], {"vendor_statuses": ["on hold"]})
    schema = compiled_schema(base.name, *frozen)
    fast = compiled_validator(base.name, *frozen)
    value = data.draw(
        PLAUSIBLE[spec.kind] | values | st.lists(st.just("a"), min_size=100, max_size=102)
    )
    try:
        expected = schema.load([{"v": value}])[0]
    except ValidationError:
        expected = None
    found = fast({"v": value})
    assert (found is None) == (expected is None), (spec.name, value, found)
    if found is not None:
        assert typed(found) == typed(expected)


def test_dates_out_of_order_are_left_to_the_schema_and_its_message():
    mapping = {
        "external_id": "id",
        "vendor_external_id": "v",
        "period_start": "s",
        "period_end": "e",
    }
    outcome = validate_records(
        [{"id": "a1", "v": "v1", "s": "2026-02-01", "e": "2026-01-01"}],
        base_object="assessment",
        mapping=mapping,
    )
    assert outcome.valid == []
    assert [e["message"] for e in outcome.errors] == [
        "Field 'e' (period_end) must not be before period_start (2026-02-01), got 2026-01-01."
    ]
    fine = validate_records(
        [{"id": "a1", "v": "v1", "s": "2026-01-01", "e": "2026-01-01"}],
        base_object="assessment",
        mapping=mapping,
    )
    assert fine.valid == [
        (
            0,
            {
                "external_id": "a1",
                "vendor_external_id": "v1",
                "period_start": dt.date(2026, 1, 1),
                "period_end": dt.date(2026, 1, 1),
            },
        )
    ]
