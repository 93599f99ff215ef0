"""Property-based tests of the API: generated mappings, records, URLs and bodies.

Whatever arrives: never a 5xx. An import, once done: received = created + updated +
failed; every failed record has at least one error naming its index, and no written
record has one. Any text in any path or query parameter of any /v1 operation, and any
report or webhook body, gets an answer in the documented envelope. The tests are
defined in tests/app/api_properties.py and collected here on SQLite (``world``); the
same tests run on PostgreSQL in tests/integration/test_properties_postgres.py.
"""

from __future__ import annotations

import shutil

import pytest

from app import create_app
from importer.notify import PollingNotifier
from importer.orgs import create_org
from tests.app.api_properties import (  # noqa: F401 (collected here)
    test_any_batch_is_accounted_for_record_by_record,
    test_any_body_gets_an_answer_in_the_documented_shape,
    test_any_path_or_query_text_gets_an_answer_in_the_documented_shape,
    test_any_report_or_webhook_body_gets_an_answer_in_the_documented_shape,
)
from tests.factories import InlineBroker, make_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory, template_db):
    folder = tmp_path_factory.mktemp("properties")
    shutil.copy(template_db, folder / "importer.sqlite")
    app = create_app(make_settings(folder, sync_wait_seconds=5.0))
    services = app.extensions["importer"]
    services.notifier = PollingNotifier()
    services.outbox = InlineBroker(services.settings, services.db, services.notifier).outbox
    with services.db.session() as session:
        _, key = create_org(session, "properties")
    yield app.test_client(), {"Authorization": f"Bearer {key}"}
    services.db.dispose()
