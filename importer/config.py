"""Typed settings read from the environment.

This is the only module that reads ``os.environ``. Everything else receives a
:class:`Settings` instance (the Flask app keeps it in ``app.config["SETTINGS"]``,
the Celery app in ``celery.conf.importer_settings``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    return None if raw is None or raw.strip() == "" else _int(env, name, 0)


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of CIDRs (a bare address is one host)."""
    networks = []
    for part in (env.get(name) or "").split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip()))
            except ValueError as error:
                raise ConfigError(f"{name} must list networks like 10.0.0.0/8: {error}") from None
    return tuple(networks)


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever spelling of the URL the operator gave."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the service. Field names map to ``IMPORTER_<NAME>`` variables,
    except ``database_url`` and ``redis_url`` (``DATABASE_URL``, ``REDIS_URL``)."""

    data_dir: Path
    database_url: str
    redis_url: str | None
    # Import call limits and modes.
    sync_max_records: int = 1000
    sync_wait_seconds: float = 25.0
    max_records: int = 100_000
    max_body_bytes: int = 64 * MIB
    chunk_size: int = 5000
    inline_items: int = 1000
    # Delivery and recovery.
    relay_interval_seconds: float = 2.0
    relay_grace_seconds: float = 5.0
    redispatch_after_seconds: float = 120.0
    stuck_after_seconds: float = 60.0
    visibility_timeout_seconds: int = 1800
    chunk_max_retries: int = 5
    # Lanes: each worker runs worker_concurrency processes for the bulk lane plus
    # interactive_slots more that the bulk lane never fills (see importer.scheduler).
    worker_concurrency: int = 2
    interactive_slots: int = 1
    # At most this many bulk chunks of one org in flight (0: every bulk slot).
    org_max_in_flight: int = 0
    # Webhooks: attempts of a delivery before it is given up as failed, and the
    # networks an operator allows as targets although they are not public.
    webhook_max_attempts: int = 8
    webhook_allow_networks: tuple[IPNetwork, ...] = ()
    # Idempotency-Key retention.
    idempotency_ttl_seconds: int = 24 * 3600
    # Retention (importer.retention): a finished batch's per-record details, then its
    # summary; webhook deliveries. Objects are never purged.
    batch_detail_retention_days: int = 30
    batch_retention_days: int = 365
    webhook_delivery_retention_days: int = 30
    # The workers purge at most this often (the whole deployment, not each worker).
    purge_interval_seconds: float = 60.0
    # Processes.
    web_workers: int = 2
    web_threads: int = 8
    # Requests per web process that may wait for a batch at once (a synchronous import,
    # ``?wait=``); the rest of the threads always serve everything else (health checks,
    # metrics, reads). None: two fewer than web_threads.
    sync_waiters: int | None = None
    # Logging.
    log_format: str = "text"
    log_level: str = "INFO"
    # Metrics: the folder every process writes its Prometheus samples to (None:
    # <data_dir>/metrics), and the bearer token GET /metrics asks for (None: no token).
    metrics_dir: Path | None = None
    metrics_token: str | None = dataclasses.field(default=None, repr=False)
    # Per-org rate limits of the /v1 API (0 = off; always off without Redis).
    rate_limit_requests_per_second: int = 0
    rate_limit_records_per_minute: int = 0
    # The push client (`importer push`): where the service is, and the key it sends.
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = dataclasses.field(default=None, repr=False)
    # The ops page (`/ops`): its token; unset, the page is disabled (404).
    ops_token: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.sync_waiters is not None and self.sync_waiters >= self.web_threads:
            raise ConfigError(
                f"IMPORTER_SYNC_WAITERS must be less than IMPORTER_WEB_THREADS "
                f"({self.web_threads}), so that requests that do not wait (health checks, "
                f"metrics, reads) always have a thread; got {self.sync_waiters}"
            )

    @property
    def waiting_slots(self) -> int:
        """How many requests of one web process may wait for a batch at once."""
        if self.sync_waiters is None:
            return max(self.web_threads - 2, 0)
        return self.sync_waiters

    @property
    def is_embedded(self) -> bool:
        """True when no Redis is configured: the broker is a folder of message files."""
        return self.redis_url is None

    @property
    def dialect(self) -> str:
        return self.database_url.split(":", 1)[0].split("+", 1)[0]

    @property
    def metrics_path(self) -> Path:
        """Where this deployment's processes write their metrics (shared by all of them)."""
        return self.metrics_dir or self.data_dir / "metrics"

    @property
    def broker_url(self) -> str:
        return self.redis_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """Where the embedded deployment's broker keeps its messages."""
        return self.data_dir / "broker"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        # Relative to the working directory, resolved now: each deployment started in a
        # folder of its own keeps its own database, broker folder, metrics and sockets,
        # even when several run from one checkout.
        data_dir = Path(env.get("IMPORTER_DATA_DIR") or "var").resolve()
        database_url = normalize_database_url(
            env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'importer.sqlite'}"
        )
        values: dict[str, Any] = dict(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=(env.get("REDIS_URL") or "").strip() or None,
            sync_max_records=_int(env, "IMPORTER_SYNC_MAX_RECORDS", 1000),
            sync_wait_seconds=_float(env, "IMPORTER_SYNC_WAIT_SECONDS", 25.0),
            max_records=_int(env, "IMPORTER_MAX_RECORDS", 100_000, minimum=1),
            max_body_bytes=_int(env, "IMPORTER_MAX_BODY_BYTES", 64 * MIB, minimum=1024),
            chunk_size=_int(env, "IMPORTER_CHUNK_SIZE", 5000, minimum=1),
            inline_items=_int(env, "IMPORTER_INLINE_ITEMS", 1000, minimum=1),
            relay_interval_seconds=_float(env, "IMPORTER_RELAY_INTERVAL_SECONDS", 2.0, 0.05),
            relay_grace_seconds=_float(env, "IMPORTER_RELAY_GRACE_SECONDS", 5.0),
            redispatch_after_seconds=_float(env, "IMPORTER_REDISPATCH_AFTER_SECONDS", 120.0, 1),
            stuck_after_seconds=_float(env, "IMPORTER_STUCK_AFTER_SECONDS", 60.0, 1),
            visibility_timeout_seconds=_int(env, "IMPORTER_VISIBILITY_TIMEOUT_SECONDS", 1800, 1),
            chunk_max_retries=_int(env, "IMPORTER_CHUNK_MAX_RETRIES", 5),
            webhook_max_attempts=_int(env, "IMPORTER_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1),
            webhook_allow_networks=_networks(env, "IMPORTER_WEBHOOK_ALLOW_NETWORKS"),
            worker_concurrency=_int(env, "IMPORTER_WORKER_CONCURRENCY", 2, minimum=1),
            interactive_slots=_int(env, "IMPORTER_INTERACTIVE_SLOTS", 1, minimum=1),
            org_max_in_flight=_int(env, "IMPORTER_ORG_MAX_IN_FLIGHT", 0),
            idempotency_ttl_seconds=_int(env, "IMPORTER_IDEMPOTENCY_TTL_SECONDS", 86400, 1),
            batch_detail_retention_days=_int(env, "IMPORTER_BATCH_DETAIL_RETENTION_DAYS", 30, 1),
            batch_retention_days=_int(env, "IMPORTER_BATCH_RETENTION_DAYS", 365, 1),
            webhook_delivery_retention_days=_int(
                env, "IMPORTER_WEBHOOK_DELIVERY_RETENTION_DAYS", 30, 1
            ),
            purge_interval_seconds=_float(env, "IMPORTER_PURGE_INTERVAL_SECONDS", 60.0, 1.0),
            web_workers=_int(env, "IMPORTER_WEB_WORKERS", 2, minimum=1),
            web_threads=_int(env, "IMPORTER_WEB_THREADS", 8, minimum=1),
            sync_waiters=_optional_int(env, "IMPORTER_SYNC_WAITERS"),
            log_format=_choice(env, "IMPORTER_LOG_FORMAT", "text", ("text", "json")),
            log_level=_choice(
                env, "IMPORTER_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
            ).upper(),
            metrics_dir=Path(env.get("IMPORTER_METRICS_DIR") or data_dir / "metrics").resolve(),
            metrics_token=(env.get("IMPORTER_METRICS_TOKEN") or "").strip() or None,
            rate_limit_requests_per_second=_int(env, "IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND", 0),
            rate_limit_records_per_minute=_int(env, "IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE", 0),
            url=(env.get("IMPORTER_URL") or "").strip() or "http://127.0.0.1:8000",
            api_key=(env.get("IMPORTER_API_KEY") or "").strip() or None,
            ops_token=(env.get("IMPORTER_OPS_TOKEN") or "").strip() or None,
        )
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
