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
from importer import catalog, metrics
from importer.config import Settings
from importer.db import Database
from importer.models import ImportReport, Org
from importer.notify import RedisNotifier
from importer.orgs import create_org
from importer.reports import create_report
from tests.factories import LOOPBACK, MAPPINGS, WEBHOOK, InlineBroker, make_settings, vendor
from tests.webhook_receiver import Receiver, closed_port_url
from worker.tasks import run_delivery


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


@pytest.fixture
def seeded(client, auth, make_report, org_and_key, db, worker, loopback_webhooks) -> dict[str, Any]:
    """Reports, batches, objects of every kind, and webhooks with deliveries (attempted:
    one delivered, one refused), for the generated requests to find."""
    definitions = {}
    for base_object in MAPPINGS:
        report: ImportReport = make_report(base_object)
        definitions[report.slug] = {
            "slug": report.slug,
            "report_name": report.report_name,
            "base_object": report.base_object,
            "mapping": report.mapping,
            "required": report.required,
        }
    full_vendor = vendor(
        1,
        **{
            "Website": "acme.example.com",
            "Status": "active",
            "Tags": "cloud, eu",
            "Enterprise": "yes",
            "IRQ Score": "72.5",
            "Next Assessment": "2026-06-30",
            "Contact Email": "risk@acme.example.com",
        },
    )
    imports = [
        ("vendors", [full_vendor, vendor(2), vendor(3), {"Supplier Name": "no id"}], {}),
        ("vendors", [vendor(4, Region="EMEA")], {"Prefer": "respond-async"}),
        ("vendors", [{"Supplier ID": "V-X"}], {}),  # every record fails: 400
        (
            "services",
            [
                {"Service ID": "S-1", "Service Name": "Hosting", "Supplier ID": "V-00001"},
                {
                    "Service ID": "S-2",
                    "Service Name": "Mail",
                    "Supplier ID": "V-00002",
                    "Hosting": "SaaS",
                    "Tier": "Tier 1",
                    "Data Types": "pii, financial",
                },
            ],
            {},
        ),
        (
            "assessments",
            [
                {"Assessment ID": "A-1", "Supplier ID": "V-00001"},
                {
                    "Assessment ID": "A-2",
                    "Supplier ID": "V-00002",
                    "Name": "Annual",
                    "Status": "In Progress",
                    "Start": "2026-01-01",
                    "End": "2026-03-31",
                    "Score": 0.8,
                },
            ],
            {},
        ),
    ]
    batch_ids = []
    with Receiver() as receiver:
        webhook_ids = [
            client.post(
                "/v1/webhooks",
                json={**WEBHOOK, "url": url, "events": ["Import.Completed"]},
                headers=auth,
            ).json["id"]
            for url in (receiver.url, closed_port_url())
        ]
        for slug, records, headers in imports:
            response = client.post(
                f"/v1/import/{slug}", json={"data": records}, headers={**auth, **headers}
            )
            assert response.status_code in (200, 202, 400), response.json
            batch_ids.append(response.json["batch_id"])
        for delivery_id in worker.webhooks_sent:
            run_delivery(db, delivery_id, max_attempts=8, allowed_networks=LOOPBACK)
        assert receiver.requests
    objects: dict[str, list[str]] = {}
    for base in catalog.CATALOG.values():
        listed = client.get(f"/v1/{base.plural}", headers=auth).json
        objects[f"/v1/{base.plural}/{{object_id}}"] = [item["id"] for item in listed["items"]]
        assert objects[f"/v1/{base.plural}/{{object_id}}"], base.name
    return {
        "definitions": definitions,
        "known": {
            "slug": list(definitions),
            "batch_id": batch_ids,
            "webhook_id": webhook_ids,
            **objects,
        },
    }
