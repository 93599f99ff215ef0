"""``importer serve|web|worker|db upgrade|create-org``: run the service, migrate, create orgs.

Configuration comes from ``DATABASE_URL``, ``REDIS_URL`` and ``IMPORTER_*``
variables (see README), read once by :class:`importer.config.Settings`.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from cli.supervisor import STOP_GRACE_SECONDS
from importer import metrics
from importer.config import PROJECT_ROOT, ConfigError, Settings
from importer.logs import GunicornLogger, configure_logging


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


# --- database ---------------------------------------------------------------------


@click.group()
def db() -> None:
    """Database schema."""


def upgrade_database(settings: Settings) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    command.upgrade(config, "head")


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations up to the latest."""
    settings = _settings()
    configure_logging(settings)
    upgrade_database(settings)
    click.echo("database is up to date")


# --- orgs -------------------------------------------------------------------------


@click.command("create-org")
@click.argument("name")
def create_org(name: str) -> None:
    """Create an org and its API key; prints one line of JSON."""
    from importer.db import Database
    from importer.orgs import create_org as make_org

    database = Database.from_settings(_settings())
    with database.session() as session:
        org, api_key = make_org(session, name)
        org_id = org.id
    click.echo(orjson.dumps({"org_id": org_id, "api_key": api_key}).decode())


# --- processes --------------------------------------------------------------------

#: The longest path a Unix socket can have (``sockaddr_un``: 108 bytes with the NUL).
UNIX_PATH_MAX = 107


def control_socket(settings: Settings, port: int) -> Path | None:
    """Where the web process listening on ``port`` keeps gunicorn's control socket (for
    ``gunicornc -s PATH``), or None when that path is too long for a Unix socket.

    gunicorn's default is one path per user (``$XDG_RUNTIME_DIR/gunicorn.ctl`` or
    ``~/.gunicorn/gunicorn.ctl``): every web process on the host would take it over from
    the one before, and remove it when it stops. In the data folder, named by the port
    (two processes on one host cannot both listen on it), it is this process's own.
    """
    path = settings.data_dir / f"gunicorn-{port}.ctl"
    return path if len(os.fsencode(path)) <= UNIX_PATH_MAX else None


def _gunicorn(settings: Settings, host: str, port: int, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    from app import create_app

    socket_path = control_socket(settings, port)
    if socket_path is None:
        logging.getLogger(__name__).warning(
            "no gunicorn control socket: a path in %s is too long for a Unix socket",
            settings.data_dir,
        )
    control: dict[str, Any] = (
        {"control_socket": str(socket_path)} if socket_path else {"control_socket_disable": True}
    )

    class WebApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": settings.web_threads,
                # Longer than the synchronous wait, so a waiting import is never killed.
                "timeout": int(settings.sync_wait_seconds) + 60,
                "graceful_timeout": int(settings.sync_wait_seconds) + 5,
                # gunicorn's lines go through the service's log handler (JSON or text);
                # the app writes one access line per request itself (app.access).
                "logger_class": GunicornLogger,
                "loglevel": settings.log_level.lower(),
                "accesslog": None,
                "errorlog": "-",
                # Metrics: the master empties the folder of an earlier run (if nothing
                # else uses it) before forking; a worker that exits is marked dead.
                "on_starting": lambda server: metrics.clear_stale_files(settings.metrics_path),
                "child_exit": lambda server, worker: metrics.mark_process_dead(worker.pid),
                **control,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    WebApplication().run()


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def web(host: str, port: int) -> None:
    """Run the web front end (gunicorn)."""
    settings = _settings()
    configure_logging(settings)
    metrics.configure(settings)
    _gunicorn(settings, host, port, settings.web_workers)


@click.command()
@click.option(
    "--concurrency",
    type=int,
    default=None,
    help="Processes for the bulk lane (IMPORTER_WORKER_CONCURRENCY); the worker runs "
    "IMPORTER_INTERACTIVE_SLOTS more, which only the interactive lane fills.",
)
@click.option(
    "--name",
    default=None,
    help="Celery node name (default importer-<pid>@<host>: unique, so several workers on "
    "one host are told apart in heartbeats, Flower and `importer status`).",
)
def worker(concurrency: int | None, name: str | None) -> None:
    """Run one Celery worker process (with its pool of children)."""
    settings = _settings()
    configure_logging(settings)
    # Before this process or its pool writes anything (see importer.metrics).
    metrics.clear_stale_files(settings.metrics_path)
    metrics.configure(settings)
    from importer.broker import QUEUES
    from worker.celery_app import create_celery

    celery = create_celery(settings)

    processes = (concurrency or settings.worker_concurrency) + settings.interactive_slots
    options = []
    if settings.log_format == "json":
        # JSON everywhere: no start-up banner (printed, not logged; its facts are in the
        # line below), and the shutdown notices Celery prints become log lines too.
        import celery.apps.worker as celery_worker

        options.append("--quiet")
        celery_worker.safe_say = _say_as_log  # type: ignore[assignment]
        logging.getLogger(__name__).info(
            "starting the worker: %d process(es), queues %s, broker %s",
            processes,
            ",".join(QUEUES),
            "redis" if settings.redis_url else "embedded",
        )
    celery.worker_main(
        [
            *options,
            "worker",
            "--loglevel",
            settings.log_level,
            "--concurrency",
            str(processes),
            # In this order (see importer.broker.QUEUES).
            "--queues",
            ",".join(QUEUES),
            "--hostname",
            name or f"importer-{os.getpid()}@{socket.gethostname()}",
        ]
    )


def _say_as_log(message: str, file: Any = None) -> None:
    logging.getLogger("celery.apps.worker").info(message)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Everything in one: migrate, set up the demo org, run a worker and the API."""
    from importer.db import Database
    from importer.demo import create_demo, demo_exists, sample_curl

    settings = _settings()
    configure_logging(settings)
    metrics.configure(settings)  # the worker started below and the web share the folder
    upgrade_database(settings)
    database = Database.from_settings(settings)
    with database.session() as session:
        if demo_exists(session):
            api_key = None
        else:
            org, api_key = create_demo(session)
            org_id = org.id
    database.dispose()
    base_url = f"http://{host}:{port}"
    if api_key:
        click.echo(
            "\n".join(
                [
                    "",
                    f"Demo org {org_id} created with reports 'vendors', 'services', 'assessments'.",
                    f"Its API key (shown once, keep it): {api_key}",
                    "",
                    "Import sample vendors:",
                    "",
                    sample_curl(base_url, api_key),
                    "",
                ]
            )
        )
    else:
        click.echo(
            "The demo org already exists; its API key was printed on the first start. "
            "Make a new org and key with `importer create-org NAME`, or delete "
            f"{settings.data_dir} to start over."
        )
    # The worker runs under a supervisor that restarts it if it dies (cli/supervisor.py).
    supervisor = subprocess.Popen([sys.executable, "-m", "cli.supervisor"])
    try:
        _gunicorn(settings, host, port, workers=1)
    finally:
        supervisor.terminate()
        try:
            supervisor.wait(timeout=STOP_GRACE_SECONDS + 10)
        except subprocess.TimeoutExpired:
            supervisor.kill()
