"""``/healthz`` (the process is up) and ``/readyz`` (its database and broker answer)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from app.extensions import services

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    svc = services()
    checks: dict[str, str] = {}
    for name, check in (("database", svc.db.ping), ("broker", svc.check_broker)):
        try:
            check()
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"unavailable: {type(error).__name__}: {error}"[:300]
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
