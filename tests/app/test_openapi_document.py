"""The committed OpenAPI document (docs/openapi.json) is the one the code builds, byte
for byte: a change to the API shows as a change to that file in review."""

from __future__ import annotations

from pathlib import Path

from app import create_app
from app.openapi import document
from importer.config import Settings

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def built(folder: Path) -> bytes:
    return document(create_app(Settings.from_env({"IMPORTER_DATA_DIR": str(folder)})))


def test_the_committed_document_is_current(tmp_path):
    assert built(tmp_path) == COMMITTED.read_bytes(), (
        "docs/openapi.json is not what the code builds: run `make openapi` and commit it"
    )


def test_the_document_is_the_same_bytes_on_every_build(tmp_path):
    assert built(tmp_path / "a") == built(tmp_path / "b")
