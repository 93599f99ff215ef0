"""Fixtures of the fast layer: SQLite, fakeredis, task functions called directly.

Every test gets its own SQLite file, copied from a template migrated once per run
(so the schema under test is the one Alembic builds, not ``create_all``). The helpers
the fixtures and the tests share (records, mappings, brokers) are in tests/factories.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from cli.service import upgrade_database
from importer import metrics
from importer.config import Settings
from importer.db import Database
from importer.models import Org
from importer.notify import RedisNotifier
from importer.orgs import create_org
from importer.reports import create_report
from tests.factories import LOOPBACK, MAPPINGS, InlineBroker, make_settings


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    upgrade_database(make_settings(folder))
    return folder / "importer.sqlite"


@pytest.fixture
def settings(tmp_path: Path, template_db: Path) -> Settings:
    shutil.copy(template_db, tmp_path / "importer.sqlite")
    return make_settings(tmp_path, sync_wait_seconds=5.0)


@pytest.fixture(autouse=True)
def _metrics_unconfigured() -> Iterator[None]:
    """Each test's app writes metrics to its own folder (``<tmp_path>/metrics``, set up by
    ``create_app``); none of it outlives the test (nor PROMETHEUS_MULTIPROC_DIR)."""
    yield
    metrics.reset()


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database.from_settings(settings)
    yield database
    database.dispose()


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def app(settings: Settings, db: Database, redis_client: fakeredis.FakeRedis) -> Iterator[Flask]:
    flask_app = create_app(settings)
    services = flask_app.extensions["importer"]
    services.db = db
    services.notifier = RedisNotifier(redis_client)
    services.outbox = InlineBroker(settings, db, services.notifier).outbox
    yield flask_app


@pytest.fixture
def loopback_webhooks(app: Flask) -> None:
    """The app, and its inline worker, allow webhooks to loopback (as
    ``IMPORTER_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8`` would): the receivers are there."""
    services = app.extensions["importer"]
    services.settings = services.settings.replace(webhook_allow_networks=LOOPBACK)
    app.config["SETTINGS"] = services.settings
    services.outbox.settings = services.settings


@pytest.fixture
def worker(app: Flask) -> InlineBroker:
    inline: InlineBroker = app.extensions["importer"].outbox.broker
    return inline


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_org(db: Database) -> Callable[..., tuple[Org, str]]:
    """``make_org(name=...)`` -> (org, api key)."""

    def make(name: str = "Acme Risk") -> tuple[Org, str]:
        with db.session() as session:
            org, key = create_org(session, name)
        return org, key

    return make


@pytest.fixture
def org_and_key(make_org: Callable[..., tuple[Org, str]]) -> tuple[Org, str]:
    return make_org()


@pytest.fixture
def auth(org_and_key: tuple[Org, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {org_and_key[1]}"}


@pytest.fixture
def make_report(db: Database, org_and_key: tuple[Org, str]) -> Callable[..., Any]:
    """``make_report(base_object="vendor", slug=..., mapping=..., required=..., org=...)``."""

    def make(base_object: str = "vendor", **overrides: Any) -> Any:
        org = overrides.pop("org", org_and_key[0])
        definition = {
            "slug": f"{base_object}s",
            "report_name": f"{base_object.title()} feed",
            "base_object": base_object,
            "mapping": MAPPINGS[base_object],
        }
        definition.update(overrides)
        with db.session() as session:
            return create_report(session, session.merge(org), **definition)

    return make
