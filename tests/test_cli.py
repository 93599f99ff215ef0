"""The ``importer`` command line."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from click.testing import CliRunner

from cli import main
from importer.models import ApiKey, ImportReport, Org


def env_for(settings):
    return {"IMPORTER_DATA_DIR": str(settings.data_dir), "DATABASE_URL": settings.database_url}


def test_create_org_prints_exactly_one_line_of_json(settings, db):
    result = CliRunner().invoke(main, ["create-org", "Acme Risk"], env=env_for(settings))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1
    created = orjson.loads(lines[0])
    assert set(created) == {"org_id", "api_key"}
    assert created["org_id"].startswith("cborg_") and created["api_key"].startswith("ak_")
    with db.session() as session:
        assert session.get(Org, created["org_id"]).name == "Acme Risk"
        assert session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 1


def test_the_printed_key_works(settings, client):
    result = CliRunner().invoke(main, ["create-org", "Acme"], env=env_for(settings))
    key = orjson.loads(result.output)["api_key"]
    response = client.get("/v1/import-reports", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


def test_db_upgrade_on_a_new_database(tmp_path):
    env = {
        "IMPORTER_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite'}",
    }
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    engine = sa.create_engine(env["DATABASE_URL"])
    assert "import_batches" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_a_bad_setting_is_a_clear_usage_error(tmp_path):
    env = {"IMPORTER_DATA_DIR": str(tmp_path), "IMPORTER_CHUNK_SIZE": "lots"}
    result = CliRunner().invoke(main, ["create-org", "x"], env=env)
    assert result.exit_code == 2
    assert "IMPORTER_CHUNK_SIZE must be an integer, got 'lots'" in result.output


def test_the_demo_org_gets_one_report_per_base_object(db):
    from importer.demo import create_demo, demo_exists, sample_curl

    with db.session() as session:
        assert not demo_exists(session)
        org, key = create_demo(session)
        assert demo_exists(session)
        reports = session.scalars(
            sa.select(ImportReport.base_object).where(ImportReport.org_id == org.id)
        )
        assert sorted(reports) == ["assessment", "service", "vendor"]
    command = sample_curl("http://127.0.0.1:8000", key)
    assert command.startswith("curl -sS -X POST http://127.0.0.1:8000/v1/import/vendors")
    assert f"Bearer {key}" in command


def test_the_sample_curl_body_imports_cleanly(db, client):
    import shlex

    from importer.demo import create_demo, sample_curl

    with db.session() as session:
        _, key = create_demo(session)
    words = shlex.split(sample_curl("http://localhost", key))
    body = words[words.index("-d") + 1]
    response = client.post(
        "/v1/import/vendors",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json["created_count"] == 3
    assert response.json["errors"] == [] and response.json["warnings"] == []
