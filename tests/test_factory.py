from app import create_app
from importer.config import Settings


def test_factory_reads_the_environment_then_applies_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("IMPORTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IMPORTER_SYNC_MAX_RECORDS", "250")
    monkeypatch.setenv("IMPORTER_CHUNK_SIZE", "100")
    app = create_app({"chunk_size": 7})
    settings: Settings = app.config["SETTINGS"]
    assert settings.sync_max_records == 250  # from the environment
    assert settings.chunk_size == 7  # the override wins
    assert settings.database_url == f"sqlite:///{tmp_path / 'importer.sqlite'}"
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024 * 1024


def test_factory_takes_complete_settings(settings):
    app = create_app(settings.replace(max_body_bytes=4096))
    assert app.config["MAX_CONTENT_LENGTH"] == 4096


def test_healthz_needs_no_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "broker": "ok"}
