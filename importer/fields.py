"""marshmallow fields implementing the catalog's value rules.

Shared rules: strings are trimmed; ``null``, an empty or blank string and an empty
list mean "absent" (so a required field that is blank is *missing*, not invalid).
Each field's error message says what form it expects; ``importer.validation``
prefixes it with the field's names.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields, missing, validate

#: The message every field uses for a required value that is absent; validation
#: recognises it to tell ``missing_required_field`` from ``invalid_field_value``.
REQUIRED_MESSAGE = "is required and was absent or empty"

_SHOW_MAX = 60


def show(value: Any) -> str:
    """A short rendering of an offending value for an error message."""
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _is_blank(value: Any) -> bool:
    if value is None or value is missing:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list) and not value


class CatalogField(fields.Field[Any]):
    """Base of every catalog field: blank means absent, errors say the expected form."""

    expected = "a value"
    default_error_messages = {"required": REQUIRED_MESSAGE}

    def deserialize(
        self,
        value: Any,
        attr: str | None = None,
        data: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        # marshmallow's own version, minus what catalog fields never use (load
        # defaults, per-field pre/post-load hooks, None as a value): it runs once per
        # field of every record, so its overhead is a good part of validation's cost.
        if _is_blank(value):
            if self.required:
                raise self.make_error("required")
            return missing
        output = self._deserialize(value, attr, data, **kwargs)
        if self.validators:
            self._validate(output)
        return output

    def invalid(self, value: Any, expected: str | None = None) -> ValidationError:
        return ValidationError(f"must be {expected or self.expected}, got {show(value)}")


class Text(CatalogField):
    """A trimmed string. Numbers are taken as their text (``123`` -> ``"123"``),
    because spreadsheets and many exporters send identifiers as numbers."""

    def __init__(self, *, max_length: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.expected = f"text of at most {max_length} characters"

    def _text(self, value: Any) -> str:
        if isinstance(value, str):
            text = value.strip()
        elif isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, float) and math.isfinite(value):
            text = str(int(value)) if value.is_integer() else repr(value)
        else:
            raise self.invalid(value)
        if "\x00" in text:
            raise self.invalid(value, "text without NUL characters")
        if len(text) > self.max_length:
            raise ValidationError(f"must be at most {self.max_length} characters, got {len(text)}")
        return text

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return self._text(value)


class Url(Text):
    """An http(s) URL. A bare host name (``acme.com``) is taken as ``https://acme.com``."""

    expected = "an http(s) URL such as https://example.com"
    _validator = validate.URL(relative=False, require_tld=True, schemes={"http", "https"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expected = Url.expected

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = self._text(value)
        if "://" not in text:
            text = "https://" + text
            if len(text) > self.max_length:  # as stored, with its scheme
                raise ValidationError(
                    f"must be at most {self.max_length} characters with the https:// it is "
                    f"given, got {len(text)}"
                )
        try:
            self._validator(text)
        except ValidationError:
            raise self.invalid(value) from None
        return text


class Email(Text):
    expected = "an email address such as name@example.com"
    _validator = validate.Email()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expected = Email.expected

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = self._text(value)
        try:
            self._validator(text)
        except ValidationError:
            raise self.invalid(value) from None
        return text


class Number(CatalogField):
    """A JSON number or a numeric string (``"85"``, ``" 85.5 "``), within bounds."""

    def __init__(
        self, *, minimum: float | None = None, maximum: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.minimum, self.maximum = minimum, maximum
        if minimum is not None and maximum is not None:
            self.expected = f"a number from {minimum:g} to {maximum:g}"
        elif minimum is not None:
            self.expected = f"a number of at least {minimum:g}"
        elif maximum is not None:
            self.expected = f"a number of at most {maximum:g}"
        else:
            self.expected = "a number"

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool):
            raise self.invalid(value)
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise self.invalid(value) from None
        else:
            raise self.invalid(value)
        if not math.isfinite(number):
            raise self.invalid(value)
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            raise self.invalid(value)
        return number


class Boolean(CatalogField):
    expected = "a boolean: true/false, yes/no or 1/0"
    _TRUE = frozenset({"true", "yes", "1"})
    _FALSE = frozenset({"false", "no", "0"})

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in self._TRUE:
                return True
            if lowered in self._FALSE:
                return False
        raise self.invalid(value)


class Date(CatalogField):
    """An ISO-8601 date or date-time, or integer Unix seconds.

    A date-time keeps the calendar date it names (``2026-01-31T23:00:00-05:00`` is
    31 January); Unix seconds are read in UTC.
    """

    expected = "a date: ISO-8601 (2026-01-31 or 2026-01-31T09:30:00Z) or integer Unix seconds"
    _DIGITS = re.compile(r"^-?\d+$")
    _MIN = dt.date(1000, 1, 1)
    _MAX = dt.date(9999, 12, 31)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dt.date:
        if isinstance(value, bool):
            raise self.invalid(value)
        result: dt.date | None = None
        if isinstance(value, int) or (isinstance(value, str) and self._DIGITS.match(value.strip())):
            try:
                result = dt.datetime.fromtimestamp(int(value), dt.UTC).date()
            except (OverflowError, OSError, ValueError):
                result = None
        elif isinstance(value, str):
            text = value.strip()
            try:
                result = dt.date.fromisoformat(text)
            except ValueError:
                try:
                    result = dt.datetime.fromisoformat(text.replace("z", "Z")).date()
                except ValueError:
                    result = None
        if result is None or not (self._MIN <= result <= self._MAX):
            raise self.invalid(value)
        return result


class TextList(CatalogField):
    """A JSON array of strings or one comma-separated string; items are trimmed and
    blank items dropped."""

    def __init__(self, *, max_items: int = 100, max_length: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_items, self.max_length = max_items, max_length
        self.expected = (
            f"a list of at most {max_items} texts (a JSON array or a comma-separated string)"
        )

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[str]:
        if isinstance(value, str):
            items: list[Any] = value.split(",")
        elif isinstance(value, list):
            items = value
        else:
            raise self.invalid(value)
        result: list[str] = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self.invalid(value)
            text = str(item).strip()
            if "\x00" in text or len(text) > self.max_length:
                raise self.invalid(value)
            if text:
                result.append(text)
        if len(result) > self.max_items:
            raise self.invalid(value)
        if not result:
            # Only blank items: the same as absent, so nothing is overwritten.
            return missing  # type: ignore[return-value]
        return result


def _choice_key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


class Choice(CatalogField):
    """One of a fixed set of labels, matched ignoring case, spaces and hyphens
    (``"In Progress"`` is ``in_progress``); the canonical label is stored."""

    def __init__(self, *, choices: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.choices = {_choice_key(choice): choice for choice in choices}
        self.expected = "one of " + ", ".join(choices)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.invalid(value)
        try:
            return self.choices[_choice_key(value)]
        except KeyError:
            raise self.invalid(value) from None
