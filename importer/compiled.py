"""Validation compiled from the catalog: the fast path in front of marshmallow.

For each report version, :func:`compile_validator` writes one Python function that
applies the rules of that version's marshmallow schema (``importer.validation``) to
a record in straight-line code: one block per mapped field, no schema machinery, no
exception for a valid value. It answers either the record's values, exactly as the
schema would load them, or ``None``: "not valid here". A record it answers ``None``
for goes through the marshmallow schema, which produces the errors and messages; so
the API's errors are marshmallow's by construction, and this function only has to
agree with the schema on which records are valid and on their values
(``tests/importer/test_compiled_validation.py`` checks both over generated records and
mappings).

marshmallow stays the source of truth: every constant here (lengths, bounds, choices,
validators) is read from the schema's field objects, and only the common shapes of a
value (a string for every kind, a float for a number, a bool for a boolean, a list of
strings for a list) are inlined. Any other shape is handed to the field's own
``deserialize``, so a rare input behaves exactly as it does in the schema.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, ValidationError, missing, validate

from importer.catalog import BaseObject
from importer.fields import (
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

#: A record's values by service field name, or None when the schema must look at it.
CompiledValidator = Callable[[Any], dict[str, Any] | None]

_CHOICE_SEPARATORS = re.compile(r"[\s\-]+")  # the pattern of importer.fields._choice_key
_URL_REGEX = validate.URL._regex(
    relative=Url._validator.relative,
    absolute=Url._validator.absolute,
    require_tld=Url._validator.require_tld,
)


class _Source:
    """The generated function's text, and the objects it refers to by name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "ValidationError": ValidationError,
            "MISSING": missing,
            "isfinite": math.isfinite,
            "date_from_iso": dt.date.fromisoformat,
            "datetime_from_iso": dt.datetime.fromisoformat,
            "from_timestamp": dt.datetime.fromtimestamp,
            "UTC": dt.UTC,
            "CHOICE_SEPARATORS": _CHOICE_SEPARATORS,
            "URL_SEARCH": _URL_REGEX.search,
            "EMAIL_USER": Email._validator.USER_REGEX.match,
            "EMAIL_DOMAIN": Email._validator.DOMAIN_REGEX.match,
            "EMAIL_DOMAIN_WHITELIST": frozenset(Email._validator.DOMAIN_WHITELIST),
        }

    def constant(self, name: str, value: Any) -> str:
        self.namespace[name] = value
        return name

    def add(self, indent: int, *lines: str) -> None:
        self.lines.extend("    " * indent + line for line in lines)


def _text_checks(src: _Source, field: Text) -> list[str]:
    """Lines turning the stripped, non-blank string ``t`` into the stored text, or
    returning None (NUL character, too long): Text._text for a string."""
    return [f"if '\\x00' in t or len(t) > {field.max_length}: return None"]


def _string_block(src: _Source, name: str, field: CatalogField, prefix: str) -> list[str]:
    """Lines run when ``v`` is a str whose stripped form ``t`` is not blank; they set
    ``out[name]`` or return None."""
    key = repr(name)
    if type(field) is Text:
        return [*_text_checks(src, field), f"out[{key}] = t"]
    if type(field) is Url:
        schemes = src.constant(f"{prefix}_SCHEMES", frozenset(Url._validator.schemes))
        return [
            *_text_checks(src, field),
            "if '://' not in t:",
            "    t = 'https://' + t",
            f"    if len(t) > {field.max_length}: return None",
            f"if t.split('://', 1)[0].lower() not in {schemes} or not URL_SEARCH(t): return None",
            f"out[{key}] = t",
        ]
    if type(field) is Email:
        return [
            *_text_checks(src, field),
            "if '@' not in t: return None",
            "user, domain = t.rsplit('@', 1)",
            "if not EMAIL_USER(user): return None",
            "if domain not in EMAIL_DOMAIN_WHITELIST and not EMAIL_DOMAIN(domain): return None",
            f"out[{key}] = t",
        ]
    if type(field) is Number:
        bounds = []
        if field.minimum is not None:
            bounds.append(f" or n < {src.constant(f'{prefix}_MIN', field.minimum)}")
        if field.maximum is not None:
            bounds.append(f" or n > {src.constant(f'{prefix}_MAX', field.maximum)}")
        return [
            "try:",
            "    n = float(t)",
            "except ValueError:",
            "    return None",
            f"if not isfinite(n){''.join(bounds)}: return None",
            f"out[{key}] = n",
        ]
    if type(field) is Boolean:
        true = src.constant(f"{prefix}_TRUE", Boolean._TRUE)
        false = src.constant(f"{prefix}_FALSE", Boolean._FALSE)
        return [
            "t = t.lower()",
            f"if t in {true}: out[{key}] = True",
            f"elif t in {false}: out[{key}] = False",
            "else: return None",
        ]
    if type(field) is Date:
        lowest = src.constant(f"{prefix}_LOWEST", Date._MIN)
        highest = src.constant(f"{prefix}_HIGHEST", Date._MAX)
        # Date._DIGITS (r"^-?\d+$") on a stripped text: \d is str.isdecimal.
        return [
            "if (t[1:] if t[0] == '-' else t).isdecimal():",
            "    try:",
            "        d = from_timestamp(int(v), UTC).date()",
            "    except (OverflowError, OSError, ValueError):",
            "        return None",
            "else:",
            "    try:",
            "        d = date_from_iso(t)",
            "    except ValueError:",
            "        try:",
            "            d = datetime_from_iso(t.replace('z', 'Z')).date()",
            "        except ValueError:",
            "            return None",
            f"if not ({lowest} <= d <= {highest}): return None",
            f"out[{key}] = d",
        ]
    if type(field) is Choice:
        # A label as configured is looked up as is first (the common case), giving
        # what the schema gives for it (when two labels share a key, the last wins).
        direct = src.constant(
            f"{prefix}_DIRECT",
            {label: field.choices[_choice_key(label)] for label in field.choices.values()},
        )
        choices = src.constant(f"{prefix}_CHOICES", dict(field.choices))
        return [
            f"c = {direct}.get(v)",
            "if c is None:",
            f"    c = {choices}.get(CHOICE_SEPARATORS.sub('_', t.lower()))",
            "    if c is None: return None",
            f"out[{key}] = c",
        ]
    if type(field) is TextList:
        return [
            "items = []",
            "for item in v.split(','):",
            "    item = item.strip()",
            f"    if '\\x00' in item or len(item) > {field.max_length}: return None",
            "    if item: items.append(item)",
            f"if len(items) > {field.max_items}: return None",
            f"if items: out[{key}] = items",
        ]
    raise _NotInlined


