"""The ops page: disabled without a token, authenticated with it (Basic password or
Bearer), its data across every org, and Retry (CSRF-protected) re-driving a batch."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
import sqlalchemy as sa

from app import create_app
from importer.db import utcnow
from importer.models import WorkerHeartbeat
from importer.monitoring import beat
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox, vendor
from worker.tasks import give_up_chunk, run_chunk

TOKEN = "ops-token-4f1c9a7e2b"


@pytest.fixture
def settings(settings):
    return settings.replace(ops_token=TOKEN)


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


BEARER = {"Authorization": f"Bearer {TOKEN}"}
RETRY_HEADERS = {**BEARER, "X-Requested-With": "fetch"}


def accept(db, org, report, n=4, chunk_size=2):
    return accept_records(db, org, report, [vendor(i) for i in range(n)], chunk_size=chunk_size)


@pytest.fixture
def failed_batch(db, org_and_key, make_report):
    batch_id, (first, second) = accept(db, org_and_key[0], make_report())
    notifier = PollingNotifier()
    run_chunk(recording_outbox(db), notifier, first)
    give_up_chunk(
        recording_outbox(db), notifier, second, "OperationalError: the database went away"
    )
    return batch_id


def test_without_a_token_every_ops_url_is_a_404(settings, db):
    app = create_app(settings.replace(ops_token=None))
    app.extensions["importer"].db = db
    client = app.test_client()
    for method, url in [
        ("GET", "/ops"),
        ("GET", "/ops/data.json"),
        ("POST", "/ops/batches/cbbatch_x/retry"),
    ]:
        response = client.open(url, method=method, headers={**BEARER, "X-Requested-With": "x"})
        assert response.status_code == 404, url
        assert response.json["detail"]["code"] == "not_found"
        unknown = client.get("/no-such-page")
        assert response.json == unknown.json  # like any unknown URL, headers and all
        assert set(response.headers.keys()) == set(unknown.headers.keys())


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("wrong"),
        basic(TOKEN + "x"),
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()},  # no colon
        {"Authorization": f"Token {TOKEN}"},
    ],
)
def test_a_missing_or_wrong_token_is_a_401_with_a_basic_challenge(client, headers):
    for url in ("/ops", "/ops/data.json"):
        response = client.get(url, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="importer ops", charset="UTF-8"'
        assert response.json["detail"]["code"] == "invalid_ops_token"
    retry = client.post(
        "/ops/batches/cbbatch_x/retry", headers={**headers, "X-Requested-With": "x"}
    )
    assert retry.status_code == 401


@pytest.mark.parametrize("headers", [basic(TOKEN), basic(TOKEN, user=""), BEARER])
def test_the_token_as_a_basic_password_or_a_bearer_token(client, headers):
    assert client.get("/ops", headers=headers).status_code == 200
    assert client.get("/ops/data.json", headers=headers).status_code == 200


def test_the_page_loads_nothing_from_outside_and_locks_itself_down(
    client, db, org_and_key, make_report, failed_batch
):
    running_id, _ = accept(db, org_and_key[0], make_report(slug="second"), n=6)

    response = client.get("/ops", headers=basic(TOKEN))

    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    # Server-rendered: the batches are in the HTML itself.
    assert f'data-batch-id="{running_id}"' in html and f'data-batch-id="{failed_batch}"' in html
    assert "the database went away" in html
    # Nothing from elsewhere: no external script, style sheet, image or font.
    references = re.findall(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=\"([^\"]*)", html)
    assert references and all(ref.startswith("data:") for ref in references)  # the icon
    assert "@import" not in html and "url(" not in html
    assert set(re.findall(r"https?://[^\s\"'<%]+", html)) == {"http://www.w3.org/2000/svg"}
    policy = response.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self'" in policy
    assert 'style="' not in html  # inline style attributes would be refused by the policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    second = client.get("/ops", headers=basic(TOKEN)).headers["Content-Security-Policy"]
    assert second != policy  # a new nonce each time


def test_data_shows_every_org_queues_workers_failures_and_throughput(
    client, db, make_org, make_report, failed_batch
):
    other_org, _ = make_org("Other Org")
    queued_id, _ = accept(db, other_org, make_report(org=other_org), n=10, chunk_size=5)

    data = client.get("/ops/data.json", headers=BEARER).json

    assert set(data) == {
        "generated_at",
        "overview",
        "workers",
        "workers_hidden",
        "batches",
        "failed",
        "throughput",
    }
    assert [b["batch_id"] for b in data["batches"]] == [queued_id, failed_batch]
    queued, failed = data["batches"]
    assert (queued["org_name"], queued["status"], queued["received_count"]) == (
        "Other Org",
        "queued",
        10,
    )
    assert (failed["created_count"], failed["failed_count"], failed["processed_count"]) == (
        2,
        2,
        4,
    )
    (failure,) = data["failed"]
    assert failure["batch_id"] == failed_batch
    assert (failure["failed_chunks"], failure["chunk_count"]) == (1, 2)
    assert failure["last_error"] == "OperationalError: the database went away"
    assert data["overview"]["batches"] == {
        "queued": 1,
        "processing": 0,
        "completed": 0,
        "failed": 1,
    }
    assert set(data["overview"]["queues"]) == {"interactive", "bulk", "webhooks"}
    throughput = data["throughput"]
    assert len(throughput["minutes"]) == throughput["window_minutes"] == 60
    assert throughput["total"] == 4  # both chunks of the failed batch finished just now
    assert throughput["minutes"][-1]["records"] == 4
    assert throughput["peak"] == 4
    starts = [point["at"] for point in throughput["minutes"]]
    assert all(b - a == 60 for a, b in zip(starts, starts[1:], strict=False))
    assert starts[-1] % 60 == 0


def test_recent_batches_keep_every_running_one(client, db, org_and_key, make_report):
    from importer import opsdata

    report = make_report()
    running_id, _ = accept(db, org_and_key[0], report, n=2)
    done = []
    for _ in range(3):
        batch_id, pending = accept(db, org_and_key[0], report, n=2)
        for chunk_id in pending:
            run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)
        done.append(batch_id)
    with db.session() as session:
        shown = [b["batch_id"] for b in opsdata.recent_batches(session, running=5, finished=1)]
    assert shown == [done[-1], running_id]  # the running one is kept, newest first


def test_a_batch_that_ends_while_the_list_is_read_is_shown_once(
    client, db, org_and_key, make_report
):
    # The running batches and the finished ones are two reads: a batch that finishes
    # between them is found by both.
    from importer import opsdata
    from importer.models import BatchStatus, ImportBatch

    report = make_report()
    batch_id, _ = accept(db, org_and_key[0], report, n=2)
    with db.session() as session:
        execute = session.execute

        def finishing_after_the_first_read(*args, **kwargs):
            result = execute(*args, **kwargs)
            session.execute = execute
            execute(
                sa.update(ImportBatch)
                .where(ImportBatch.id == batch_id)
                .values(status=BatchStatus.FAILED)
                .execution_options(synchronize_session=False)
            )
            return result

        session.execute = finishing_after_the_first_read
        shown = [b["batch_id"] for b in opsdata.recent_batches(session)]
    assert shown == [batch_id]


def run_all(db, batch_chunks):
    batch_id, pending = batch_chunks
    for chunk_id in pending:
        run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)
    return batch_id


def pill(html: str, batch_id: str) -> tuple[str, str]:
    """The status pill of a batch's row in the recent batches: (data-status, text)."""
    row = re.search(rf'<tr data-key="{batch_id}".*?</tr>', html, re.DOTALL).group(0)
    found = re.search(r'<span class="pill" data-f="status" data-status="([^"]+)">([^<]+)<', row)
    return found.group(1), found.group(2)


