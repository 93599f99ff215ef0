"""The ops page in a real browser (Debian's chromium driven by Playwright) against real
``importer web`` and ``importer worker`` processes on PostgreSQL and Redis: a running
batch's progress bar moves, and Retry re-drives a batch that failed for real.

Set ``IMPORTER_OPS_SCREENSHOT=docs/ops-page.png`` to keep a screenshot of the page
with a batch running (the README's).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.factories import VENDOR_MAPPING, vendor
from tests.integration.factories import new_org
from tests.integration.stack import ROOT, Stack, fresh_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPS_TOKEN = "ops-4c1d7e0b9a2f4e56"
REFUSED_ID = "V-99999"  # the record the trigger refuses
BIG_BATCH = 50_000
WAIT_MS = 120_000


def _missing_browser() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture
def browser_ready() -> None:
    reason = _missing_browser()
    if reason is None:
        return
    if os.environ.get("IMPORTER_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " (IMPORTER_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def ops_stack(backing_services, private_redis, browser_ready) -> Iterator[Stack]:
    """Web and one worker process (one pool process) with the ops page enabled, small
    chunks, and no retry of a chunk that fails."""
    with fresh_stack(
        private_redis.url,
        worker=1,
        web=True,
        IMPORTER_OPS_TOKEN=OPS_TOKEN,
        IMPORTER_CHUNK_SIZE="500",
        IMPORTER_CHUNK_MAX_RETRIES="0",
        IMPORTER_RELAY_INTERVAL_SECONDS="0.5",
        IMPORTER_RELAY_GRACE_SECONDS="1",
        IMPORTER_WEB_WORKERS="1",
    ) as running:
        yield running


def refuse_external_id(database_url: str, external_id: str) -> None:
    """Injected fault: a trigger makes every write of one vendor fail."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE FUNCTION ops_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.external_id = '{external_id}' THEN
                    RAISE EXCEPTION 'injected fault: vendor % refused by a trigger',
                        NEW.external_id;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER ops_test_refuse BEFORE INSERT OR UPDATE ON vendors
                FOR EACH ROW EXECUTE FUNCTION ops_test_refuse();
            """
        )


def stop_refusing(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER ops_test_refuse ON vendors; DROP FUNCTION ops_test_refuse();")


def slow_down_writes(database_url: str, seconds: float) -> None:
    """Injected fault: a slow database, every write statement on vendors takes
    ``seconds`` longer (so a batch runs long enough to watch it)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE FUNCTION ops_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_sleep({seconds});
                RETURN NULL;
            END $$;
            CREATE TRIGGER ops_test_slow AFTER INSERT ON vendors
                FOR EACH STATEMENT EXECUTE FUNCTION ops_test_slow();
            """
        )


def stop_slowing_down(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER ops_test_slow ON vendors; DROP FUNCTION ops_test_slow();")


def worker_log(stack: Stack) -> str:
    """The last lines of the worker processes' output, for a failure's message."""
    return "\n".join(
        process.tail(60) for process in stack.processes if process.name.startswith("worker")
    )


def bar_value(page, batch_id: str) -> int:
    return int(
        page.locator(
            f'#batches tr[data-batch-id="{batch_id}"] [role="progressbar"]'
        ).first.get_attribute("aria-valuenow")
        or 0
    )


def test_the_ops_page_shows_progress_and_retries_a_failed_batch(ops_stack, fault_log):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    api = new_org(ops_stack)
    slug = api.create_report("vendor", VENDOR_MAPPING)
    for round_ in range(3):  # some history for the page
        records = [vendor(100_000 + round_ * 1_000 + n) for n in range(800)]
        assert api.post(f"/v1/import/{slug}", json={"data": records}).status_code == 200

    # A batch that fails for real: the trigger refuses one record of its second chunk,
    # the chunk gives up at once (no retries), the batch ends failed.
    refuse_external_id(ops_stack.env["DATABASE_URL"], REFUSED_ID)
    records = [vendor(n) for n in range(90_000, 90_599)] + [vendor(99_999)]
    failed = api.post(f"/v1/import/{slug}", json={"data": records}).json()
    assert (failed["status"], failed["created_count"], failed["failed_count"]) == (
        "failed",
        500,
        100,
    )
    failed_id = failed["batch_id"]
    assert {e["error_code"] for e in failed["errors"]} == {"write_failed"}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800},
                http_credentials={"username": "operator", "password": OPS_TOKEN},
            )
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            console_errors: list[str] = []
            page.on(
                "console",
                lambda message: (
                    console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            response = page.goto(ops_stack.base_url + "/ops")
            assert response is not None and response.status == 200
            failed_row = page.locator(f'#failed tr[data-batch-id="{failed_id}"]')
            expect(failed_row).to_have_count(1)
            expect(failed_row.locator('[data-f="last_error"]')).to_contain_text(
                "refused by a trigger"
            )

            # A batch large enough to take a few seconds with one worker process: 100
            # chunks of 500, each write slowed down by 80 ms (about 10 s in all).
            slow_down_writes(ops_stack.env["DATABASE_URL"], 0.08)
            started = time.monotonic()
            big = api.post(
                f"/v1/import/{slug}", json={"data": [vendor(n) for n in range(BIG_BATCH)]}
            )
            assert big.status_code == 202
            big_id = big.json()["batch_id"]
            bar = f'#batches tr[data-batch-id="{big_id}"] [role="progressbar"]'
            moving = """([selector, above]) => {
                const bar = document.querySelector(selector);
                if (!bar) return false;
                const now = Number(bar.getAttribute("aria-valuenow"));
                return now > above && now < Number(bar.getAttribute("aria-valuemax"));
            }"""
            page.wait_for_function(moving, arg=[bar, 0], timeout=WAIT_MS)
            first = bar_value(page, big_id)
            if shot := os.environ.get("IMPORTER_OPS_SCREENSHOT"):
                path = Path(shot) if Path(shot).is_absolute() else ROOT / shot
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
            page.wait_for_function(
                """([selector, above]) => {
                    const bar = document.querySelector(selector);
                    return bar && Number(bar.getAttribute("aria-valuenow")) > above;
                }""",
                arg=[bar, first],
                timeout=WAIT_MS,
            )
            second = bar_value(page, big_id)
            big_row = page.locator(f'#batches tr[data-batch-id="{big_id}"]')
            expect(big_row.locator('[data-f="status"]')).to_have_text("completed")
            expect(big_row.locator('[role="progressbar"]')).to_have_attribute(
                "aria-valuenow", str(BIG_BATCH)
            )
            expect(big_row.locator('[data-f="pct"]')).to_have_text("100%")
            big_seconds = time.monotonic() - started
            stop_slowing_down(ops_stack.env["DATABASE_URL"])

            # Retry: the fault is gone, the operator clicks Retry, the batch completes.
            stop_refusing(ops_stack.env["DATABASE_URL"])
            failed_row.locator('button[data-action="retry"]').click()
            expect(page.locator("#notice")).to_contain_text(
                "1 failed chunk(s) (100 records) put back to pending"
            )
            retried = api.wait_done(failed_id)
            assert retried["status"] == "completed", (retried["errors"][:3], worker_log(ops_stack))
            retried_row = page.locator(f'#batches tr[data-batch-id="{failed_id}"]')
            expect(retried_row.locator('[data-f="status"]')).to_have_text("completed")
            expect(retried_row.locator('[data-f="failed"]')).to_have_text("0")
            expect(failed_row).to_have_count(0)
            expect(page.locator("#failed-empty")).to_be_visible()
            assert console_errors == []
        finally:
            browser.close()

    done = api.get(f"/v1/import/batches/{failed_id}").json()
    assert (done["status"], done["created_count"], done["failed_count"]) == ("completed", 600, 0)
    assert done["errors_total"] == 0
    fault_log(
        f"ops page in chromium: a {BIG_BATCH}-record batch's bar read {first} then {second} "
        f"of {BIG_BATCH} (done in {big_seconds:.1f} s); a trigger failed batch {failed_id} "
        f"(100 write_failed); trigger dropped, Retry clicked: completed with "
        f"created={done['created_count']} failed={done['failed_count']}"
    )
