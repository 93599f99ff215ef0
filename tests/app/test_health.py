"""/healthz (the process is up) and /readyz (its database and broker answer)."""

from __future__ import annotations


def fail(message: str):
    def check() -> None:
        raise ConnectionError(message)

    return check


def test_healthz_answers_whatever_the_backing_services_do(app, client):
    services = app.extensions["importer"]
    services.db.ping = fail("database down")
    services.check_broker = fail("broker down")
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readyz_is_503_naming_the_database_when_it_is_down(app, client):
    app.extensions["importer"].db.ping = fail("connection refused")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["checks"] == {
        "database": "unavailable: ConnectionError: connection refused",
        "broker": "ok",
    }


def test_readyz_is_503_naming_the_broker_when_it_is_down(app, client):
    app.extensions["importer"].check_broker = fail("Error 111 connecting to redis")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["broker"] == (
        "unavailable: ConnectionError: Error 111 connecting to redis"
    )
    assert response.json["checks"]["database"] == "ok"


def test_readyz_asks_the_real_broker_when_there_is_one(app, client):
    """Distributed: readiness pings Redis (here fakeredis, then a fakeredis that is down)."""
    import fakeredis

    from app.extensions import BrokerCheck

    server = fakeredis.FakeServer()
    services = app.extensions["importer"]
    services.check_broker = BrokerCheck(fakeredis.FakeRedis(server=server).ping, ttl=0)
    assert client.get("/readyz").status_code == 200
    server.connected = False  # the server stops answering
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["broker"].startswith("unavailable: ConnectionError")


def test_health_and_metrics_need_no_key(client):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path
