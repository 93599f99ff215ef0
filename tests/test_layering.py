"""The layers import downward only: the domain (``importer/``) imports neither the web
(``app/``) nor the workers (``worker/``); the web imports nothing from the workers. So
the web never loads task code, and the one seam to the broker is ``importer.outbox``.

The tests share helpers through modules made for it (``tests/factories.py``,
``tests/integration/factories.py``, ...): no test module imports another test module or
a conftest (pytest imports those itself, and a test imported elsewhere runs twice)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "importer": ("app", "worker", "cli", "push"),
    "app": ("worker", "cli", "push"),
    "worker": ("cli", "push"),
    # The push client talks to the service over HTTP only.
    "push": ("app", "worker", "cli"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package):
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert offending == []


def test_only_the_outbox_sends_to_the_broker():
    senders = sorted(
        str(path.relative_to(ROOT))
        for package in ("app", "importer", "worker", "cli")
        for path in (ROOT / package).rglob("*.py")
        if ".send_chunks(" in path.read_text() or ".send_deliveries(" in path.read_text()
    )
    assert senders == ["importer/outbox.py"]


def module_file(dotted: str) -> Path | None:
    """The file of the repository's module ``dotted`` (None: not one of its modules)."""
    path = ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(path: Path) -> list[tuple[int, Path]]:
    """The repository's modules ``path`` imports: ``import a.b``, ``from a.b import c``
    (``a.b``, and ``a.b.c`` when that is a module) and relative imports alike."""
    package = path.relative_to(ROOT).parent.parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [(node.lineno, file) for file in map(module_file, targets) if file is not None]
    return found


def test_no_test_module_imports_a_test_module_or_a_conftest():
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {file.relative_to(ROOT)}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for line, file in imported_files(path)
        if file.name == "conftest.py" or file.name.startswith("test_")
    ]
    assert offending == []
