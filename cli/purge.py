"""``importer purge``: the retention purge the workers run every minute, by hand."""

from __future__ import annotations

import click
import orjson

from importer.config import ConfigError, Settings
from importer.db import Database, utcnow


@click.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what is due; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a sentence.")
def purge_command(dry_run: bool, as_json: bool) -> None:
    """Delete the bookkeeping past its retention: per-record details of batches finished
    more than IMPORTER_BATCH_DETAIL_RETENTION_DAYS ago, batch summaries older than
    IMPORTER_BATCH_RETENTION_DAYS, expired idempotency keys, webhook deliveries older
    than IMPORTER_WEBHOOK_DELIVERY_RETENTION_DAYS. Objects are never purged. Runs in
    small transactions, safe while imports and the workers' own purge run."""
    from importer import retention

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    database = Database.from_settings(settings)
    try:
        if dry_run:
            with database.session() as session:
                found = retention.count_due(session, retention.Cutoffs.of(settings, utcnow()))
        else:
            found = retention.purge(database, settings)
    finally:
        database.dispose()
    if as_json:
        click.echo(orjson.dumps({"dry_run": dry_run, **found.as_dict()}).decode())
    else:
        click.echo(("Would delete " if dry_run else "Deleted ") + found.describe() + ".")
