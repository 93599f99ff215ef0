"""The memory ``importer push`` spends finding repeated external_ids: its first pass
(``push.client.survey``) over a file of N distinct ids, one of them repeated.

    python -m bench.push_ids [--ids 10000000] [--folder /tmp]

The file is written first; the pass then runs in a fresh process, which reports the
growth of its peak resident memory during the pass (``VmHWM``: what Python allocated
and the allocator kept) and the pass's time. The README quotes the run for 10 million
ids.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def write_ids(path: Path, count: int) -> None:
    """An NDJSON file of ``count`` records with distinct ids, then the first id again."""
    with path.open("wb") as out:
        for start in range(0, count, 100_000):
            stop = min(start + 100_000, count)
            out.write(b"".join(b'{"id": "SUP-%010d"}\n' % n for n in range(start, stop)))
        out.write(b'{"id": "SUP-%010d"}\n' % 0)


def measure(path: Path, count: int) -> None:
    """In the fresh process: the pass, and what it took."""
    from push.client import survey

    before = peak_resident_bytes()
    started = time.monotonic()
    found = survey(path, "ndjson", "id")
    seconds = time.monotonic() - started
    grown = peak_resident_bytes() - before
    assert found.rows == count + 1 and found.duplicate_rows == 2, found
    print(
        f"{count:,} ids (a {path.stat().st_size / 1e6:,.0f} MB file): survey in "
        f"{seconds:.1f} s, peak resident memory +{grown / 1e6:,.0f} MB "
        f"({grown / count:.1f} bytes per id); repeated: {sorted(found.duplicate_ids)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--folder", default=None, help="where to write the file (default: tmp)")
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.ids)
        return
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "ids.ndjson"
        write_ids(path, args.ids)
        command = [sys.executable, "-m", "bench.push_ids", "--ids", str(args.ids)]
        subprocess.run([*command, "--measure", str(path)], check=True)


if __name__ == "__main__":
    main()