def _choice_key(text: str) -> str:
    return _CHOICE_SEPARATORS.sub("_", text.strip().lower())


class _NotInlined(Exception):
    """A field class with no inlined form: its values all go to its ``deserialize``."""


def _other_shapes(src: _Source, field: CatalogField, name: str, prefix: str) -> list[str]:
    """Lines for a value ``v`` that is not a str: the few shapes worth inlining, and
    the field's own ``deserialize`` for everything else (exactly the schema's rule)."""
    key = repr(name)
    lines = []
    if type(field) is Number:
        bounds = []
        if field.minimum is not None:
            bounds.append(f" or v < {prefix}_MIN")
        if field.maximum is not None:
            bounds.append(f" or v > {prefix}_MAX")
        lines += [
            "elif type(v) is float:",
            f"    if not isfinite(v){''.join(bounds)}: return None",
            f"    out[{key}] = v",
        ]
    elif type(field) is Boolean:
        lines += ["elif type(v) is bool:", f"    out[{key}] = v"]
    elif type(field) is TextList:
        lines += [
            "elif type(v) is list and v and all(type(item) is str for item in v):",
            "    items = []",
            "    for item in v:",
            "        item = item.strip()",
            f"        if '\\x00' in item or len(item) > {field.max_length}: return None",
            "        if item: items.append(item)",
            f"    if len(items) > {field.max_items}: return None",
            f"    if items: out[{key}] = items",
        ]
    field_ref = src.constant(f"{prefix}_FIELD", field)
    if field.required:
        lines += ["elif v is None:", "    return None"]
    else:
        lines += ["elif v is None:", "    pass"]
    lines += [
        "else:",
        "    try:",
        f"        r = {field_ref}.deserialize(v)",
        "    except ValidationError:",
        "        return None",
        f"    if r is not MISSING: out[{key}] = r",
    ]
    return lines


def compile_validator(base: BaseObject, schema: Schema) -> CompiledValidator:
    """The straight-line validator of one compiled schema (see the module docstring)."""
    src = _Source()
    # Builtins and helpers become default arguments: local names are the fastest lookups.
    src.add(0, "def validate(record, type=type, str=str, dict=dict, len=len):")
    src.add(1, "if type(record) is not dict: return None")
    src.add(1, "get = record.get")
    src.add(1, "out = {}")
    for position, (name, field) in enumerate(schema.load_fields.items()):
        assert isinstance(field, CatalogField), name
        prefix = f"F{position}"
        incoming = field.data_key if field.data_key is not None else name
        src.add(1, f"v = get({incoming!r})")
        try:
            string_lines = _string_block(src, name, field, prefix)
        except _NotInlined:
            field_ref = src.constant(f"{prefix}_FIELD", field)
            src.add(
                1,
                "try:",
                f"    r = {field_ref}.deserialize(v)",
                "except ValidationError:",
                "    return None",
                f"if r is not MISSING: out[{name!r}] = r",
            )
            continue
        src.add(1, "if type(v) is str:")
        src.add(2, "t = v.strip()")
        src.add(2, "if t:")
        src.add(3, *string_lines)
        if field.required:
            src.add(2, "else:", "    return None")
        src.add(1, *_other_shapes(src, field, name, prefix))
    # RecordSchema._dates_in_order: a later date before its earlier one is invalid.
    for later, earlier in base.not_before:
        if later in schema.load_fields and earlier in schema.load_fields:
            src.add(
                1,
                f"if {later!r} in out and {earlier!r} in out "
                f"and out[{later!r}] < out[{earlier!r}]: return None",
            )
    src.add(1, "return out")
    code = compile("\n".join(src.lines), f"<validator of {base.name} report>", "exec")
    exec(code, src.namespace)  # the text is ours, built from the schema's own field objects
    validator: CompiledValidator = src.namespace["validate"]
    validator.__doc__ = "\n".join(src.lines)  # shown by help(): what the function does
    return validator
