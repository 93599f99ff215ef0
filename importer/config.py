"""The service's settings, each declared once: its environment variable, parser,
default and documentation sit together (:func:`knob`), and :meth:`Settings.from_env`
reads them all from that declaration. The README's configuration table is generated
from it too (:func:`markdown_table`; ``tests/test_settings.py`` keeps them equal).

This is the only module that reads ``os.environ``. Everything else receives a
:class:`Settings` instance (the Flask app keeps it in ``app.config["SETTINGS"]``,
the Celery app in ``celery.conf.importer_settings``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``parse(variable, raw text)`` -> the setting's value; raises :class:`ConfigError`.
Parser = Callable[[str, str], Any]


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


# --- parsers: what a variable's text may be -------------------------------------------


def integer(minimum: int = 0) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def number(minimum: float = 0.0) -> Parser:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def choice(*choices: str, upper: bool = False) -> Parser:
    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return value.upper() if upper else value

    return parse


def text(name: str, raw: str) -> str:
    return raw


def folder(name: str, raw: str) -> Path:
    """Relative to the working directory, resolved when the command starts."""
    return Path(raw).resolve()


def networks(name: str, raw: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of CIDRs (a bare address is one host)."""
    found = []
    for part in raw.split(","):
        if part.strip():
            try:
                found.append(ipaddress.ip_network(part.strip()))
            except ValueError as error:
                raise ConfigError(f"{name} must list networks like 10.0.0.0/8: {error}") from None
    return tuple(found)


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever spelling of the URL the operator gave."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def database_url(name: str, raw: str) -> str:
    return normalize_database_url(raw)


# --- the declaration --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Knob:
    """How one setting is read and documented."""

    env: str
    parse: Parser
    #: The default as the README shows it.
    shown: str
    #: What it does, in the README's words.
    doc: str


def knob(
    env: str,
    default: Any,
    parse: Parser,
    *,
    doc: str,
    shown: str | None = None,
    secret: bool = False,
) -> Any:
    """A setting: a dataclass field that knows its variable, parser and documentation.
    Unset or blank, the variable leaves ``default``. A ``secret`` is kept out of reprs.
    ``shown``: the default as the README shows it, when the value itself does not say
    it (else the value, or "unset" for none)."""
    if shown is None:
        shown = "unset" if default is None else f"`{_plain(default)}`"
    return dataclasses.field(
        default=default, repr=not secret, metadata={"knob": Knob(env, parse, shown, doc)}
    )