def test_a_batch_whose_every_record_failed_is_not_shown_as_a_good_completion(
    client, db, org_and_key, make_report
):
    report = make_report()
    org = org_and_key[0]
    nameless = [{"Supplier ID": f"X-{n}"} for n in range(3)]
    all_failed = run_all(db, accept_records(db, org, report, nameless))
    some_failed = run_all(db, accept_records(db, org, report, [vendor(1), *nameless[:1]]))
    good = run_all(db, accept_records(db, org, report, [vendor(2)]))

    data = client.get("/ops/data.json", headers=BEARER).json
    html = client.get("/ops", headers=BEARER).get_data(as_text=True)

    shown = {b["batch_id"]: (b["status"], b["all_failed"]) for b in data["batches"]}
    assert shown == {
        all_failed: ("completed", True),
        some_failed: ("completed", False),
        good: ("completed", False),
    }
    assert pill(html, all_failed) == ("all-failed", "completed, all failed")
    assert pill(html, some_failed) == ("completed", "completed")
    assert pill(html, good) == ("completed", "completed")
    amber = re.search(r'\.pill\[data-status="all-failed"\][^{]*\{([^}]*)\}', html).group(1)
    green = re.search(r'\.pill\[data-status="completed"\][^{]*\{([^}]*)\}', html).group(1)
    assert amber != green


