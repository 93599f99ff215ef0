"""The ``importer`` command line: the service's processes, its database and orgs
(``cli.service``), the operator commands (``cli.operator``), API keys (``cli.keys``),
the retention purge (``cli.purge``) and the push client (``importer.push``).

Configuration comes from ``DATABASE_URL``, ``REDIS_URL`` and ``IMPORTER_*``
variables (see README), read once by :class:`importer.config.Settings`.
"""

from __future__ import annotations

import click

from cli.keys import keys_group
from cli.operator import batches_group, status_command
from cli.purge import purge_command
from cli.service import create_org, db, serve, web, worker
from importer.push import push_command


@click.group()
def main() -> None:
    """Bulk-import service: validate records, upsert them by external_id."""


for command in (
    db,
    create_org,
    web,
    worker,
    serve,
    push_command,
    status_command,
    batches_group,
    keys_group,
    purge_command,
):
    main.add_command(command)
