"""The property tests and the schemathesis run of the fast layer, against the app on
this machine's PostgreSQL (where text SQLite takes, a NUL character, made the driver
fail): every path and query parameter of every operation, every body, never a 5xx.

The tests are those of tests/app/test_properties.py and tests/app/test_openapi.py
(defined in tests/app/api_properties.py), collected here with fixtures that put the
app on PostgreSQL (the worker's task function is called inline, as in the fast layer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from importer.config import Settings
from importer.notify import PollingNotifier
from importer.orgs import create_org
from tests.app.api_properties import (  # noqa: F401 (fixtures and tests, collected here)
    _node_id_for_schemathesis,
    api_schema,
    test_any_batch_is_accounted_for_record_by_record,
    test_any_body_gets_an_answer_in_the_documented_shape,
    test_any_path_or_query_text_gets_an_answer_in_the_documented_shape,
    test_any_report_or_webhook_body_gets_an_answer_in_the_documented_shape,
    test_api_conforms_to_its_document,
)
from tests.factories import InlineBroker


def _settings(pg_database_url: str, data_dir: Path) -> Settings:
    return Settings.from_env(
        {"IMPORTER_DATA_DIR": str(data_dir), "DATABASE_URL": pg_database_url},
        sync_wait_seconds=5.0,
    )


@pytest.fixture
def settings(pg_database_url: str, tmp_path: Path) -> Settings:
    """The fast layer's app, client, org and report fixtures, on PostgreSQL."""
    return _settings(pg_database_url, tmp_path)


@pytest.fixture(scope="module")
def world(
    pg_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, dict[str, str]]]:
    app = create_app(_settings(pg_database_url, tmp_path_factory.mktemp("properties")))
    services = app.extensions["importer"]
    services.notifier = PollingNotifier()
    services.outbox = InlineBroker(services.settings, services.db, services.notifier).outbox
    with services.db.session() as session:
        _, key = create_org(session, "properties")
    yield app.test_client(), {"Authorization": f"Bearer {key}"}
    services.db.dispose()
