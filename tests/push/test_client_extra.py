"""The push client is a package of its own: the server runs without its libraries (the
``client`` extra), and ``importer push`` says how to get them when they are missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Runs ``body`` in a Python where the client extra's libraries cannot be imported.
WITHOUT_CLIENT_LIBRARIES = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("rich", "ijson"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def run(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_CLIENT_LIBRARIES + body],
        cwd=ROOT,
        env={**os.environ, "IMPORTER_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_server_needs_none_of_the_client_libraries(tmp_path):
    ran = run(
        "from app import create_app\n"
        "import worker.celery_app, worker.tasks, cli.service, cli.operator\n"
        "client = create_app().test_client()\n"
        "print(client.get('/healthz').status_code)\n",
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["200"]


def test_importer_push_without_the_extra_says_what_to_install(tmp_path):
    ran = run(
        "import sys\nfrom cli import main\nsys.argv = ['importer', 'push', '--help']\nmain()\n",
        tmp_path,
    )
    assert ran.returncode == 1
    assert "`importer push` needs the client extra" in ran.stderr
    assert "pip install 'bulk-importer[client]'" in ran.stderr
