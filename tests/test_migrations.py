"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from tests.factories import schema_drift


def test_migrations_match_the_models_on_sqlite(settings):
    # ``settings`` carries a database built by ``importer db upgrade`` (see conftest).
    assert schema_drift(settings.database_url) == []
