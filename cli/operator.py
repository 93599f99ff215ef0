"""Operator commands: ``importer status`` and ``importer batches list|show|retry``.

They read ``DATABASE_URL`` and ``REDIS_URL`` like every command, print a table for
a person by default and one JSON object with ``--json``. ``importer status`` is
:func:`importer.monitoring.overview`, the same figures as the ops page and the
metrics.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import click
import orjson
import sqlalchemy as sa

from cli.supervisor import read_state
from importer.broker import CeleryBroker
from importer.config import ConfigError, Settings
from importer.db import Database, unix, utcnow
from importer.formatting import format_age, format_time, table
from importer.listing import bounded_count
from importer.models import BatchStatus, ImportBatch, ImportChunk, Org
from importer.opsdata import short_error
from importer.outcomes import batch_summary

if TYPE_CHECKING:
    from importer.outbox import Outbox

# --- formatting ---------------------------------------------------------------------


def _ago(value: int | None, now: int) -> str:
    return "-" if value is None else f"{format_age(now - value)} ago"


def _percent(done: int, total: int) -> str:
    return f"{100 * done // total}%" if total else "100%"


# --- plumbing -------------------------------------------------------------------------


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as error:
        raise click.UsageError(str(error)) from None


def _database(settings: Settings) -> Database:
    return Database.from_settings(settings)


def _outbox(settings: Settings, database: Database) -> Outbox:
    """Hands work to this deployment's broker, through the one seam (``importer.outbox``)."""
    from importer.outbox import Outbox  # only ``retry`` sends: the other commands load less

    return Outbox(settings, database, CeleryBroker(settings))


# --- importer status ------------------------------------------------------------------


def render_status(data: dict[str, Any]) -> str:
    """``importer status`` for a person, from ``Overview.as_dict()``."""
    now = data["generated_at"]
    lines = [f"Importer status at {format_time(now)}", "", "Queues"]
    lines.append(
        table(
            ["QUEUE", "DEPTH"],
            [
                [name, depth if depth is not None else "unknown (broker unreachable)"]
                for name, depth in data["queues"].items()
            ],
        )
    )
    workers = data["workers"]
    online, lost, stopped = (
        sum(1 for w in workers if w["state"] == state) for state in ("online", "lost", "stopped")
    )
    lines += ["", f"Workers: {online} online, {lost} lost, {stopped} stopped"]
    if workers:
        lines.append(
            table(
                [
                    "NODE",
                    "STATE",
                    "PID",
                    "PROCESSING",
                    "CONCURRENCY",
                    "BULK SLOTS",
                    "QUEUES",
                    "LAST SEEN",
                ],
                [
                    [
                        w["node"],
                        w["state"],
                        str(w["pid"]),
                        w["processing"],
                        w["concurrency"],
                        w["bulk_slots"],
                        ",".join(w["queues"]),
                        _ago(w["last_seen_at"], now),
                    ]
                    for w in workers
                ],
            )
        )
    else:
        lines.append("  (no worker has reported in the last 24 hours)")
    backlog = data["backlog"]
    lines += [
        "",
        f"Bulk lane: {backlog['chunks']:,} chunk(s) ({backlog['records']:,} records) waiting "
        f"in {backlog['orgs']:,} org(s); {backlog['in_flight']:,} in flight",
    ]
    if backlog["top"]:
        lines.append(
            table(
                ["ORG", "NAME", "WAITING CHUNKS", "WAITING RECORDS", "IN FLIGHT"],
                [
                    [o["org_id"], o["org_name"] or "-", o["chunks"], o["records"], o["in_flight"]]
                    for o in backlog["top"]
                ],
            )
        )
    lines += ["", "Batches (queued and processing now; completed and failed in the last hour)"]
    lines.append(table(["STATUS", "BATCHES"], [[s, n] for s, n in data["batches"].items()]))
    oldest = data["oldest_queued_batch"]
    lines.append("")
    if oldest is None:
        lines.append("Oldest queued batch: none")
    else:
        lines.append(
            f"Oldest queued batch: {oldest['batch_id']}, waiting "
            f"{format_age(oldest['age_seconds'])} (since {format_time(oldest['received_at'])})"
        )
        lines.append(f"  report {oldest['slug']}, org {oldest['org_id']}")
    lines.append(f"Relay lag: {data['relay_lag_seconds']:.1f} s")
    supervised = data.get("worker_supervisor")
    if supervised is not None:
        lines += ["", *_render_supervisor(supervised, now)]
    return "\n".join(lines)


