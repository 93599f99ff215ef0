"""Fixtures of the integration layer: this machine's PostgreSQL and Redis, a fresh
database per test session, real web and worker processes.

Without PostgreSQL or Redis the tests skip, saying why, unless
``IMPORTER_REQUIRE_SERVICES=1`` (set by ``.ci/run``): then they fail. The helpers the
integration tests share are in tests/integration/factories.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis

from importer.db import Database
from tests.integration.factories import FAST_RECOVERY, new_org
from tests.integration.private_services import PrivateRedis
from tests.integration.stack import (
    POSTGRES_ADMIN_URL,
    REDIS_BASE_URL,
    Api,
    Stack,
    create_database,
    drop_database,
    fresh_stack,
)

#: The Redis database the tests own (they flush it).
REDIS_DB = int(os.environ.get("IMPORTER_TEST_REDIS_DB", "9"))


def _unreachable() -> list[str]:
    problems = []
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except Exception as error:
        problems.append(f"PostgreSQL at {POSTGRES_ADMIN_URL}: {error}")
    try:
        redis.Redis.from_url(REDIS_BASE_URL, socket_connect_timeout=3).ping()
    except Exception as error:
        problems.append(f"Redis at {REDIS_BASE_URL}: {error}")
    return problems


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def backing_services() -> None:
    problems = _unreachable()
    if not problems:
        return
    reason = "integration services unavailable: " + "; ".join(problems)
    if os.environ.get("IMPORTER_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " (IMPORTER_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url(backing_services: None) -> Iterator[str]:
    url = f"{REDIS_BASE_URL}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture(scope="session")
def stack(backing_services: None, redis_url: str) -> Iterator[Stack]:
    """One migrated database, one web process, one worker (2 processes). Webhooks may
    reach loopback, where the tests' receivers listen."""
    with fresh_stack(
        redis_url, worker=2, web=True, IMPORTER_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8"
    ) as running:
        yield running


@pytest.fixture
def api(stack: Stack) -> Api:
    """A client holding the key of a new org (so tests never see each other's data)."""
    return new_org(stack)


@pytest.fixture(scope="session")
def pg_database_url(backing_services: None) -> Iterator[str]:
    """A migrated PostgreSQL database for tests that call the domain code directly."""
    url = create_database()
    try:
        from cli.service import upgrade_database
        from importer.config import Settings

        upgrade_database(Settings.from_env({"DATABASE_URL": url}))
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def fresh_pg(backing_services: None) -> Iterator[Database]:
    """A migrated PostgreSQL database of this test's own (for tests that count rows
    across the whole database, which other tests' leftovers would disturb)."""
    from cli.service import upgrade_database
    from importer.config import Settings, normalize_database_url

    url = create_database()
    try:
        upgrade_database(Settings.from_env({"DATABASE_URL": url}))
        database = Database(normalize_database_url(url))
        yield database
        database.dispose()
    finally:
        drop_database(url)


@pytest.fixture
def pg(pg_database_url: str) -> Iterator[Database]:
    from importer.config import normalize_database_url

    database = Database(normalize_database_url(pg_database_url))
    yield database
    database.dispose()


# --- fault tests -------------------------------------------------------------------


@pytest.fixture
def private_redis(backing_services: None) -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def fault_stack(backing_services: None, private_redis: PrivateRedis) -> Iterator[Stack]:
    """A fresh database and a private Redis for web and worker processes the test starts."""
    with fresh_stack(private_redis.url, **FAST_RECOVERY) as running:
        yield running


@pytest.fixture
def fault_log(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record what a fault test injected and counted; printed in the run's summary."""
    lines: list[str] = request.config.stash.setdefault(FAULT_LINES, [])

    def log(text: str) -> None:
        lines.append(f"{request.node.name}: {text}")

    return log


FAULT_LINES = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(FAULT_LINES, [])
    if lines:
        terminalreporter.section("faults injected and what was counted")
        for line in lines:
            terminalreporter.write_line(line)
