"""``/healthz`` (the process is up) and ``/readyz`` (its database and broker answer)."""

from __future__ import annotations

from typing import Any

from app.blueprint import Blueprint
from app.extensions import services
from app.schemas import HealthSchema, ReadinessSchema

health = Blueprint("health", __name__)


@health.get("/healthz", tags=["Health"])
@health.response(200, HealthSchema, description="Up.")
def healthz() -> dict[str, str]:
    """The process is up"""
    return {"status": "ok"}


@health.get("/readyz", tags=["Health"])
@health.response(200, ReadinessSchema, description="Ready.")
@health.alt_response(
    503, schema=ReadinessSchema, description="Not ready: `checks` says what is not."
)
def readyz() -> tuple[dict[str, Any], int]:
    """The database and the broker answer"""
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