def _render_supervisor(state: dict[str, Any], now: int) -> list[str]:
    if not state["running"]:
        stopped = state["stopped_at"]
        since = f" since {format_time(stopped)}" if stopped else " (its process is gone)"
        head = f"Worker supervisor (importer serve): not running{since}"
    elif state["worker_pid"] is not None:
        head = (
            f"Worker supervisor (importer serve): worker pid {state['worker_pid']}, "
            f"started {_ago(state['worker_started_at'], now)}"
        )
    else:
        head = (
            "Worker supervisor (importer serve): worker down, restarting at "
            f"{format_time(state['next_start_at'])}"
        )
    lines = [head, f"  restarts: {state['restarts']}"]
    if state["last_death_at"] is not None:
        lines.append(
            f"  last worker death: {_ago(state['last_death_at'], now)} "
            f"({format_time(state['last_death_at'])}), {state['last_death_reason']}"
        )
    return lines


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
def status_command(as_json: bool) -> None:
    """Queues, workers, the bulk lane's backlog, batches queued and running (and finished
    in the last hour), the oldest queued batch, the relay's lag, and the restarts of the
    worker of `importer serve`."""
    from importer.monitoring import overview

    settings = _settings()
    database = _database(settings)
    try:
        with database.session() as session:
            data = overview(session, settings, CeleryBroker(settings)).as_dict()
    finally:
        database.dispose()
    # Only when `importer serve` ran on this data dir: restarts of its worker.
    data["worker_supervisor"] = read_state(settings)
    if as_json:
        click.echo(orjson.dumps(data).decode())
    else:
        click.echo(render_status(data))


# --- importer batches -----------------------------------------------------------------


@click.group("batches")
def batches_group() -> None:
    """Look at batches of every org, and re-drive one."""


def _list_item(batch: ImportBatch, org_name: str | None, now: dt.datetime) -> dict[str, Any]:
    item = batch_summary(batch)
    item["org_id"] = batch.org_id
    item["org_name"] = org_name
    item["age_seconds"] = round((now - batch.received_at).total_seconds(), 1)
    return item


@batches_group.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in BatchStatus]),
    help="Only batches in this status.",
)
@click.option("--org", "org_id", help="Only this org's batches (cborg_...).")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def list_batches(status: str | None, org_id: str | None, limit: int, as_json: bool) -> None:
    """Batches of every org, newest first."""
    conditions = []
    if status:
        conditions.append(ImportBatch.status == BatchStatus(status))
    if org_id:
        conditions.append(ImportBatch.org_id == org_id)
    database = _database(_settings())
    now = utcnow()
    try:
        with database.session() as session:
            # Counted up to COUNT_BOUND (one index range), never across the whole history.
            total, more = bounded_count(session, sa.select(ImportBatch).where(*conditions))
            rows = session.execute(
                sa.select(ImportBatch, Org.name)
                .join(Org, Org.id == ImportBatch.org_id)
                .where(*conditions)
                .order_by(ImportBatch.seq.desc())
                .limit(limit)
            ).all()
            items = [_list_item(batch, name, now) for batch, name in rows]
    finally:
        database.dispose()
    if as_json:
        click.echo(
            orjson.dumps(
                {"items": items, "total": total, "total_is_lower_bound": more, "limit": limit}
            ).decode()
        )
        return
    if not items:
        click.echo("No batches.")
        return
    click.echo(
        table(
            [
                "BATCH",
                "ORG",
                "REPORT",
                "STATUS",
                "PROGRESS",
                "RECEIVED",
                "CREATED",
                "UPDATED",
                "FAILED",
                "AGE",
            ],
            [
                [
                    item["batch_id"],
                    item["org_name"] or item["org_id"],
                    item["slug"] + (" (dry run)" if item["dry_run"] else ""),
                    item["status"],
                    _percent(item["progress"]["processed"], item["progress"]["total"]),
                    item["received_count"],
                    item["created_count"],
                    item["updated_count"],
                    item["failed_count"],
                    format_age(item["age_seconds"]),
                ]
                for item in items
            ],
            indent="",
        )
    )
    if total > len(items):
        click.echo(f"({len(items)} of {total:,}{'+' if more else ''}; --limit for more)")