def test_a_push_of_many_batches_keeps_the_list_short_and_the_failed_panel_first(
    client, db, org_and_key, make_report, failed_batch
):
    report = make_report(slug="pushed")
    org = org_and_key[0]
    finished = [run_all(db, accept(db, org, report, n=2)) for _ in range(30)]
    running = [accept(db, org, report, n=2)[0] for _ in range(4)]

    data = client.get("/ops/data.json", headers=BEARER).json
    html = client.get("/ops", headers=BEARER).get_data(as_text=True)

    from importer.opsdata import FINISHED_BATCHES

    shown = [b["batch_id"] for b in data["batches"]]
    assert shown == [*reversed(running), *reversed(finished[-FINISHED_BATCHES:])]
    assert [b["batch_id"] for b in data["failed"]] == [failed_batch]  # older, still listed
    assert html.index('id="h-failed"') < html.index('id="h-batches"')
    assert f"the {FINISHED_BATCHES} newest finished" in html


def test_workers_stopped_or_lost_over_an_hour_ago_are_left_off_the_page(client, db):
    now = utcnow()
    seen = {
        "online@a": None,
        "stopped-now@a": None,
        "lost-lately@a": now - dt.timedelta(minutes=20),
        "stopped-long-ago@a": now - dt.timedelta(hours=2),
        "lost-long-ago@a": now - dt.timedelta(hours=5),
    }
    with db.session() as session:
        for node, last_seen in seen.items():
            beat(
                session,
                node=node,
                pid=1,
                concurrency=2,
                queues=["imports"],
                started_at=now - dt.timedelta(hours=6),
                stopped=node.startswith("stopped"),
            )
            if last_seen is not None:
                row = session.get(WorkerHeartbeat, node)
                row.last_seen_at = last_seen
                if row.stopped_at is not None:
                    row.stopped_at = last_seen

    data = client.get("/ops/data.json", headers=BEARER).json
    html = client.get("/ops", headers=BEARER).get_data(as_text=True)

    assert [(w["node"], w["state"]) for w in data["workers"]] == [
        ("online@a", "online"),
        ("lost-lately@a", "lost"),
        ("stopped-now@a", "stopped"),
    ]
    assert data["workers_hidden"] == 2
    assert len(data["overview"]["workers"]) == 5  # importer status still lists them all
    assert 'data-key="stopped-long-ago@a"' not in html and 'data-key="lost-lately@a"' in html
    hidden = re.search(r'<p class="empty" id="workers-hidden"([^>]*)>(.*?)</p>', html, re.DOTALL)
    assert "hidden" not in hidden.group(1)
    assert re.sub(r"<[^>]+>", "", hidden.group(2)).startswith(
        "2 stopped or lost over an hour ago: not shown"
    )


