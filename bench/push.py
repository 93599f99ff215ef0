"""``importer push`` against plain posting, in the same run, on the distributed deployment.

Imports of the same number of new 10-field vendor records into one org:

* the baseline: a CSV file's records posted as a plain script would post them, as
  back-to-back batches of ``--batch-size`` records (each batch read from the file with
  ``csv.DictReader``, encoded as JSON and posted; nothing read back), then each batch
  waited for; records/s from the start to the last completion;
* push: a CSV file of as many records pushed with :func:`push.client.push_file`, as
  ``importer push`` does (repeated ids found first, chunks sent, waited for and read back,
  results.csv and errors.csv written); records/s from start to end of the push.

After a warm-up import (not measured), the two alternate for ``--rounds`` rounds
(file posted, push, file posted, push, ..., file posted), and each push is compared
with the mean of the postings just before and just after it: each import adds its
records to ``vendors``, so a push meets a table as large, on average, as its two
baselines do, and a slow spell of the machine weighs on both sides of a ratio. The
median ratio is the figure. This server runs with autovacuum off: between the phases
the script runs the VACUUM (ANALYZE)s autovacuum would have run by then
(``bench.stack.autovacuum_pass``); without them, the second import's key reads are
planned on a table the planner thinks empty and scan the org's rows (measured: plain
posting at 22,100 records/s run after a push, 32,700 run first).

Prints the figures and the ratios (target: push >= 0.9 x posting the file's records),
and the CPU seconds of each phase by process: the client (this process), the web, the
workers and this database's PostgreSQL backends. On two cores the service is
CPU-bound, so what a push costs beyond a plain script is CPU the workers lose.

With ``--flood``, another org posts 100,000-record batches back to back (every other
one changing every value, so each is real work) for the whole run, as in the issue's
report of a push during another org's flood: both sides then get the share of the
workers the scheduler gives an org.

    python -m bench.push [--records 300000] [--batch-size 100000] [--chunk-size 20000]
                         [--concurrency 4] [--window 16] [--rounds 3] [--flood]
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.data import MAPPING, record, records
from bench.stack import (
    Vacuums,
    autovacuum_pass,
    backend_pids,
    children,
    cpu_seconds,
    deployment,
    new_org,
)
from push.client import CHUNK_SIZE, PushOptions, push_file
from tests.integration.stack import Api


def post_async(api: Api, slug: str, body: bytes) -> str:
    """POST one batch, answered 202 at once (``Prefer: respond-async``): its batch_id."""
    response = api.post(
        f"/v1/import/{slug}",
        data=body,
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
        timeout=600,
    )
    if response.status_code != 202:
        raise RuntimeError(f"import answered {response.status_code}: {response.text[:300]}")
    batch_id: str = response.json()["batch_id"]
    return batch_id


def wait_completed(api: Api, batch_ids: list[str]) -> None:
    """Wait for each batch; every record must have been written."""
    for batch_id in batch_ids:
        done = api.wait_done(batch_id, timeout=1800)
        if done["status"] != "completed" or done["failed_count"]:
            raise RuntimeError(f"batch {batch_id}: {done['status']}, {done['failed_count']} failed")


def post_back_to_back(api: Api, slug: str, start: int, count: int, batch_size: int) -> float:
    """Records/s of the records posted as back-to-back batches, nothing read back."""
    bodies = [
        orjson.dumps({"data": records(first, min(batch_size, start + count - first))})
        for first in range(start, start + count, batch_size)
    ]
    began = time.perf_counter()
    wait_completed(api, [post_async(api, slug, body) for body in bodies])
    return count / (time.perf_counter() - began)


def post_file_back_to_back(api: Api, slug: str, path: Path, batch_size: int) -> float:
    """Records/s of a CSV file's records posted as back-to-back batches, as a plain
    script would post them: each batch read from the file (``csv.DictReader``), encoded
    and posted, then each batch waited for; nothing read back."""
    began = time.perf_counter()
    batch_ids = []
    count = 0
    with path.open(encoding="utf-8", newline="") as stream:
        rows = csv.DictReader(stream)
        while batch := list(itertools.islice(rows, batch_size)):
            count += len(batch)
            batch_ids.append(post_async(api, slug, orjson.dumps({"data": batch})))
    wait_completed(api, batch_ids)
    return count / (time.perf_counter() - began)


def write_file(path: Path, start: int, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(MAPPING.values()))
        writer.writeheader()
        for n in range(start, start + count):
            writer.writerow(record(n))


def push(
    api: Api, slug: str, path: Path, chunk_size: int, concurrency: int, window: int
) -> tuple[float, int]:
    """(records/s, result lines) of ``importer push`` of the file."""
    options = PushOptions(
        slug=slug,
        path=path,
        url=api.base_url,
        api_key=api.session.headers["Authorization"].split()[1],  # type: ignore[union-attr]
        fmt="csv",
        chunk_size=chunk_size,
        concurrency=concurrency,
        window=window,
    )
    summary = push_file(options)
    if summary.failed or summary.written != summary.read:
        raise RuntimeError(summary.text())
    lines = sum(1 for _ in summary.results_path.open()) - 1
    return summary.read / summary.seconds, lines


def flood_until(api: Api, slug: str, stop: threading.Event) -> int:
    """Another org's 100,000-record batches, back to back, each waited for, until
    ``stop``: how many it posted."""
    bodies = [orjson.dumps({"data": records(60_000_000, 100_000, generation=g)}) for g in (0, 1)]
    posted = 0
    while not stop.is_set():
        wait_completed(api, [post_async(api, slug, bodies[posted % 2])])
        posted += 1
    return posted


def own_cpu_seconds() -> float:
    """This process's CPU and its ended children's: the push's survey runs in a child
    process (the web and workers, alive until the end, are not counted here)."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--flood", action="store_true", help="another org floods the service meanwhile"
    )
    args = parser.parse_args()
    stop = threading.Event()
    floods: list[int] = []
    posted: list[float] = []
    pushed: list[float] = []
    cpu: list[tuple[str, dict[str, float]]] = []

    with deployment(IMPORTER_WEB_WORKERS="2") as stack, tempfile.TemporaryDirectory() as folder:
        worker = stack.start_worker(concurrency=2)
        web = stack.start_web()
        api = new_org(stack)
        slug = api.create_report("vendor", MAPPING)
        url = stack.env["DATABASE_URL"]
        pids = {"web": children(web), "workers": children(worker)}
        files = []
        for phase in range(2 * args.rounds + 1):  # new records in every phase
            files.append(Path(folder) / f"phase-{phase}.csv")
            write_file(files[-1], 100_000_000 + phase * args.records, args.records)

        def measure(name: str, run: Callable[[], Any]) -> Any:
            backends = backend_pids(url)

            def spent() -> dict[str, float]:
                so_far = {k: cpu_seconds(v) for k, v in pids.items()}
                return so_far | {"client": own_cpu_seconds(), "postgres": cpu_seconds(backends)}

            before = spent()
            result = run()
            after = spent()
            cpu.append((name, {k: after[k] - before[k] for k in after}))
            autovacuum_pass(url, vacuums)
            return result

        vacuums = Vacuums()
        flooder = None
        if args.flood:
            other = new_org(stack)
            other_slug = other.create_report("vendor", MAPPING)
            flooder = threading.Thread(
                target=lambda: floods.append(flood_until(other, other_slug, stop)), daemon=True
            )
            flooder.start()
        # Warm-up, not measured: the deployment's first import (pools, caches), and as
        # many rows as a phase adds, so no phase starts on a table it will multiply
        # (the planner's statistics lag behind growth until autovacuum comes by).
        post_back_to_back(api, slug, 40_000_000, args.records, args.batch_size)
        autovacuum_pass(url, vacuums)
        for phase, path in enumerate(files):
            if phase % 2 == 0:
                posted.append(
                    measure(
                        f"file posted {phase // 2 + 1}",
                        functools.partial(post_file_back_to_back, api, slug, path, args.batch_size),
                    )
                )
                continue
            rate, lines = measure(
                f"push {phase // 2 + 1}",
                functools.partial(
                    push, api, slug, path, args.chunk_size, args.concurrency, args.window
                ),
            )
            if lines != args.records:
                raise RuntimeError(f"results.csv has {lines:,} lines for {args.records:,} records")
            pushed.append(rate)
        stop.set()
        if flooder is not None:
            flooder.join()
    ratios = [rate / ((posted[n] + posted[n + 1]) / 2) for n, rate in enumerate(pushed)]

    print(
        f"Push vs plain posting: {args.records:,} new vendor records each, one org, "
        "2 worker processes, 2 web processes"
        + (
            f"; another org flooding all along ({floods[0] if floods else 0} batches of "
            "100,000 records)"
            if args.flood
            else ""
        )
    )
    print(
        f"  a CSV file's records posted as {args.batch_size:,}-record batches back to back "
        "(each read with csv.DictReader and encoded, then posted), nothing read back: "
        + ", ".join(f"{rate:,.0f}" for rate in posted)
        + " records/s"
    )
    print(
        f"  importer push of a CSV file (--chunk-size {args.chunk_size:,}, "
        f"--concurrency {args.concurrency}, --window {args.window}; every result read back "
        "and written), between them: " + ", ".join(f"{rate:,.0f}" for rate in pushed) + " records/s"
    )
    print(
        "  push / posting the file's records (the mean of the postings before and after "
        "each push): "
        + ", ".join(f"{ratio:.2f}" for ratio in ratios)
        + f"; median {statistics.median(ratios):.2f}  (target >= 0.9)"
    )
    print(
        f"  autovacuum off on this server: between phases, {len(vacuums.runs)} VACUUM (ANALYZE) "
        f"and ANALYZE autovacuum would have run ({vacuums.seconds:.1f} s, outside the "
        "measurements)"
    )
    print("  CPU seconds of each phase:")
    print("  | phase | client | web | workers | PostgreSQL | all |")
    print("  |---|---|---|---|---|---|")
    for name, spent in cpu:
        print(
            f"  | {name} | {spent['client']:.1f} | {spent['web']:.1f} | {spent['workers']:.1f} "
            f"| {spent['postgres']:.1f} | {sum(spent.values()):.1f} |"
        )


if __name__ == "__main__":
    main()
