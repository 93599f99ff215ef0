"""The deployment files, checked statically: docker-compose.yml, Procfile, Dockerfile
and .dockerignore. No Docker engine is needed; what a wrong file would break at
deploy time is asserted here instead."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from cli import main
from importer.config import PROJECT_ROOT

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"postgres", "redis", "migrate", "web", "worker", "flower"}
APP_SERVICES = ("migrate", "web", "worker")
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"


# --- parsing helpers --------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def argv(command: str | list[str] | None) -> list[str]:
    """A compose ``command`` (string or list) or a Procfile command, as argv."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(word) for word in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Each dependency with its condition (a plain list means ``service_started``)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port, from the short or the long ``ports`` syntax."""
    ports: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports[int(entry["target"])] = int(entry.get("published", entry["target"]))
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) >= 2, f"port {entry!r} is not published on a fixed host port"
        ports[int(parts[-1])] = int(parts[-2])
    return ports


def healthcheck_words(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    return argv(test) if isinstance(test, str) else [str(word) for word in test]


def option(words: list[str], name: str) -> str | None:
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def procfile(strict: bool = True) -> dict[str, str]:
    """Process name -> command. ``strict=False`` skips malformed lines (for collection,
    where :func:`test_procfile_lines_are_name_colon_command` reports them instead)."""
    processes: dict[str, str] = {}
    for number, line in enumerate((ROOT / "Procfile").read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(\S.*)", line)
        if not strict and not match:
            continue
        assert match, f"Procfile line {number} is not `name: command`: {line!r}"
        name, command = match.groups()
        assert name not in processes, f"Procfile defines {name!r} twice"
        processes[name] = command
    return processes


def shell_defaults(command: str) -> str:
    """Replace ``${VAR:-default}`` by its default, as the shell does with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", command)


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, line continuations joined, comments dropped."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (or a folder above it) out of the context."""
    ignore_file = ROOT / ".dockerignore"
    if not ignore_file.exists():
        return False
    parts = path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for raw in ignore_file.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(
                fnmatch.fnmatch(candidate.rsplit("/", 1)[-1], pattern[3:])
                for candidate in candidates
            )
        else:
            hit = any(fnmatch.fnmatch(candidate, pattern) for candidate in candidates)
        if hit:
            excluded = not negated
    return excluded


def check_importer_command(words: list[str], where: str) -> None:
    """``importer ...`` must name real commands of the click group, with valid options."""
    assert words[0] == "importer", where
    command: click.Command = main
    path = ["importer"]
    rest = words[1:]
    while isinstance(command, click.Group):
        assert rest, f"{where}: `{' '.join(path)}` needs a subcommand"
        name, *rest = rest
        found = command.get_command(None, name)
        assert found is not None, f"{where}: `{' '.join(path)}` has no command {name!r}"
        command = found
        path.append(name)
    # Parses the options and arguments as the real command would, without running it.
    command.make_context(" ".join(path), list(rest))


# --- docker-compose.yml -----------------------------------------------------------


def test_compose_defines_the_six_services(services):
    assert SERVICES <= set(services)


def test_every_dependency_is_a_defined_service(services):
    for name, service in services.items():
        for target in depends_on(service):
            assert target in services, f"{name} depends on undefined service {target!r}"


def test_every_healthcheck_has_a_test_command(services):
    for name, service in services.items():
        if "healthcheck" in service and not service["healthcheck"].get("disable"):
            words = healthcheck_words(service)
            assert words, f"{name}'s healthcheck has no test"
            if words[0] in {"CMD", "CMD-SHELL"}:
                assert len(words) > 1, f"{name}'s healthcheck has no command after {words[0]}"


def test_postgres_and_redis_have_healthchecks(services):
    assert "pg_isready" in healthcheck_words(services["postgres"])
    redis_check = healthcheck_words(services["redis"])
    assert "redis-cli" in redis_check and "ping" in redis_check
    assert services["postgres"].get("volumes"), "the database must live on a volume"


@pytest.mark.parametrize("name", ["web", "worker"])
def test_web_and_worker_wait_for_healthy_stores_and_a_finished_migration(services, name):
    conditions = depends_on(services[name])
    assert conditions.get("postgres") == HEALTHY
    assert conditions.get("redis") == HEALTHY
    assert conditions.get("migrate") == COMPLETED


def test_migrate_is_a_one_shot_upgrade_after_postgres(services):
    migrate = services["migrate"]
    assert argv(migrate["command"])[:3] == ["importer", "db", "upgrade"]
    assert depends_on(migrate).get("postgres") == HEALTHY
    # Unquoted `no` is YAML for false, which compose rejects; any other policy would
    # rerun the migration forever after it succeeds.
    assert migrate.get("restart") == "no"


def test_web_runs_the_front_end_on_the_port_it_publishes(services):
    web = services["web"]
    words = argv(web["command"])
    assert words[:2] == ["importer", "web"]
    port = int(option(words, "--port") or 8000)
    assert option(words, "--host") == "0.0.0.0", "bound to loopback, unreachable from outside"
    assert published_ports(web).get(port) == 8000


def test_web_healthcheck_asks_readyz_without_curl(services):
    words = healthcheck_words(services["web"])
    joined = " ".join(words)
    assert "/readyz" in joined
    assert ":8000/" in joined
    # python:3.11-slim ships neither curl nor wget.
    assert not {"curl", "wget"} & set(re.split(r"[\s;|&]+", joined))


def test_worker_is_scalable_and_runs_the_celery_worker(services):
    worker = services["worker"]
    assert argv(worker["command"])[:2] == ["importer", "worker"]
    assert "container_name" not in worker, "a fixed name forbids --scale worker=N"
    assert not worker.get("ports"), "fixed host ports forbid --scale worker=N"


def test_flower_watches_the_broker_on_5555(services):
    flower = services["flower"]
    words = argv(flower["command"])
    assert "flower" in words
    assert words[0] == "celery"
    assert "worker.app" in words or any(word.startswith("--broker=redis://") for word in words)
    assert published_ports(flower).get(5555) == 5555
    assert depends_on(flower).get("redis") == HEALTHY


def test_flower_is_published_on_the_hosts_loopback_only(services):
    for entry in services["flower"]["ports"]:
        assert str(entry).startswith("127.0.0.1:"), f"Flower published beyond loopback: {entry}"


def test_flowers_api_needs_the_login_the_operator_passes_through(services, monkeypatch):
    flower_views = pytest.importorskip("flower.views")
    from flower.command import is_flower_envvar

    declared = services["flower"]["environment"]
    # No value: compose passes FLOWER_BASIC_AUTH from where it runs, and leaves it unset
    # when it is not set there (an empty value would be a login nobody has).
    assert "FLOWER_BASIC_AUTH" in declared and declared["FLOWER_BASIC_AUTH"] is None
    assert is_flower_envvar("FLOWER_BASIC_AUTH")  # the name Flower reads its login from
    # Set, and off, on purpose: on, Flower would answer its API without a login, to pages
    # of any origin.
    monkeypatch.setenv("FLOWER_UNAUTHENTICATED_API", declared["FLOWER_UNAUTHENTICATED_API"])
    assert not flower_views.BaseHandler.unauthenticated_api.fget(None)
    # Flower loads worker.app: it keeps the app services' broker.
    assert (
        environment(services["flower"])["REDIS_URL"] == environment(services["worker"])["REDIS_URL"]
    )


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_reach_postgres_and_redis_by_service_name(services, name):
    env = environment(services[name])
    database, broker = urlsplit(env["DATABASE_URL"]), urlsplit(env["REDIS_URL"])
    assert database.scheme.startswith("postgres")
    assert database.hostname == "postgres" and "postgres" in services
    assert broker.scheme == "redis"
    assert broker.hostname == "redis" and "redis" in services
    # The credentials must be those the postgres container is created with.
    postgres = environment(services["postgres"])
    assert database.username == postgres.get("POSTGRES_USER", "postgres")
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.path.lstrip("/") == postgres.get("POSTGRES_DB", database.username)
    assert env.get("IMPORTER_LOG_FORMAT") == "json"


def named_volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume, from the short or the long ``volumes`` syntax."""
    mounts: dict[str, str] = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            if entry.get("type", "volume") == "volume":
                mounts[entry["target"]] = entry["source"]
            continue
        source, _, target = str(entry).partition(":")
        if target and not source.startswith((".", "/", "~")):
            mounts[target.split(":")[0]] = source
    return mounts


def test_web_and_workers_share_one_metrics_volume(compose, services):
    """Every process writes its metrics to IMPORTER_METRICS_DIR and the web adds them
    up: web and every worker container must see the same folder."""
    folders = {
        environment(services[name]).get("IMPORTER_METRICS_DIR") for name in ("web", "worker")
    }
    assert len(folders) == 1 and None not in folders, folders
    (folder,) = folders
    volumes = {named_volume_mounts(services[name]).get(folder) for name in ("web", "worker")}
    assert len(volumes) == 1 and None not in volumes, f"{folder} is not one shared named volume"
    (volume,) = volumes
    assert volume in (compose.get("volumes") or {}), f"volume {volume!r} is not declared"
    # A new named volume takes the owner of the image's folder: it must be the
    # service's (non-root) user, or nothing could write there.
    instructions = dockerfile()
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert re.search(rf"mkdir -p \S*{re.escape(folder)}", runs), runs
    user = [arguments for keyword, arguments in instructions if keyword == "USER"][-1]
    assert re.search(rf"chown -R {user}:\S+ /app/var\b", runs)
    assert folder.startswith("/app/var/")


def test_app_services_share_one_image_built_from_the_dockerfile(services):
    images = {services[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1 and None not in images
    for name in APP_SERVICES:
        build = services[name].get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        assert context in {".", "./"}, f"{name} must build from the repository's Dockerfile"


# --- Procfile ---------------------------------------------------------------------


def test_procfile_lines_are_name_colon_command():
    assert procfile()


def test_procfile_runs_web_worker_and_release():
    processes = procfile()
    web = shlex.split(shell_defaults(processes["web"]))
    assert web[:2] == ["importer", "web"]
    assert option(web, "--host") == "0.0.0.0"
    assert "${PORT" in processes["web"], "the platform assigns the port in $PORT"
    assert shlex.split(processes["worker"])[:2] == ["importer", "worker"]
    assert shlex.split(processes["release"])[:3] == ["importer", "db", "upgrade"]


# --- every importer command they run exists ---------------------------------------


def deployed_importer_commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in document["services"].items():
        words = argv(service.get("command"))
        if words[:1] == ["importer"]:
            found.append((f"docker-compose.yml {name}", words))
    for name, command in procfile(strict=False).items():
        words = shlex.split(shell_defaults(command))
        if words[:1] == ["importer"]:
            found.append((f"Procfile {name}", words))
    for keyword, arguments in dockerfile():
        if keyword in {"CMD", "ENTRYPOINT"} and arguments.startswith("["):
            words = json.loads(arguments)
            if words[:1] == ["importer"]:
                found.append((f"Dockerfile {keyword}", words))
    return found


def test_deployment_files_run_importer_commands():
    where = {place.split()[0] for place, _ in DEPLOYED_IMPORTER_COMMANDS}
    assert where == {"docker-compose.yml", "Procfile", "Dockerfile"}


DEPLOYED_IMPORTER_COMMANDS = deployed_importer_commands()


@pytest.mark.parametrize(
    ("where", "words"),
    DEPLOYED_IMPORTER_COMMANDS,
    ids=[place for place, _ in DEPLOYED_IMPORTER_COMMANDS],
)
def test_importer_commands_exist_in_the_cli(where, words):
    assert words[1] in main.list_commands(None), f"{where}: no `importer {words[1]}` command"
    check_importer_command(words, where)


def test_the_cli_check_rejects_unknown_commands_and_options():
    with pytest.raises(AssertionError):
        check_importer_command(["importer", "db", "migrate"], "example")
    with pytest.raises(click.NoSuchOption):
        check_importer_command(["importer", "worker", "--port", "1"], "example")


# --- Dockerfile -------------------------------------------------------------------


def test_dockerfile_image_holds_the_migrations_where_the_cli_reads_them():
    # `importer db upgrade` opens PROJECT_ROOT / "alembic.ini", PROJECT_ROOT being the
    # parent of the importer package: the source tree must be installed in place.
    assert (PROJECT_ROOT / "alembic.ini").is_file() and (PROJECT_ROOT / "migrations").is_dir()
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    sources = {
        source
        for keyword, arguments in instructions
        if keyword in {"COPY", "ADD"}
        for source in [word for word in arguments.split() if not word.startswith("--")][:-1]
    }
    for needed in (
        "alembic.ini",
        "migrations",
        "importer",
        "app",
        "worker",
        "cli",
        "pyproject.toml",
    ):
        if "." in sources:
            assert not dockerignored(needed), f".dockerignore leaves {needed} out of the image"
        else:
            assert needed in sources or f"{needed}/" in sources, f"the image lacks {needed}"
    # pyproject.toml names README.md as the readme: the build fails without it.
    assert not dockerignored("README.md")
    installs = [
        args for keyword, args in instructions if keyword == "RUN" and "pip install" in args
    ]
    assert any(re.search(r"(\s-e|--editable)\s+['\"]?\.", args) for args in installs), (
        "a non-editable install puts importer/ in site-packages, away from alembic.ini"
    )


def test_dockerignore_keeps_local_state_out_of_the_image():
    for path in (".git", ".venv", "var", "importer/__pycache__"):
        assert dockerignored(path), f"{path} would be copied into the image"


def test_dockerfile_runs_as_a_non_root_user_and_serves_on_8000():
    instructions = dockerfile()
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any(
        keyword == "EXPOSE" and "8000" in arguments.split() for keyword, arguments in instructions
    )
    commands = [json.loads(arguments) for keyword, arguments in instructions if keyword == "CMD"]
    assert commands and commands[-1][:2] == ["importer", "web"]
