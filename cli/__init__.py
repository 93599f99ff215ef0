"""The ``importer`` command line: the service's processes, its database and orgs
(``cli.service``), the operator commands (``cli.operator``), API keys (``cli.keys``),
the retention purge (``cli.purge``) and the push client (the ``push`` package).

Configuration comes from ``DATABASE_URL``, ``REDIS_URL`` and ``IMPORTER_*``
variables (see README), read once by :class:`importer.config.Settings`.
"""

from __future__ import annotations

import importlib

import click

#: Each command, and where it is: a command's module is imported only when it runs,
#: so ``importer status`` loads what it needs and nothing else (the push client, the
#: web server, the key commands stay unread).
COMMANDS = {
    "db": "cli.service:db",
    "create-org": "cli.service:create_org",
    "web": "cli.service:web",
    "worker": "cli.service:worker",
    "serve": "cli.service:serve",
    "push": "push.client:push_command",
    "status": "cli.operator:status_command",
    "batches": "cli.operator:batches_group",
    "keys": "cli.keys:keys_group",
    "purge": "cli.purge:purge_command",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when used (click's documented pattern)."""

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, _, name = where.partition(":")
        try:
            found = importlib.import_module(module)
        except ModuleNotFoundError as missing:
            if module != "push.client":
                raise
            # The push client's libraries are an extra the server does not install.
            raise click.ClickException(
                f"`importer push` needs the client extra ({missing.name} is not installed): "
                "pip install 'bulk-importer[client]' (from a checkout: pip install '.[client]')."
            ) from None
        command: click.Command = getattr(found, name)
        return command


@click.group(cls=LazyGroup)
def main() -> None:
    """Bulk-import service: validate records, upsert them by external_id."""
