"""Waiting callers never take the web's last threads: the real gunicorn (gthread), its
waiting slots all taken by synchronous imports that cannot finish yet, still answers
/healthz, /readyz and /metrics, and answers further imports at once."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.factories import VENDOR_MAPPING, vendor
from tests.integration.factories import new_org, wait_until
from tests.integration.stack import fresh_stack

THREADS, WAITERS, CALLERS = 3, 2, 6


def waiting_now(base_url: str) -> float:
    text = requests.get(base_url + "/metrics", timeout=30).text
    match = re.search(r"^importer_waiting_requests (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_with_every_waiting_slot_taken_health_and_metrics_are_served(private_redis):
    # A Redis of its own: no other test's worker takes these chunks.
    with fresh_stack(
        private_redis.url,
        IMPORTER_WEB_WORKERS="1",
        IMPORTER_WEB_THREADS=str(THREADS),
        IMPORTER_SYNC_WAITERS=str(WAITERS),
        IMPORTER_SYNC_WAIT_SECONDS="120",
    ) as stack:
        stack.start_web()  # no worker yet: no synchronous import can finish
        api = new_org(stack)
        slug = api.create_report("vendor", VENDOR_MAPPING)

        def call(n: int) -> requests.Response:
            return requests.post(
                f"{stack.base_url}/v1/import/{slug}",
                json={"data": [vendor(n)]},
                headers=dict(api.session.headers),
                timeout=180,
            )

        with ThreadPoolExecutor(CALLERS) as pool:
            calls = [pool.submit(call, n) for n in range(CALLERS)]
            # More callers than threads: without the bound every thread would be waiting.
            wait_until(
                lambda: waiting_now(stack.base_url) == WAITERS,
                timeout=60,
                what="every waiting slot to be taken",
                every=0.1,
            )
            wait_until(
                lambda: sum(future.done() for future in calls) == CALLERS - WAITERS,
                timeout=60,
                what="the callers beyond the slots to be answered",
                every=0.05,
            )
            answered_at_once = [future.result() for future in calls if future.done()]

            healthz = requests.get(stack.base_url + "/healthz", timeout=30)
            readyz = requests.get(stack.base_url + "/readyz", timeout=30)
            scraped = requests.get(stack.base_url + "/metrics", timeout=30)

            assert (healthz.status_code, readyz.status_code, scraped.status_code) == (
                200,
                200,
                200,
            )
            waiting = [future for future in calls if not future.done()]
            assert len(waiting) == WAITERS  # still waiting while those were answered
            assert len(answered_at_once) == CALLERS - WAITERS
            for answer in answered_at_once:
                assert answer.status_code == 202
                assert answer.headers["Retry-After"] == "1"
                assert answer.headers["Location"].startswith("/v1/import/batches/")

            stack.start_worker(concurrency=1)  # now the waiting imports finish
            finished = [future.result() for future in waiting]
        assert [answer.status_code for answer in finished] == [200] * WAITERS
        assert all(answer.json()["created_count"] == 1 for answer in finished)
