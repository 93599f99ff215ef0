"""Health checks and metrics scrapes while many synchronous callers wait, during a flood.

On the distributed deployment (2 web processes x 8 threads, one worker of 2 bulk
processes), in one run:

1. quiet: ``GET /healthz``, ``/readyz`` and ``/metrics`` probed alone;
2. loaded, for ``--seconds``: org B posts ``--floods`` x 100,000 records back to back
   (asynchronous) while org A's ``--callers`` (40) clients each post 100-record
   synchronous imports in a loop and wait for them (a ``202`` is followed:
   ``GET Location?wait=25``, honouring ``Retry-After``), and the same probes go on,
   each on a new connection as a load balancer's would.

Prints each probe's latency (p50, p99, max) quiet and loaded, how A's imports were
answered, and checks the target: every probe answered within 1 s while the callers wait.

    python -m bench.waiting [--callers 40] [--seconds 60] [--floods 5]
                            [--flood-size 100000] [--probe-every 0.25] [--quiet-seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
import requests

from bench.data import MAPPING, records
from bench.mixed import WRITTEN, flood_bodies, per_org
from bench.small_batches import percentile
from bench.stack import deployment, new_org
from tests.integration.stack import Api

PROBES = ("/healthz", "/readyz", "/metrics")
TIMEOUT = 30.0


@dataclass
class Probes:
    seconds: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PROBES})
    failures: Counter[str] = field(default_factory=Counter)

    def run(self, base_url: str, every: float, stop: threading.Event) -> None:
        while not stop.is_set():
            for path in PROBES:
                began = time.perf_counter()
                try:
                    # A new connection each time, as a load balancer's health check opens.
                    ok = requests.get(base_url + path, timeout=TIMEOUT).status_code == 200
                except requests.RequestException:
                    ok = False
                self.seconds[path].append(time.perf_counter() - began)
                self.failures[path] += not ok
            stop.wait(every)

    def row(self, path: str) -> str:
        values = self.seconds[path]
        return (
            f"{len(values)} | {statistics.median(values) * 1000:.0f} | "
            f"{percentile(values, 0.99) * 1000:.0f} | {max(values) * 1000:.0f} | "
            f"{sum(1 for v in values if v > 1.0)} | {self.failures[path]}"
        )


@dataclass
class Callers:
    answers: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.answers[what] += 1


def caller(api: Api, slug: str, number: int, stop: threading.Event, tally: Callers) -> None:
    """A client of org A: a synchronous 100-record import, waited for, again and again."""
    session = requests.Session()
    session.headers.update(api.session.headers)
    n = 0
    while not stop.is_set():
        first = 60_000_000 + number * 1_000_000 + (n // 2) * 100
        body = orjson.dumps({"data": records(first, 100, generation=n % 2)})
        n += 1
        try:
            response = session.post(
                f"{api.base_url}/v1/import/{slug}",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=120,
            )
            if response.status_code == 200:
                tally.count("200 after waiting")
                continue
            if response.status_code != 202:
                tally.count(f"{response.status_code}")
                continue
            tally.count(
                "202 at once (no waiting slot)"
                if "Retry-After" in response.headers
                else "202 after the whole wait"
            )
            location = response.headers["Location"]
            while not stop.is_set():
                if "Retry-After" in response.headers:
                    stop.wait(float(response.headers["Retry-After"]))
                response = session.get(f"{api.base_url}{location}?wait=25", timeout=120)
                if response.json()["status"] in ("completed", "failed"):
                    tally.count("then done, by following Location")
                    break
        except requests.RequestException as error:
            tally.count(type(error).__name__)


def post_flood(
    api: Api, slug: str, bodies: list[bytes], stop: threading.Event, seconds: list[float]
) -> None:
    """Org B's batches, posted back to back (not waited for) until all are sent or stop;
    ``seconds``: how long each POST took to be answered (the web's work on the body)."""
    for body in bodies:
        if stop.is_set():
            return
        began = time.perf_counter()
        response = api.post(
            f"/v1/import/{slug}",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=300,
        )
        seconds.append(time.perf_counter() - began)
        if response.status_code != 202:
            raise RuntimeError(f"the flood's import answered {response.status_code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--floods", type=int, default=5)
    parser.add_argument("--flood-size", type=int, default=100_000)
    parser.add_argument("--probe-every", type=float, default=0.25)
    parser.add_argument("--quiet-seconds", type=float, default=10)
    args = parser.parse_args()

    with deployment(IMPORTER_WEB_WORKERS="2") as stack:
        stack.start_worker(concurrency=2)
        stack.start_web()
        small, flooding = new_org(stack), new_org(stack)
        small_slug = small.create_report("vendor", MAPPING)
        flood_slug = flooding.create_report("vendor", MAPPING)
        bodies = flood_bodies(1, args.floods, args.flood_size)

        # 1. Quiet.
        quiet, stop = Probes(), threading.Event()
        timer = threading.Timer(args.quiet_seconds, stop.set)
        timer.start()
        quiet.run(stack.base_url, args.probe_every, stop)

        # 2. The flood, the waiting callers and the probes, together.
        loaded, tally, stop = Probes(), Callers(), threading.Event()
        threads = [
            threading.Thread(target=caller, args=(small, small_slug, i, stop, tally))
            for i in range(args.callers)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2)  # the callers are waiting before the flood starts
        prober = threading.Thread(target=loaded.run, args=(stack.base_url, args.probe_every, stop))
        flood_posts: list[float] = []
        flooder = threading.Thread(
            target=post_flood, args=(flooding, flood_slug, bodies, stop, flood_posts)
        )
        prober.start()
        flooder.start()
        stop.wait(args.seconds)
        stop.set()
        for thread in [prober, flooder, *threads]:
            thread.join()
        written = per_org(stack, WRITTEN)

    print(
        f"Waiting callers: for {args.seconds:.0f} s, org A's {args.callers} clients post "
        f"100-record synchronous imports and wait, while org B posts {args.floods} x "
        f"{args.flood_size:,} records back to back; 2 web processes x 8 threads"
    )
    print("  | probe | phase | probes | p50 ms | p99 ms | max ms | over 1 s | failed |")
    print("  |---|---|---|---|---|---|---|---|")
    for path in PROBES:
        print(f"  | {path} | quiet | {quiet.row(path)} |")
        print(f"  | {path} | loaded | {loaded.row(path)} |")
    print("  A's imports while B flooded:")
    for what, count in sorted(tally.answers.items()):
        print(f"    {what}: {count:,}")
    print(
        f"  records written meanwhile: A {written.get(small.org_id, 0):,}, "
        f"B {written.get(flooding.org_id, 0):,}"
    )
    if flood_posts:
        print(
            f"  B's {args.flood_size:,}-record POSTs answered in {min(flood_posts):.2f}-"
            f"{max(flood_posts):.2f} s (the web's work on one body, in one request)"
        )
    worst = max(max(loaded.seconds[path]) for path in PROBES)
    failed = sum(loaded.failures.values())
    print(
        f"  slowest probe while {args.callers} callers waited: {worst * 1000:.0f} ms, "
        f"{failed} failed  (target: every probe within 1 s)"
    )


if __name__ == "__main__":
    main()