def _chunk_item(chunk: ImportChunk) -> dict[str, Any]:
    return {
        "position": chunk.position,
        "status": chunk.status.value if hasattr(chunk.status, "value") else chunk.status,
        "start_index": chunk.start_index,
        "end_index": chunk.end_index,
        "records": chunk.record_count,
        "attempts": chunk.attempts,
        "claimed_by": chunk.claimed_by,
        "last_error": chunk.last_error,
        "dispatched_at": unix(chunk.dispatched_at),
        "started_at": unix(chunk.started_at),
        "finished_at": unix(chunk.finished_at),
    }


def _one_line(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@batches_group.command("show")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
def show_batch(batch_id: str, as_json: bool) -> None:
    """A batch (without its per-record lists) and its chunks."""
    database = _database(_settings())
    try:
        with database.session() as session:
            found = session.execute(
                sa.select(ImportBatch, Org.name)
                .join(Org, Org.id == ImportBatch.org_id)
                .where(ImportBatch.id == batch_id)
            ).one_or_none()
            if found is None:
                raise click.ClickException(f"No batch {batch_id!r}.")
            batch, org_name = found
            summary = _list_item(batch, org_name, utcnow())
            chunks = [
                _chunk_item(chunk)
                for chunk in session.scalars(
                    sa.select(ImportChunk)
                    .where(ImportChunk.batch_id == batch_id)
                    .order_by(ImportChunk.position)
                )
            ]
    finally:
        database.dispose()
    if as_json:
        click.echo(orjson.dumps({"batch": summary, "chunks": chunks}).decode())
        return
    now = unix(utcnow()) or 0
    progress = summary["progress"]
    fields = [
        ("org", f"{summary['org_id']} ({summary['org_name']})"),
        (
            "report",
            f"{summary['slug']} ({summary['report_name']}, {summary['base_object']}, "
            f"version {summary['report_version']})",
        ),
        ("status", summary["status"] + (" (dry run)" if summary["dry_run"] else "")),
        (
            "records",
            f"{summary['received_count']:,} received: {summary['created_count']:,} created, "
            f"{summary['updated_count']:,} updated, {summary['failed_count']:,} failed",
        ),
        (
            "progress",
            f"{progress['processed']:,} / {progress['total']:,} "
            f"({_percent(progress['processed'], progress['total'])})",
        ),
        ("errors", f"{summary['errors_total']:,}  warnings {summary['warnings_total']:,}"),
        (
            "received at",
            f"{format_time(summary['received_at'])} ({_ago(summary['received_at'], now)})",
        ),
        ("completed at", format_time(summary["completed_at"])),
    ]
    width = max(len(name) for name, _ in fields)
    click.echo(f"Batch {batch_id}")
    for name, value in fields:
        click.echo(f"  {name.ljust(width)}  {value}")
    click.echo("")
    click.echo(f"Chunks ({len(chunks)})")
    click.echo(
        table(
            ["POS", "STATUS", "RECORDS", "ATTEMPTS", "CLAIMED BY", "LAST ERROR"],
            [
                [
                    chunk["position"],
                    chunk["status"],
                    f"{chunk['start_index']}-{chunk['end_index'] - 1}",
                    chunk["attempts"],
                    chunk["claimed_by"] or "-",
                    _one_line(short_error(chunk["last_error"]), 100),
                ]
                for chunk in chunks
            ],
        )
    )


@batches_group.command("retry")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a sentence.")
def retry_batch(batch_id: str, as_json: bool) -> None:
    """Re-drive a batch: its failed chunks are written again, its unfinished chunks
    nobody is writing are sent again. Safe to run any number of times."""
    from importer.redrive import BatchNotFound

    settings = _settings()
    database = _database(settings)
    try:
        try:
            done = _outbox(settings, database).redrive(batch_id)
        except BatchNotFound:
            raise click.ClickException(f"No batch {batch_id!r}.") from None
    finally:
        database.dispose()
    if as_json:
        click.echo(orjson.dumps(done.as_dict()).decode())
    else:
        click.echo(done.describe())