def _plain(value: Any) -> Any:
    """A whole float as the integer it is (60.0 -> 60)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the service, in the README's order."""

    data_dir: Path = knob(
        "IMPORTER_DATA_DIR",
        Path("var"),
        folder,
        shown="`./var`",
        doc=(
            "the deployment's own folder: the embedded deployment's SQLite database and "
            "broker folder, the metrics (`metrics/`, unless `IMPORTER_METRICS_DIR`) and "
            "each web process's gunicorn control socket (`gunicorn-<port>.ctl`); relative "
            "to the working directory, resolved when a command starts (see "
            "[Deployments](#deployments))"
        ),
    )
    database_url: str = knob(
        "DATABASE_URL",
        "",
        database_url,
        shown="`sqlite:///<data dir>/importer.sqlite`",
        doc=(
            "PostgreSQL in production (`postgresql://user:pass@host/db`; psycopg 3 is used "
            "whatever the scheme says)"
        ),
    )
    redis_url: str | None = knob(
        "REDIS_URL",
        None,
        text,
        doc=(
            "the Celery broker and the completion notifications; unset = the embedded "
            "broker (a folder of message files)"
        ),
    )
    sync_max_records: int = knob(
        "IMPORTER_SYNC_MAX_RECORDS",
        1000,
        integer(),
        doc=("larger batches are answered `202` at once"),
    )
    sync_wait_seconds: float = knob(
        "IMPORTER_SYNC_WAIT_SECONDS",
        25.0,
        number(),
        doc=("how long a synchronous import waits for the workers before answering `202`"),
    )
    max_records: int = knob(
        "IMPORTER_MAX_RECORDS",
        100_000,
        integer(minimum=1),
        doc=("records per request (`413 too_many_records` beyond)"),
    )
    max_body_bytes: int = knob(
        "IMPORTER_MAX_BODY_BYTES",
        64 * MIB,
        integer(minimum=1024),
        shown="`67108864` (64 MiB)",
        doc=("request body size (`413 payload_too_large` beyond)"),
    )
    chunk_size: int = knob(
        "IMPORTER_CHUNK_SIZE",
        5000,
        integer(minimum=1),
        doc=("records per chunk (the unit of work of a worker)"),
    )
    inline_items: int = knob(
        "IMPORTER_INLINE_ITEMS",
        1000,
        integer(minimum=1),
        doc=("results/errors/warnings inlined in a batch body; the rest is paginated"),
    )
    idempotency_ttl_seconds: int = knob(
        "IMPORTER_IDEMPOTENCY_TTL_SECONDS",
        24 * 3600,
        integer(minimum=1),
        doc=("how long an `Idempotency-Key` is remembered (then purged)"),
    )
    batch_detail_retention_days: int = knob(
        "IMPORTER_BATCH_DETAIL_RETENTION_DAYS",
        30,
        integer(minimum=1),
        doc=(
            "a finished batch's per-record details (results, errors, warnings) are purged "
            "this many days after it finished; reads of them then answer `410 "
            "batch_details_expired` (see [Retention](#retention))"
        ),
    )
    batch_retention_days: int = knob(
        "IMPORTER_BATCH_RETENTION_DAYS",
        365,
        integer(minimum=1),
        doc=("a finished batch's summary is purged this many days after it finished"),
    )
    webhook_delivery_retention_days: int = knob(
        "IMPORTER_WEBHOOK_DELIVERY_RETENTION_DAYS",
        30,
        integer(minimum=1),
        doc=(
            "delivered and failed webhook deliveries are purged this many days after they "
            "were created"
        ),
    )
    purge_interval_seconds: float = knob(
        "IMPORTER_PURGE_INTERVAL_SECONDS",
        60.0,
        number(minimum=1.0),
        doc=(
            "the workers run the retention purge at most this often (the whole deployment, "
            "not each worker)"
        ),
    )
    web_workers: int = knob(
        "IMPORTER_WEB_WORKERS",
        2,
        integer(minimum=1),
        doc=("gunicorn worker processes of `importer web`"),
    )
    web_threads: int = knob(
        "IMPORTER_WEB_THREADS",
        8,
        integer(minimum=1),
        doc=("threads per gunicorn worker (a synchronous import holds one while it waits)"),
    )
    sync_waiters: int | None = knob(
        "IMPORTER_SYNC_WAITERS",
        None,
        integer(),
        shown="`IMPORTER_WEB_THREADS` − 2 (6)",
        doc=(
            "requests per web process that may wait for a batch at once (synchronous "
            "imports, `?wait=`); beyond it they are answered at once, `202` + `Retry-After` "
            "(see [Waiting callers](#waiting-callers)); must be less than "
            "`IMPORTER_WEB_THREADS`, so health checks, metrics and reads always have a "
            "thread; `0`: no request waits"
        ),
    )
    worker_concurrency: int = knob(
        "IMPORTER_WORKER_CONCURRENCY",
        2,
        integer(minimum=1),
        doc=(
            "pool processes of `importer worker` for the bulk lane (its bulk slots; "
            "`--concurrency` overrides it)"
        ),
    )
    interactive_slots: int = knob(
        "IMPORTER_INTERACTIVE_SLOTS",
        1,
        integer(minimum=1),
        doc=(
            "pool processes each `importer worker` runs on top of those, which the bulk "
            "lane never fills: a synchronous batch always finds one free (see [Lanes and "
            "fair share](#lanes-and-fair-share))"
        ),
    )
    org_max_in_flight: int = knob(
        "IMPORTER_ORG_MAX_IN_FLIGHT",
        0,
        integer(),
        shown="`0` (all bulk slots)",
        doc=(
            "at most this many of one org's bulk chunks handed to the broker or being "
            "written at once; with the default an org alone may use the whole bulk lane, "
            "and orgs flooding together share it round robin"
        ),
    )
    chunk_max_retries: int = knob(
        "IMPORTER_CHUNK_MAX_RETRIES",
        5,
        integer(),
        doc=(
            "retries (exponential backoff) of a chunk before its records fail with `write_failed`"
        ),
    )
    webhook_max_attempts: int = knob(
        "IMPORTER_WEBHOOK_MAX_ATTEMPTS",
        8,
        integer(minimum=1),
        doc=(
            "attempts of a webhook delivery (exponential backoff from 10 s, at most 1 h "
            "apart) before it is `failed`"
        ),
    )
    webhook_allow_networks: tuple[IPNetwork, ...] = knob(
        "IMPORTER_WEBHOOK_ALLOW_NETWORKS",
        (),
        networks,
        shown="empty",
        doc=(
            "comma-separated CIDRs (a bare address is one host) that webhooks may reach "
            "although they are not public, e.g. `10.20.0.0/16,fd00::/8`; everything "
            "loopback, private, link-local, CGNAT, multicast, unspecified or reserved is "
            "refused otherwise (see [Webhooks](#webhooks))"
        ),
    )
    relay_interval_seconds: float = knob(
        "IMPORTER_RELAY_INTERVAL_SECONDS",
        2.0,
        number(minimum=0.05),
        doc=(
            "how often each worker runs its maintenance pass: heartbeat, sweep, relay, a "
            "release pass of the bulk lane, webhook relay"
        ),
    )
    relay_grace_seconds: float = knob(
        "IMPORTER_RELAY_GRACE_SECONDS",
        5.0,
        number(),
        doc=(
            "how long a chunk not handed over (a failed send, a re-driven or swept chunk) "
            "waits before the relay sends it"
        ),
    )
    redispatch_after_seconds: float = knob(
        "IMPORTER_REDISPATCH_AFTER_SECONDS",
        120.0,
        number(minimum=1),
        doc=("a chunk handed over this long ago and still not started is sent again"),
    )
    stuck_after_seconds: float = knob(
        "IMPORTER_STUCK_AFTER_SECONDS",
        60.0,
        number(minimum=1),
        doc=('a chunk "processing" this long whose row no worker holds is put back'),
    )
    visibility_timeout_seconds: int = knob(
        "IMPORTER_VISIBILITY_TIMEOUT_SECONDS",
        1800,
        integer(minimum=1),
        doc=(
            "Redis visibility timeout: an unacknowledged message is redelivered after it; "
            "longer than any chunk takes"
        ),
    )
    ops_token: str | None = knob(
        "IMPORTER_OPS_TOKEN",
        None,
        text,
        doc=(
            "the token of the [ops page](#the-ops-page) (`/ops`: Basic password or Bearer "
            "token); unset = the page is disabled (`404`)"
        ),
        secret=True,
    )
    log_level: str = knob(
        "IMPORTER_LOG_LEVEL",
        "INFO",
        choice("debug", "info", "warning", "error", upper=True),
        shown="`info`",
        doc=("`debug`, `info`, `warning`, `error`"),
    )
    log_format: str = knob(
        "IMPORTER_LOG_FORMAT",
        "text",
        choice("text", "json"),
        doc=("`text` or `json` (see [Logs](#logs))"),
    )
    metrics_dir: Path | None = knob(
        "IMPORTER_METRICS_DIR",
        None,
        folder,
        shown="`<data dir>/metrics`",
        doc=(
            "the folder every web and worker process writes its metrics to; web and workers "
            "must share it (see [Metrics](#metrics))"
        ),
    )
    metrics_token: str | None = knob(
        "IMPORTER_METRICS_TOKEN",
        None,
        text,
        doc=("when set, `GET /metrics` asks for `Authorization: Bearer <token>`"),
        secret=True,
    )
    rate_limit_requests_per_second: int = knob(
        "IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND",
        0,
        integer(),
        shown="`0` (off)",
        doc=(
            "`/v1` requests per org per second (needs `REDIS_URL`; see [Rate limits](#rate-limits))"
        ),
    )
    rate_limit_records_per_minute: int = knob(
        "IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE",
        0,
        integer(),
        shown="`0` (off)",
        doc=("records per org per minute sent to the import call (needs `REDIS_URL`)"),
    )

    def __post_init__(self) -> None:
        # Defaults that follow from other settings.
        if not self.database_url:
            sqlite = f"sqlite:///{self.data_dir / 'importer.sqlite'}"
            object.__setattr__(self, "database_url", sqlite)
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
        """Every knob from ``environ`` (default: the process's environment), then
        ``overrides`` (by field name) on top."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, spec in knobs().items():
            raw = (env.get(spec.env) or "").strip()
            if raw:
                values[name] = spec.parse(spec.env, raw)
        if "data_dir" not in values:
            # Relative to the working directory, resolved now: each deployment started in
            # a folder of its own keeps its own database, broker folder, metrics and
            # sockets, even when several run from one checkout.
            values["data_dir"] = folder("IMPORTER_DATA_DIR", "var")
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def knobs() -> dict[str, Knob]:
    """Field name -> its declaration, in the declaration's order."""
    return {field.name: field.metadata["knob"] for field in dataclasses.fields(Settings)}


def markdown_table() -> str:
    """The README's configuration table, from the declaration."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k.env}` | {k.shown} | {k.doc} |" for k in knobs().values()]
    return "\n".join(lines)
