"""Settings: each declared once (variable, parser, default, text), read from the
environment by that declaration, and documented by it in the README."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from importer.config import ConfigError, Settings, knobs, markdown_table

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_table_is_the_declaration():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| variable | default | meaning |", readme.index("## Configuration"))
    end = readme.index("\n\n", start)
    assert readme[start:end] == markdown_table(), (
        "README's configuration table differs from importer/config.py: paste the output of "
        "`.venv/bin/python -c 'from importer.config import markdown_table; "
        "print(markdown_table())'`"
    )


def test_every_field_is_a_declared_variable_read_by_from_env(tmp_path):
    names = {spec.env for spec in knobs().values()}
    assert len(names) == len(dataclasses.fields(Settings))
    assert all(re.fullmatch(r"(IMPORTER_[A-Z_]+|DATABASE_URL|REDIS_URL)", n) for n in names)
    env = {
        "IMPORTER_DATA_DIR": str(tmp_path),
        "IMPORTER_SYNC_MAX_RECORDS": " 250 ",
        "IMPORTER_SYNC_WAIT_SECONDS": "2.5",
        "IMPORTER_LOG_LEVEL": "Debug",
        "IMPORTER_WEBHOOK_ALLOW_NETWORKS": "10.0.0.0/8, 192.0.2.7",
        "IMPORTER_SYNC_WAITERS": "3",
        "DATABASE_URL": "postgres://u@h/db",
        "REDIS_URL": "redis://r:6379/0",
    }
    settings = Settings.from_env(env)
    assert settings.data_dir == tmp_path
    assert (settings.sync_max_records, settings.sync_wait_seconds) == (250, 2.5)
    assert settings.log_level == "DEBUG"
    assert [str(n) for n in settings.webhook_allow_networks] == ["10.0.0.0/8", "192.0.2.7/32"]
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert (settings.redis_url, settings.waiting_slots) == ("redis://r:6379/0", 3)


def test_unset_or_blank_leaves_the_default(tmp_path):
    settings = Settings.from_env({"IMPORTER_DATA_DIR": str(tmp_path), "IMPORTER_CHUNK_SIZE": " "})
    assert settings.chunk_size == 5000
    assert settings.database_url == f"sqlite:///{tmp_path / 'importer.sqlite'}"
    assert settings.metrics_path == tmp_path / "metrics"
    assert settings.redis_url is None and settings.is_embedded


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("IMPORTER_CHUNK_SIZE", "many", "IMPORTER_CHUNK_SIZE must be an integer, got 'many'"),
        ("IMPORTER_CHUNK_SIZE", "0", "IMPORTER_CHUNK_SIZE must be at least 1, got 0"),
        ("IMPORTER_SYNC_WAIT_SECONDS", "soon", "IMPORTER_SYNC_WAIT_SECONDS must be a number"),
        ("IMPORTER_LOG_FORMAT", "xml", "IMPORTER_LOG_FORMAT must be one of text, json"),
        ("IMPORTER_WEBHOOK_ALLOW_NETWORKS", "10.0.0.0/33", "must list networks like"),
        ("IMPORTER_SYNC_WAITERS", "8", "IMPORTER_SYNC_WAITERS must be less than"),
    ],
)
def test_a_bad_value_names_its_variable(variable, raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env({variable: raw})


def test_secrets_stay_out_of_reprs():
    settings = Settings.from_env(
        {"IMPORTER_OPS_TOKEN": "ops-secret", "IMPORTER_METRICS_TOKEN": "m-secret"}
    )
    assert "secret" not in repr(settings)
