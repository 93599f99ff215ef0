"""Prometheus metrics of every process of the service, in one place.

Every process (gunicorn workers, the Celery worker and its pool processes) writes
its samples to files in one shared folder, ``IMPORTER_METRICS_DIR`` (default
``<IMPORTER_DATA_DIR>/metrics``): prometheus_client's *multiprocess mode*. The web's
``GET /metrics`` adds them all up (:func:`render`) and appends the gauges read at
scrape time from :func:`importer.monitoring.overview` (:class:`OverviewCollector`).

Why :func:`configure` and why it runs first: prometheus_client decides at import
time, from ``PROMETHEUS_MULTIPROC_DIR`` in the environment, whether a metric's value
lives in memory or in a file of that folder, and every value reads the folder from
the environment when it is created. So each process calls :func:`configure` with
its :class:`~importer.config.Settings` when it starts (``importer web``, ``worker``
and ``serve``, and :func:`app.create_app`), before any metric exists: it sets the
variable from the settings (``importer.config`` stays the only reader of the
environment; this is a write, for the library) and installs the file-backed value
class. The metrics themselves are created on first use, after that.

Files are named after the writing process: ``<kind>_<host>-<pid>.db``. The host
part matters when containers share the folder through a volume: every container
numbers its processes from 1, so the pid alone would make two processes of two
containers write the same file.

A process's files outlive it, on purpose: its counts stay in the totals, so a
counter never goes backwards while the service runs (:func:`mark_process_dead` only
drops the files of "live" gauges: the web's waiting requests). The folder is
emptied by :func:`clear_stale_files` when a process family starts and finds nothing
else alive using it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from importer.config import Settings

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from importer.monitoring import Overview

log = logging.getLogger(__name__)

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
_LOCK_FILE = ".lock"

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def _host() -> str:
    """This machine's (container's) name, safe in a file name prometheus_client splits on '_'."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


def process_identifier(pid: int | None = None) -> str:
    """How this process (or ``pid`` of this host) names its files: ``<host>-<pid>``."""
    return f"{_host()}-{os.getpid() if pid is None else pid}"


#: The methods counted under their own name (RFC 9110 and PATCH); any other is ``other``,
#: so a client cannot add a series per method it makes up.
STANDARD_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
)
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    return method if method in STANDARD_METHODS else OTHER_METHOD


