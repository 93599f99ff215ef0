"""Every error code is one class of app/errors.py, and the README's table is written
from those classes."""

from __future__ import annotations

import re
from pathlib import Path

from app import errors

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_the_classes():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| status | `code` | when |", readme.index("### Errors"))
    end = readme.index("\n\n", start)
    assert readme[start:end] == errors.markdown_table(), (
        "README's table of error codes differs from app/errors.py: paste the output of "
        "`.venv/bin/python -c 'from app.errors import markdown_table; print(markdown_table())'`"
    )


def test_each_code_is_one_class_with_its_status_and_meaning():
    classes = errors.codes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", cls.code), cls
        assert 400 <= cls.status <= 599 and cls.description.endswith("."), cls
    # Every base object of the catalog has its own not-found code.
    assert {"vendor_not_found", "service_not_found", "assessment_not_found"} <= set(codes)


def test_no_view_makes_up_a_code_of_its_own():
    """A code is chosen by raising its class, never by a string at the raise site."""
    for path in (ROOT / "app").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bcode=\"", text), f"{path} passes a code string"
        assert "ApiError(" not in text.replace("class ApiError(", ""), f"{path} raises ApiError"