def test_the_bulk_lane_shows_each_orgs_backlog(client, db, make_org, make_report):
    big, _ = make_org("Big Flood Ltd")
    small, _ = make_org("Small Co")
    accept(db, big, make_report(org=big), n=12, chunk_size=3)
    accept(db, small, make_report(org=small), n=2, chunk_size=3)

    backlog = client.get("/ops/data.json", headers=BEARER).json["overview"]["backlog"]
    assert (backlog["records"], backlog["chunks"], backlog["orgs"]) == (14, 5, 2)
    assert [(o["org_name"], o["records"], o["chunks"]) for o in backlog["top"]] == [
        ("Big Flood Ltd", 12, 4),
        ("Small Co", 2, 1),
    ]
    html = client.get("/ops", headers=BEARER).get_data(as_text=True)
    panel = html[html.index('id="h-backlog"') : html.index('id="h-workers"')]
    assert panel.index("Big Flood Ltd") < panel.index("Small Co")
    assert re.search(r'id="card-backlog">14<', html)


def test_retry_needs_the_custom_header_and_the_same_origin(client, failed_batch):
    url = f"/ops/batches/{failed_batch}/retry"
    no_header = client.post(url, headers=BEARER)
    assert no_header.status_code == 403
    assert no_header.json["detail"]["code"] == "csrf_check_failed"
    foreign = client.post(url, headers={**RETRY_HEADERS, "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert client.get("/ops/data.json", headers=BEARER).json["failed"][0]["status"] == "failed"
    assert client.get(url, headers=RETRY_HEADERS).status_code == 405


def test_retry_redrives_the_batch_and_hands_the_chunks_to_the_workers(client, worker, failed_batch):
    url = f"/ops/batches/{failed_batch}/retry"

    response = client.post(url, headers={**RETRY_HEADERS, "Origin": "http://localhost"})

    assert response.status_code == 200, response.json
    body = response.json
    assert (body["failed_chunks"], body["failed_records"], body["sent"]) == (1, 2, 1)
    assert body["send_error"] is None
    assert body["message"].startswith(f"Batch {failed_batch}: 1 failed chunk(s) (2 records)")
    assert worker.sent == body["to_send"]  # the inline worker ran it at once
    data = client.get("/ops/data.json", headers=BEARER).json
    assert data["failed"] == []
    (batch,) = data["batches"]
    assert (batch["status"], batch["created_count"], batch["failed_count"]) == (
        "completed",
        4,
        0,
    )
    again = client.post(url, headers=RETRY_HEADERS).json
    assert again["changed"] is False
    assert again["message"] == (
        f"Batch {failed_batch} is completed with nothing failed: nothing to re-drive."
    )


def test_retry_leaves_the_chunks_to_the_relay_when_the_broker_is_down(
    app, client, worker, failed_batch
):
    worker.down = True

    body = client.post(f"/ops/batches/{failed_batch}/retry", headers=RETRY_HEADERS).json

    assert (body["failed_chunks"], body["sent"]) == (1, 0)
    assert "Connection refused" in body["send_error"]
    assert worker.sent == []
    batch = client.get("/ops/data.json", headers=BEARER).json["batches"][0]
    assert batch["status"] == "processing"


def test_retry_of_an_unknown_batch_is_a_404(client):
    response = client.post("/ops/batches/cbbatch_nope/retry", headers=RETRY_HEADERS)
    assert response.status_code == 404
    assert response.json["detail"]["code"] == "batch_not_found"


def test_errors_are_shown_short():
    from importer.opsdata import short_error

    wrapped = (
        "ProgrammingError: (psycopg.errors.RaiseException) injected fault: vendor V-1 refused\n"
        "[SQL: INSERT INTO vendors ...]\n(Background on this error at: https://sqlalche.me/e/20)"
    )
    assert short_error(wrapped) == "RaiseException: injected fault: vendor V-1 refused"
    assert short_error("OperationalError: the database went away") == (
        "OperationalError: the database went away"
    )
    assert short_error("x" * 400) == "x" * 299 + "…"
    assert short_error(None) is None