class Metrics:
    """Every metric the processes write (the gauges are read at scrape time instead).

    The series whose labels are known in advance start at zero, so every family is in
    the first scrape and a rate over it has a start: records by outcome, record errors
    by code, batch durations by final status (the HTTP series are labelled by what
    requests arrive, and appear with the first)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        from importer.models import BatchStatus, Lane
        from importer.problems import ErrorCode

        self.http_requests = Counter(
            "importer_http_requests",
            "HTTP requests answered, by method, route (the URL rule) and status.",
            ["method", "route", "status"],
            registry=None,
        )
        self.http_duration = Histogram(
            "importer_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=None,
        )
        self.records = Counter(
            "importer_records",
            "Records imported, by outcome (created, updated, failed); dry runs excluded.",
            ["outcome"],
            registry=None,
        )
        self.record_errors = Counter(
            "importer_record_errors",
            "Record errors, by error_code; dry runs excluded.",
            ["error_code"],
            registry=None,
        )
        self.batch_duration = Histogram(
            "importer_batch_duration_seconds",
            "Time from a batch's receipt to its end, by final status.",
            ["status"],
            buckets=BATCH_BUCKETS,
            registry=None,
        )
        self.chunk_duration = Histogram(
            "importer_chunk_duration_seconds",
            "Time a worker took to claim, validate and write a chunk, until its commit.",
            buckets=CHUNK_BUCKETS,
            registry=None,
        )
        self.chunk_wait = Histogram(
            "importer_chunk_wait_seconds",
            "Time from a chunk's acceptance to its first start by a worker, by lane "
            "(interactive, bulk).",
            ["lane"],
            buckets=WAIT_BUCKETS,
            registry=None,
        )
        self.waiting_requests = Gauge(
            "importer_waiting_requests",
            "Requests waiting for a batch now (synchronous imports, ?wait= reads), summed "
            "over the live web processes.",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.waits_declined = Counter(
            "importer_waits_declined",
            "Requests that would have waited for a batch but found every waiting slot of "
            "their web process taken, and were answered at once (202 + Retry-After).",
            registry=None,
        )
        self.purged_rows = Counter(
            "importer_purged_rows",
            "Rows the retention purge deleted, by table (import_chunks: per-record details of "
            "finished batches; import_batches: batch summaries; idempotency_keys; "
            "webhook_deliveries).",
            ["table"],
            registry=None,
        )
        for outcome in RECORD_OUTCOMES:
            self.records.labels(outcome)
        for table in PURGED_TABLES:
            self.purged_rows.labels(table)
        for code in ErrorCode:
            self.record_errors.labels(code.value)
        for lane in Lane:
            self.chunk_wait.labels(lane.value)
        for status in BatchStatus:
            if status.is_done:
                self.batch_duration.labels(status.value)


RECORD_OUTCOMES = ("created", "updated", "failed")
#: The tables the retention purge deletes from (``importer.retention.TABLES``).
PURGED_TABLES = ("import_chunks", "import_batches", "idempotency_keys", "webhook_deliveries")


@dataclass
class _State:
    directory: Path | None = None
    metrics: Metrics | None = None


_state = _State()
_lock = threading.Lock()


def configure(settings: Settings) -> Path:
    """Point this process's metrics at ``settings.metrics_path`` (created if needed).

    Safe to call again: with the same folder it changes nothing (a forked child keeps
    the parent's set-up and opens files of its own on first write).
    """
    directory = settings.metrics_path
    directory.mkdir(parents=True, exist_ok=True)
    with _lock:
        if _state.directory == directory:
            return directory
        from prometheus_client import values

        values.close_all_multiprocess_files()  # any files of an earlier folder
        os.environ[ENV_VAR] = str(directory)
        values.ValueClass = values.MultiProcessValue(process_identifier)
        _state.directory = directory
        _state.metrics = None  # created on first use, in the new folder
    return directory


def reset() -> None:
    """Forget the configuration (tests): metrics are no-ops until configured again."""
    with _lock:
        if _state.directory is None:
            return
        from prometheus_client import values

        values.close_all_multiprocess_files()
        values.ValueClass = values.MutexValue
        os.environ.pop(ENV_VAR, None)
        _state.directory = None
        _state.metrics = None


def directory() -> Path | None:
    return _state.directory


def start() -> None:
    """Create this process's metrics now (in their folder, their known series at zero)
    rather than on first use: a web process does, so its first scrape has them all."""
    _metrics()


def _metrics() -> Metrics | None:
    """The metrics, created on first use; None when the process did not configure them."""
    current = _state.metrics
    if current is not None or _state.directory is None:
        return current
    with _lock:
        if _state.metrics is None and _state.directory is not None:
            _state.metrics = Metrics()
        return _state.metrics


# --- what the processes record ------------------------------------------------------

_F = TypeVar("_F", bound=Callable[..., None])


def _never_raises(record: _F) -> _F:
    """A metric that cannot be written (a full disk, a folder removed) is logged, never
    raised: the import it describes has already happened."""

    @functools.wraps(record)
    def safe(*args: Any, **kwargs: Any) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            log.warning("could not record metric %s", record.__name__, exc_info=True)

    return cast(_F, safe)


@_never_raises
def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    found = _metrics()
    if found is None:
        return
    method = method_label(method)
    found.http_requests.labels(method, route, str(status)).inc()
    found.http_duration.labels(method, route).observe(seconds)


@_never_raises
def count_records(
    *, created: int = 0, updated: int = 0, failed: int = 0, errors: Mapping[str, int] | None = None
) -> None:
    """Add records' outcomes and their errors by code (once per record, after the commit)."""
    found = _metrics()
    if found is None:
        return
    for outcome, count in zip(RECORD_OUTCOMES, (created, updated, failed), strict=True):
        if count:
            found.records.labels(outcome).inc(count)
    for code, count in (errors or {}).items():
        if count:
            found.record_errors.labels(code).inc(count)


@_never_raises
def count_purged(rows: Mapping[str, int]) -> None:
    """Add the rows a purge deleted (after its transactions committed), by table."""
    found = _metrics()
    if found is None:
        return
    for table, count in rows.items():
        if count:
            found.purged_rows.labels(table).inc(count)


@_never_raises
def observe_batch_end(status: str, seconds: float) -> None:
    found = _metrics()
    if found is not None:
        found.batch_duration.labels(status).observe(max(seconds, 0.0))


@_never_raises
def change_waiting(delta: int) -> None:
    found = _metrics()
    if found is not None:
        found.waiting_requests.inc(delta)


@_never_raises
def count_wait_declined() -> None:
    found = _metrics()
    if found is not None:
        found.waits_declined.inc()


@_never_raises
def observe_chunk(seconds: float) -> None:
    found = _metrics()
    if found is not None:
        found.chunk_duration.observe(seconds)


@_never_raises
def observe_chunk_wait(lane: str, seconds: float) -> None:
    found = _metrics()
    if found is not None:
        found.chunk_wait.labels(lane).observe(max(seconds, 0.0))


# --- process lifecycle --------------------------------------------------------------


def mark_process_dead(pid: int, path: Path | None = None) -> None:
    """Book-keeping for a process of this host that exited (gunicorn's ``child_exit``,
    Celery's ``worker_process_shutdown``): drops its "live" gauge files (a web process's
    waiting requests), keeps its counts."""
    folder = path or _state.directory
    if folder is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(process_identifier(pid), str(folder))


_FILE_RE = re.compile(r"^[a-z]+(?:_[a-z]+)?_(?P<host>[A-Za-z0-9.-]+)-(?P<pid>\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM  # exists, owned by someone else
    return True


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    with open(folder / _LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clear_stale_files(folder: Path) -> int:
    """Empty ``folder`` of the files of an earlier run, when that is safe; returns how
    many files were removed.

    Called once per process family as it starts, before it writes anything: by
    gunicorn's master in ``on_starting`` (``importer web`` and ``serve``) and by the
    Celery worker's main process (``importer worker``). Several families may share the
    folder (web and workers on one machine, or containers sharing a volume), so it is
    only emptied when every file in it was written by a process of this host that is
    no longer running (or by this very process). If anything else is alive there, or
    a file comes from another host (whose processes cannot be checked from here),
    everything is kept: deleting a live process's file would lose its later counts,
    and deleting only the dead ones would make the totals go backwards mid-run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    host, me = _host(), os.getpid()
    with _folder_lock(folder):
        files = sorted(folder.glob("*.db"))
        for path in files:
            match = _FILE_RE.match(path.name)
            if match is None or match["host"] != host:
                log.info(
                    "metrics folder %s holds %s, not written by a process of this host; "
                    "keeping its files",
                    folder,
                    path.name,
                )
                return 0
            pid = int(match["pid"])
            if pid != me and _alive(pid):
                log.info(
                    "metrics folder %s is in use by process %s; keeping its files", folder, pid
                )
                return 0
        for path in files:
            path.unlink(missing_ok=True)
    if files:
        log.info("cleared %d metrics file(s) of an earlier run from %s", len(files), folder)
    return len(files)


# --- scrape time --------------------------------------------------------------------


class CachedOverview:
    """``importer.monitoring.overview()`` at most once per ``ttl`` seconds per process:
    scrapes (several Prometheus servers, retries) stay cheap for the database."""

    def __init__(self, load: Callable[[], Overview], ttl: float = 2.0) -> None:
        self.load = load
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._value: Overview | None = None

    def __call__(self) -> Overview:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._at >= self.ttl:
                self._value = self.load()
                self._at = now
            return self._value


class OverviewCollector:
    """The gauges read at scrape time from the overview: queue depths (one queue per
    lane), the oldest queued batch, live workers, the relay's lag, the bulk lane's
    backlog (totals only: per-org figures are on the ops page and in ``importer
    status``, never labels), batches by status."""

    def __init__(self, overview: Callable[[], Overview]) -> None:
        self.overview = overview

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            found = self.overview()
        except Exception:
            log.warning("could not read the overview for the metrics", exc_info=True)
            yield GaugeMetricFamily(
                "importer_overview_up",
                "1 when the overview (database, broker) could be read for this scrape.",
                value=0,
            )
            return
        yield GaugeMetricFamily(
            "importer_overview_up",
            "1 when the overview (database, broker) could be read for this scrape.",
            value=1,
        )
        queues = GaugeMetricFamily(
            "importer_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
        )
        for name, depth in sorted(found.queues.items()):
            if depth is not None:
                queues.add_metric([name], depth)
        yield queues
        oldest = found.oldest_queued_batch
        yield GaugeMetricFamily(
            "importer_oldest_queued_batch_age_seconds",
            "How long the oldest batch no worker has started has waited (0: none waiting).",
            value=float(oldest["age_seconds"]) if oldest else 0.0,
        )
        yield GaugeMetricFamily(
            "importer_workers_live",
            "Workers whose heartbeat is current.",
            value=found.live_workers,
        )
        yield GaugeMetricFamily(
            "importer_relay_lag_seconds",
            "How long the oldest chunk not yet handed to the broker has waited (0: none).",
            value=found.relay_lag_seconds,
        )
        backlog = found.backlog
        for name, text, number in (
            (
                "chunks",
                "Bulk chunks waiting in the backlog (not handed to the broker yet).",
                backlog.chunks,
            ),
            ("records", "Records of the bulk chunks waiting in the backlog.", backlog.records),
            ("orgs", "Orgs with bulk chunks waiting in the backlog.", backlog.orgs),
            ("in_flight", "Bulk chunks handed to the broker or being written.", backlog.in_flight),
        ):
            yield GaugeMetricFamily(f"importer_bulk_backlog_{name}", text, value=number)
        batches = GaugeMetricFamily(
            "importer_batches",
            "Batches queued or processing now, and batches completed or failed in the last hour, "
            "by status.",
            labels=["status"],
        )
        for status, count in sorted(found.batches.items()):
            batches.add_metric([status], count)
        yield batches


def render(extra: Any = None) -> tuple[bytes, str]:
    """Every process's samples added up, and ``extra`` collectors (the overview), in the
    Prometheus text format: (body, content type)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if _state.directory is not None:
        MultiProcessCollector(registry, path=str(_state.directory))
    for collector in extra or ():
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
