"""``importer push``: the real app served over real HTTP on loopback, driven by the CLI."""

from __future__ import annotations

import csv
import inspect
import io
import json
import multiprocessing
import os
import stat
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from rich.console import Console
from werkzeug.serving import make_server

from cli import main
from importer.safe_csv import CsvWriter
from push import client as push

HEADER = ["Supplier ID", "Supplier Name", "Website", "IRQ Score", "Tags"]


class Gate:
    """WSGI middleware in front of the app: logs every request, and answers the next
    ``refuse`` POSTs (after letting ``let_through`` more reach the app) with ``status``
    and ``Retry-After: 0`` instead of the app. With ``hold_reads_until`` set, a read of
    a batch's results waits until that many POSTs have arrived."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.lock = threading.Condition()
        self.requests: list[tuple[str, str, str]] = []
        self.refuse = 0
        self.let_through = 0
        self.refused = 0
        self.status = "503 SERVICE UNAVAILABLE"
        self.hold_reads_until: int | None = None

    @property
    def posts(self) -> int:
        with self.lock:
            return self._posts()

    def _posts(self) -> int:
        return sum(1 for method, _path, _query in self.requests if method == "POST")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ["REQUEST_METHOD"]
        path = environ["PATH_INFO"]
        with self.lock:
            if method == "GET" and path.endswith("/results") and self.hold_reads_until:
                enough = self.lock.wait_for(lambda: self._posts() >= self.hold_reads_until, 30)
                assert enough, "the client stopped sending while its reads were held"
            self.requests.append((method, path, environ.get("QUERY_STRING", "")))
            self.lock.notify_all()
            refuse = method == "POST" and self.refuse > 0
            if refuse and self.let_through > 0:
                self.let_through -= 1
                refuse = False
            if refuse:
                self.refuse -= 1
                self.refused += 1
        if refuse:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response(
                self.status, [("Content-Type", "application/json"), ("Retry-After", "0")]
            )
            return [b'{"detail": {"code": "unavailable", "message": "Try again later."}}']
        return self.app(environ, start_response)


@dataclass
class Live:
    url: str
    key: str
    gate: Gate
    client: FlaskClient
    auth: dict[str, str]
    runner: CliRunner = field(default_factory=CliRunner)

    def push(self, path: Path, *args: str, slug: str = "vendors", **kwargs: Any) -> Result:
        argv = ["push", slug, str(path), "--url", self.url, "--api-key", self.key, *args]
        return self.runner.invoke(main, argv, **kwargs)

    def batches(self) -> int:
        response = self.client.get("/v1/import/batches", headers=self.auth)
        total: int = response.json["total"]  # type: ignore[index]
        return total


@pytest.fixture
def live(
    app: Flask, client: FlaskClient, auth: dict[str, str], make_report: Callable[..., Any]
) -> Iterator[Live]:
    make_report("vendor")  # slug "vendors", the incoming names of HEADER
    gate = Gate(app)
    server = make_server("127.0.0.1", 0, gate, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Live(
            url=f"http://127.0.0.1:{server.server_port}",
            key=auth["Authorization"].split()[1],
            gate=gate,
            client=client,
            auth=auth,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def results(folder: Path) -> list[tuple[int, str, str]]:
    return [
        (int(line["row"]), line["external_id"], line["action"])
        for line in read_csv(folder / "results.csv")
    ]


def errors(folder: Path) -> list[tuple[int, str, str, str]]:
    return [
        (int(line["row"]), line["external_id"], line["field"], line["error_code"])
        for line in read_csv(folder / "errors.csv")
    ]


def stored_name(live: Live, external_id: str) -> str:
    response = live.client.get(f"/v1/vendors?external_id={external_id}", headers=live.auth)
    items = response.json["items"]  # type: ignore[index]
    assert len(items) == 1
    name: str = items[0]["name"]
    return name


# --- formats and row numbers --------------------------------------------------------


def test_csv_with_bom_quoted_fields_and_embedded_newlines(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "vendors.csv"
    path.write_bytes(
        "\ufeffSupplier ID,Supplier Name,Website,IRQ Score,Tags\r\n"  # line 1
        'V-1,"Acme, Inc.",acme.example.com,72,"hosting, pii"\r\n'  # line 2
        'V-2,"Globex\r\nPayroll\r\nServices",,41.5,\r\n'  # lines 3-5
        "\r\n"  # line 6: blank
        'V-3,"Initech ""Support""",,,\r\n'  # line 7
        ",,,,\r\n"  # line 8: no values
        "V-4,Umbrella,,,\n".encode()  # line 9
    )

    result = live.push(path)

    assert result.exit_code == 0, result.output
    assert results(tmp_path) == [
        (2, "V-1", "created"),
        (3, "V-2", "created"),
        (7, "V-3", "created"),
        (9, "V-4", "created"),
    ]
    assert errors(tmp_path) == []
    assert stored_name(live, "V-1") == "Acme, Inc."
    assert stored_name(live, "V-2") == "Globex\r\nPayroll\r\nServices"
    assert stored_name(live, "V-3") == 'Initech "Support"'
    coverbase_ids = [line["coverbase_id"] for line in read_csv(tmp_path / "results.csv")]
    assert all(value.startswith("cbvndr_") for value in coverbase_ids)
    assert "Read 4 records" in result.output
    assert "4 written (4 created, 0 updated), 0 failed" in result.output
    assert str(tmp_path / "results.csv") in result.output
    assert str(tmp_path / "errors.csv") in result.output


def test_mixed_valid_and_invalid_csv_reports_original_rows(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "Supplier ID,Supplier Name,Website,IRQ Score,Tags\n"  # 1
        "V-1,Acme,,10,\n"  # 2
        'V-2,"Two\nLines",,high,\n'  # 3-4: bad score
        "V-3,,,101,\n"  # 5: no name and bad score: two errors
        "V-4,Globex,,20,a,b,c\n"  # 6: more fields than the header
        "V-5,Initech,,30,\n"  # 7
        ",Nameless,,,\n"  # 8: no id
        "V-7,Hooli,,,\n",  # 9
        encoding="utf-8",
    )

    result = live.push(path, "--chunk-size", "2", "--concurrency", "3")

    assert result.exit_code == 1, result.output
    assert results(tmp_path) == [
        (2, "V-1", "created"),
        (7, "V-5", "created"),
        (9, "V-7", "created"),
    ]
    assert errors(tmp_path) == [
        (3, "V-2", "IRQ Score", "invalid_field_value"),
        (5, "V-3", "Supplier Name", "missing_required_field"),
        (5, "V-3", "IRQ Score", "invalid_field_value"),
        (6, "V-4", "", "invalid_field_value"),
        (8, "", "Supplier ID", "missing_required_field"),
    ]
    overlong = read_csv(tmp_path / "errors.csv")[3]["message"]
    assert "7 fields but the header names 5" in overlong
    assert "Read 7 records" in result.output
    assert "3 written (3 created, 0 updated), 4 failed" in result.output


def test_ndjson_with_blank_malformed_and_non_object_lines(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "vendors.ndjson"
    path.write_bytes(
        b'\xef\xbb\xbf{"Supplier ID": "N-1", "Supplier Name": "One"}\n'  # 1 (with a BOM)
        b"\n"  # 2
        b'{"Supplier ID": "N-2", "Supplier Name": "Two"\n'  # 3: malformed
        b"   \n"  # 4
        b'["N-3", "Three"]\n'  # 5: not an object
        b'{"Supplier ID": "N-4", "Supplier Name": "Four", "IRQ Score": 12}\r\n'  # 6
        b'{"Supplier ID": "N-5", "IRQ Score": "x"}'  # 7: invalid, no final newline
    )

    result = live.push(path)

    assert result.exit_code == 1, result.output
    assert results(tmp_path) == [(1, "N-1", "created"), (6, "N-4", "created")]
    assert errors(tmp_path) == [
        (3, "", "", "invalid_field_value"),
        (5, "", "", "invalid_field_value"),
        (7, "N-5", "Supplier Name", "missing_required_field"),
        (7, "N-5", "IRQ Score", "invalid_field_value"),
    ]
    messages = [line["message"] for line in read_csv(tmp_path / "errors.csv")]
    assert messages[0].startswith("Line 3 is not valid JSON")
    assert messages[1] == "Line 5 holds a JSON array, not an object; the line was not sent."
    assert "2 written (2 created, 0 updated), 3 failed" in result.output


@pytest.mark.parametrize("layout", ["array", "object"])
def test_json_array_or_object_with_data(live: Live, tmp_path: Path, layout: str) -> None:
    records = [
        {"Supplier ID": "J-1", "Supplier Name": "One", "IRQ Score": 1.5},
        {"Supplier ID": "J-2", "Supplier Name": "Two", "Tags": ["a", "b"]},
        {"Supplier ID": "J-3", "Supplier Name": "Three"},
    ]
    body: Any = records if layout == "array" else {"meta": {"data": 1}, "data": records}
    path = tmp_path / "vendors.json"
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))

    result = live.push(path)

    assert result.exit_code == 0, result.output
    assert results(tmp_path) == [
        (1, "J-1", "created"),
        (2, "J-2", "created"),
        (3, "J-3", "created"),
    ]
    assert errors(tmp_path) == []


def test_json_element_that_is_not_an_object_is_reported(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "vendors.json"
    path.write_text(
        '{"data": [{"Supplier ID": "J-1", "Supplier Name": "One"}, 42,'
        ' {"Supplier ID": "J-3", "Supplier Name": "Three"}]}'
    )

    result = live.push(path)

    assert result.exit_code == 1, result.output
    assert results(tmp_path) == [(1, "J-1", "created"), (3, "J-3", "created")]
    assert errors(tmp_path) == [(2, "", "", "invalid_field_value")]


def test_format_override_for_an_unknown_extension(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text('{"Supplier ID": "T-1", "Supplier Name": "One"}\n')

    refused = live.push(path)
    assert refused.exit_code == 2
    assert "--format" in refused.output
    assert live.gate.requests == []

    result = live.push(path, "--format", "ndjson")
    assert result.exit_code == 0, result.output
    assert results(tmp_path) == [(1, "T-1", "created")]


# --- one file, one batch -------------------------------------------------------------


def dry_run_errors(live: Live, records: list[dict[str, Any]]) -> list[tuple[int, ...]]:
    """The errors one batch of ``records`` gets (a dry run: nothing is written), as
    (index, external_id, field, error_code, message)."""
    response = live.client.post(
        "/v1/import/vendors?dry_run=true", json={"data": records}, headers=live.auth
    )
    assert response.status_code == 200, response.json
    return [
        (e["index"], e["external_id"], e["field"], e["error_code"], e["message"])
        for e in response.json["errors"]  # type: ignore[index]
    ]


@pytest.mark.parametrize("read", ["once", "after a survey", "cut in two"])
def test_duplicates_anywhere_in_the_file_fail_every_occurrence_as_one_batch_would(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    if read != "once":
        monkeypatch.setattr(push, "ONE_PASS_BYTES", 0)
    if read == "cut in two":
        if not push.SURVEY_APART:
            pytest.skip("a CSV file is cut in two for its survey on Linux only")
        monkeypatch.setattr(push, "SPLIT_FROM_BYTES", 0)
    # 12 rows, chunks of 2: the two "D-1" are 9 rows apart, the two "D-2" differ only by
    # spaces (the service trims), the two "D-3" share a chunk.
    ids = ["D-1", "U-1", "D-3", "D-3", " D-2", "U-2", "U-3", "U-4", "U-5", "U-6", "D-1", "D-2 "]
    rows = [[value, f"Vendor {n}", "", "", ""] for n, value in enumerate(ids)]
    path = write_csv(tmp_path / "vendors.csv", rows)

    result = live.push(path, "--chunk-size", "2")

    assert result.exit_code == 1, result.output
    duplicate_rows = [n + 2 for n, value in enumerate(ids) if value.strip().startswith("D-")]
    assert [(row, code) for row, _id, _field, code in errors(tmp_path)] == [
        (row, "duplicate_external_id") for row in duplicate_rows
    ]
    assert [row for row, _id, _action in results(tmp_path)] == [
        n + 2 for n, value in enumerate(ids) if value.startswith("U-")
    ]
    # The same lines, field and message as the service gives the whole file as one batch.
    records = [dict(zip(HEADER[:2], row[:2], strict=True)) for row in rows]
    one_batch = [(index + 2, *rest) for index, *rest in dry_run_errors(live, records)]
    pushed = [
        (int(line["row"]), line["external_id"], line["field"], line["error_code"], line["message"])
        for line in read_csv(tmp_path / "errors.csv")
    ]
    assert pushed == one_batch
    for value in ("D-1", "D-2", "D-3"):  # none of them written
        found = live.client.get(f"/v1/vendors?external_id={value}", headers=live.auth)
        assert found.json["total"] == 0  # type: ignore[index]
    assert "6 written (6 created, 0 updated), 6 failed" in result.output
    assert "6 of the records share their external_id with another record" in result.output


def test_duplicate_numbers_and_strings_in_ndjson_match_the_service(
    live: Live, tmp_path: Path
) -> None:
    records: list[dict[str, Any]] = [
        {"Supplier ID": 7, "Supplier Name": "int"},
        {"Supplier ID": "8", "Supplier Name": "string"},
        {"Supplier ID": 8.0, "Supplier Name": "integral float"},
        {"Supplier ID": "7", "Supplier Name": "string"},
        {"Supplier ID": 7.5, "Supplier Name": "float"},
        {"Supplier ID": "7.5", "Supplier Name": "its text"},
        {"Supplier ID": 9.25, "Supplier Name": "once"},
    ]
    path = tmp_path / "vendors.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(record) for record in records))

    result = live.push(path, "--chunk-size", "1")

    assert result.exit_code == 1, result.output
    duplicates = [
        (int(line["row"]), line["external_id"], line["message"])
        for line in read_csv(tmp_path / "errors.csv")
        if line["error_code"] == "duplicate_external_id"
    ]
    expected = [
        (index + 1, external_id, message)
        for index, external_id, _field, code, message in dry_run_errors(live, records)
        if code == "duplicate_external_id"
    ]
    assert duplicates == expected
    assert [row for row, _id, _message in duplicates] == [1, 2, 3, 4, 5, 6]
    assert [line["external_id"] for line in read_csv(tmp_path / "results.csv")] == ["9.25"]


@pytest.mark.parametrize(
    "value", ["V-1", "  V-1 ", "", "   ", 7, 7.0, 7.5, -3, 1e20, True, None, [1], {"a": 1}]
)
def test_external_id_is_read_by_the_services_rule(value: Any) -> None:
    from importer.validation import raw_external_id

    record = {"Supplier ID": value}
    assert push.external_id(record, "Supplier ID") == raw_external_id(record, "Supplier ID")


def test_a_push_with_duplicates_run_again_sends_nothing_twice(live: Live, tmp_path: Path) -> None:
    ids = [f"R-{n}" for n in range(9)] + ["R-0", "R-8"]
    path = write_csv(tmp_path / "vendors.csv", [[value, "Vendor", "", "", ""] for value in ids])

    first = live.push(path, "--chunk-size", "3")
    assert first.exit_code == 1, first.output
    batches = live.batches()
    first_errors = (tmp_path / "errors.csv").read_bytes()

    again = live.push(path, "--chunk-size", "3")

    assert again.exit_code == 1, again.output
    assert live.batches() == batches == 3  # 7 records sent, 3 a chunk
    assert (tmp_path / "errors.csv").read_bytes() == first_errors
    assert "3 of the chunks had already been accepted by an earlier run" in again.output


def test_a_one_chunk_push_run_again_says_its_chunk_was_replayed(live: Live, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "vendors.csv", [["O-1", "One", "", "", ""]])
    assert live.push(path).exit_code == 0

    again = live.push(path)

    assert again.exit_code == 0, again.output
    assert live.batches() == 1
    assert "The chunk had already been accepted by an earlier run and was not imported " in (
        again.output.replace("\n", " ")
    )


def test_the_survey_keeps_a_few_bytes_per_external_id(tmp_path: Path) -> None:
    count = 200_000
    path = tmp_path / "ids.ndjson"
    path.write_bytes(
        b"".join(b'{"id": "ID-%09d"}\n' % n for n in range(count)) + b'{"id": "ID-000000007"}\n'
    )
    tracemalloc.start()
    try:
        found = push.survey(path, "ndjson", "id")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (found.rows, found.duplicate_ids, found.duplicate_rows) == (
        count + 1,
        frozenset({"ID-000000007"}),
        2,
    )
    # A set of the ids would hold about 90 bytes each, a set of their hashes about 60.
    assert peak < 16 * count


# --- the outcome files ----------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outcome_files_follow_the_umask(live: Live, tmp_path: Path, umask: int) -> None:
    path = write_csv(
        tmp_path / "vendors.csv", [["M-1", "One", "", "", ""], ["M-2", "", "", "", ""]]
    )
    previous = os.umask(umask)
    try:
        result = live.push(path)
    finally:
        os.umask(previous)

    assert result.exit_code == 1, result.output
    for name in ("results.csv", "errors.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


@pytest.mark.parametrize("streamed", [False, True], ids=["inline", "streamed"])
def test_cells_a_spreadsheet_would_run_are_written_inert(
    live: Live, app: Flask, tmp_path: Path, streamed: bool
) -> None:
    ids = ['=HYPERLINK("http://x.example")', "+1+2", "@SUM(A1)", "-2+3", "-12", "F-1", 'a,"b"']
    rows = [[value, "Vendor", "", "", ""] for value in ids] + [["%BAD", "", "", "", ""]]
    path = write_csv(tmp_path / "vendors.csv", rows)
    options: tuple[str, ...] = ()
    if streamed:  # chunks whose results are read from the results stream, not the body
        services = app.extensions["importer"]
        services.settings = services.settings.replace(inline_items=1)
        options = ("--chunk-size", "4")

    result = live.push(path, *options)

    assert result.exit_code == 1, result.output
    assert [external_id for _row, external_id, _action in results(tmp_path)] == [
        '\'=HYPERLINK("http://x.example")',
        "'+1+2",
        "'@SUM(A1)",
        "'-2+3",
        "-12",  # a number stays a number
        "F-1",
        'a,"b"',
    ]
    assert [row for row, _id, _action in results(tmp_path)] == list(range(2, 9))
    streams = [path for method, path, _query in live.gate.requests if path.endswith("/results")]
    assert len(streams) == (2 if streamed else 0)
    assert [external_id for _row, external_id, _field, _code in errors(tmp_path)] == ["'%BAD"]
    stored = live.client.get("/v1/vendors?external_id=%2B1%2B2", headers=live.auth)
    assert stored.json["total"] == 1  # type: ignore[index]  # the value itself is unchanged


def test_cells_starting_with_a_tab_or_a_carriage_return_are_written_inert() -> None:
    stream = io.StringIO()
    writer = CsvWriter(stream)

    writer.writerow([2, "\t=1+2", "\r=1+2", "a\tb", "=x"])

    assert next(csv.reader(io.StringIO(stream.getvalue()))) == [
        "2",
        "'\t=1+2",
        "'\r=1+2",
        "a\tb",
        "'=x",
    ]


def test_results_say_which_records_changed_something(live: Live, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "vendors.csv", [["C-1", "One", "", "", ""], ["C-2", "Two", "", "", ""]]
    )
    assert live.push(path).exit_code == 0
    assert [line["changed"] for line in read_csv(tmp_path / "results.csv")] == ["true", "true"]
    path = write_csv(
        tmp_path / "vendors.csv", [["C-1", "One", "", "", ""], ["C-2", "2", "", "", ""]]
    )

    result = live.push(path)

    assert result.exit_code == 0, result.output
    assert [
        (line["external_id"], line["action"], line["changed"])
        for line in read_csv(tmp_path / "results.csv")
    ] == [("C-1", "updated", "false"), ("C-2", "updated", "true")]


# --- idempotent re-runs ---------------------------------------------------------------


def test_running_the_same_push_again_sends_nothing_twice(live: Live, tmp_path: Path) -> None:
    rows = [[f"R-{n}", f"Vendor {n}" if n % 4 else "", "", "", ""] for n in range(1, 11)]
    path = write_csv(tmp_path / "vendors.csv", rows)

    first = live.push(path, "--chunk-size", "3")
    assert first.exit_code == 1, first.output
    batches = live.batches()
    assert batches == 4  # 10 records, 3 a chunk
    first_results = (tmp_path / "results.csv").read_bytes()
    first_errors = (tmp_path / "errors.csv").read_bytes()

    again = live.push(path, "--chunk-size", "3")

    assert again.exit_code == 1, again.output
    assert live.batches() == batches
    assert (tmp_path / "results.csv").read_bytes() == first_results
    assert (tmp_path / "errors.csv").read_bytes() == first_errors
    assert "4 of the chunks had already been accepted by an earlier run" in again.output
    assert "8 written (8 created, 0 updated), 2 failed" in again.output  # the first run's answer


# --- asynchronous batches -------------------------------------------------------------


def _streamed_beyond_5_items(app: Flask) -> None:
    """More than 10 records a request are answered 202, and a done batch's body holds 5
    items of each list: the rest is read from the streams."""
    services = app.extensions["importer"]
    services.settings = services.settings.replace(
        sync_max_records=10, inline_items=5, chunk_size=100
    )


def test_a_202_is_followed_to_completion_and_each_list_read_in_one_stream(
    live: Live, app: Flask, tmp_path: Path
) -> None:
    # 450 records a request: answered 202; 5 items inlined, the rest in one stream a list.
    _streamed_beyond_5_items(app)
    rows = [[f"A-{n:04d}", f"Vendor {n}", "", "" if n % 50 else "bad", ""] for n in range(450)]
    path = write_csv(tmp_path / "vendors.csv", rows)

    result = live.push(path, "--chunk-size", "450")

    assert result.exit_code == 1, result.output
    assert [row for row, _id, _action in results(tmp_path)] == [n + 2 for n in range(450) if n % 50]
    assert errors(tmp_path) == [
        (n + 2, f"A-{n:04d}", "IRQ Score", "invalid_field_value") for n in range(0, 450, 50)
    ]
    gets = [(path, query) for method, path, query in live.gate.requests if method == "GET"]
    polls = [query for path, query in gets if query.startswith("wait=")]
    # The app allows waits up to 5 s: 20 and 10 are refused, 5 is used; each poll asks
    # for the status and counts alone (the lists are read whole once done).
    assert polls[:3] == ["wait=20&inline=0", "wait=10&inline=0", "wait=5&inline=0"]
    lists = [path.rsplit("/", 1)[1] + query for path, query in gets if "wait=" not in query]
    # The report, then one read a list; a result's external_id is the push's own.
    assert lists == [
        "vendors",
        "resultsfields=index%2Ccoverbase_id%2Caction%2Cchanged",
        "errorsfields=index%2Cexternal_id%2Cfield%2Cerror_code%2Cmessage",
    ]
    assert "441 written (441 created, 0 updated), 9 failed" in result.output


def test_a_chunk_written_whole_is_read_back_line_for_line_without_indexes(
    live: Live, app: Flask, tmp_path: Path
) -> None:
    _streamed_beyond_5_items(app)
    rows = [[f"B-{n:04d}", f"Vendor {n}", "", "", ""] for n in range(300)]
    path = write_csv(tmp_path / "vendors.csv", rows)

    result = live.push(path, "--chunk-size", "300")

    assert result.exit_code == 0, result.output
    streams = [query for _method, path_, query in live.gate.requests if path_.endswith("/results")]
    assert streams == ["fields=coverbase_id%2Caction%2Cchanged"]
    lines = read_csv(tmp_path / "results.csv")
    assert [(line["row"], line["external_id"]) for line in lines] == [
        (str(n + 2), f"B-{n:04d}") for n in range(300)
    ]
    stored = live.client.get("/v1/vendors?external_id=B-0123", headers=live.auth)
    assert lines[123]["coverbase_id"] == stored.json["items"][0]["id"]  # type: ignore[index]


def test_sends_go_on_while_results_are_read_up_to_the_window(
    live: Live, app: Flask, tmp_path: Path
) -> None:
    services = app.extensions["importer"]
    services.settings = services.settings.replace(inline_items=2)  # every chunk is read back
    rows = [[f"W-{n:03d}", f"Vendor {n}", "", "", ""] for n in range(30)]
    path = write_csv(tmp_path / "vendors.csv", rows)
    window = 3
    # No chunk's results can be read until `window` chunks were sent: a client that read
    # each chunk back before sending the next would stop here.
    live.gate.hold_reads_until = window

    result = live.push(path, "--chunk-size", "5", "--concurrency", "1", "--window", str(window))

    assert result.exit_code == 0, result.output
    assert [row for row, _id, _action in results(tmp_path)] == list(range(2, 32))
    open_chunks, most = 0, 0
    for method, path_, _query in live.gate.requests:
        if method == "POST":
            open_chunks += 1
            most = max(most, open_chunks)
        elif path_.endswith("/results"):
            open_chunks -= 1  # a read arrives before its chunk is let go
    assert most == window  # sent ahead up to the window, never beyond it
    assert live.gate.posts == 6


def test_a_push_stopped_midway_resumes_where_it_stopped(
    live: Live, app: Flask, tmp_path: Path
) -> None:
    rows = [[f"C-{n:03d}", f"Vendor {n}", "", "" if n % 9 else "bad", ""] for n in range(40)]
    path = write_csv(tmp_path / "vendors.csv", rows)
    live.gate.status = "500 INTERNAL SERVER ERROR"  # not worth a retry: the push stops
    live.gate.let_through, live.gate.refuse = 3, 1

    crashed = live.push(path, "--chunk-size", "5", "--concurrency", "1")

    assert crashed.exit_code == 2, crashed.output
    assert not (tmp_path / "results.csv").exists()
    accepted = live.batches()
    assert accepted == 3  # one request at a time: the three before the refused one

    resumed = live.push(path, "--chunk-size", "5", "--concurrency", "2")

    assert resumed.exit_code == 1, resumed.output  # the 5 bad IRQ scores
    assert live.batches() == 8  # each chunk imported once, whichever run sent it
    assert f"{accepted} of the chunks had already been accepted by an earlier run" in (
        resumed.output
    )
    assert [row for row, _id, _action in results(tmp_path)] == [n + 2 for n in range(40) if n % 9]
    assert [row for row, *_ in errors(tmp_path)] == [n + 2 for n in range(0, 40, 9)]


# --- retries and refusals -------------------------------------------------------------


@pytest.mark.parametrize("status", ["503 SERVICE UNAVAILABLE", "429 TOO MANY REQUESTS"])
def test_unavailable_then_available_is_retried(live: Live, tmp_path: Path, status: str) -> None:
    rows = [[f"S-{n}", f"Vendor {n}", "", "", ""] for n in range(6)]
    path = write_csv(tmp_path / "vendors.csv", rows)
    live.gate.status = status
    live.gate.refuse = 3

    result = live.push(path, "--chunk-size", "2", "--concurrency", "2")

    assert result.exit_code == 0, result.output
    assert live.gate.refused == 3
    assert live.batches() == 3
    assert [row for row, _id, _action in results(tmp_path)] == [2, 3, 4, 5, 6, 7]


def test_gives_up_with_exit_2_when_the_service_stays_unavailable(
    live: Live, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "vendors.csv", [["U-1", "One", "", "", ""]])
    live.gate.refuse = 1000

    result = live.push(path, "--retries", "2")

    assert result.exit_code == 2, result.output
    assert live.gate.refused == 3
    assert "unavailable after 3 attempts" in result.stderr
    assert not (tmp_path / "results.csv").exists()
    assert not (tmp_path / "errors.csv").exists()
    assert not list(tmp_path.glob(".push-*"))  # no temporary file left


def test_unreachable_service_is_exit_2(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "vendors.csv", [["U-1", "One", "", "", ""]])
    with make_server("127.0.0.1", 0, lambda environ, start_response: []) as server:
        port = server.server_port  # bound, then closed: nothing listens there
    argv = ["push", "vendors", str(path), "--url", f"http://127.0.0.1:{port}"]

    result = CliRunner().invoke(main, [*argv, "--api-key", "ak_x", "--retries", "0"])

    assert result.exit_code == 2
    assert "cannot reach" in result.stderr


def test_bad_api_key_is_exit_2(live: Live, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "vendors.csv", [["K-1", "One", "", "", ""]])
    live.key = "ak_" + "0" * 40

    result = live.push(path)

    assert result.exit_code == 2
    assert "refused the API key" in result.stderr
    assert live.gate.posts == 0


def test_unknown_report_is_exit_2(live: Live, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "vendors.csv", [["K-1", "One", "", "", ""]])

    result = live.push(path, slug="nope")

    assert result.exit_code == 2
    assert "no import report 'nope'" in result.stderr
    assert live.gate.posts == 0


def test_missing_file_is_exit_2(live: Live, tmp_path: Path) -> None:
    result = live.push(tmp_path / "absent.csv")

    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert live.gate.requests == []


def test_malformed_json_file_is_exit_2_before_anything_is_sent(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "vendors.json"
    path.write_text('[{"Supplier ID": "M-1", "Supplier Name": "One"}, {"Supplier ID": ')

    result = live.push(path)

    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr
    assert live.gate.posts == 0


def test_url_and_key_default_to_the_settings(live: Live, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "vendors.csv", [["E-1", "One", "", "", ""]])
    runner = CliRunner()

    result = runner.invoke(
        main,
        ["push", "vendors", str(path)],
        env={"IMPORTER_URL": live.url, "IMPORTER_API_KEY": live.key},
    )
    assert result.exit_code == 0, result.output
    assert results(tmp_path) == [(2, "E-1", "created")]

    no_key = runner.invoke(
        main, ["push", "vendors", str(path), "--url", live.url], env={"IMPORTER_API_KEY": None}
    )
    assert no_key.exit_code == 2
    assert "No API key" in no_key.output


# --- progress -------------------------------------------------------------------------


def test_progress_is_plain_lines_when_stdout_is_not_a_terminal(live: Live, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "vendors.csv", [[f"P-{n}", "x", "", "", ""] for n in range(5)])

    result = live.push(path, "--chunk-size", "2")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Pushing {path} (csv) to {live.url}/v1/import/vendors")
    assert any(
        line.startswith("vendors.csv: 5/5 records done (100%), sent 5, written 5, failed 0,")
        for line in lines
    )
    assert "\x1b[" not in result.stdout  # no terminal control codes


def test_progress_bar_on_a_terminal(live: Live, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "vendors.csv", [[f"P-{n}", "x", "", "", ""] for n in range(5)])
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    options = push.PushOptions("vendors", path, live.url, live.key, chunk_size=2)

    summary = push.push_file(options, push.RichDisplay(path.name, console))

    assert summary.exit_code == 0
    assert (summary.read, summary.written, summary.failed) == (5, 5, 0)
    final = screen.getvalue().rsplit("\r", 1)[-1]
    assert "100%" in final and "sent 5" in final and "written 5" in final
    assert "failed 0" in final and "rec/s" in final


# --- streaming ------------------------------------------------------------------------


class CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read from it."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("rb")
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.file.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)

    def close(self) -> None:
        self.file.close()
        super().close()


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_readers_stream_the_file(tmp_path: Path, fmt: str) -> None:
    records = [{"Supplier ID": f"B-{n:06d}", "Supplier Name": "x" * 40} for n in range(50_000)]
    path = tmp_path / f"big.{fmt}"
    if fmt == "csv":
        write_csv(path, [list(r.values()) for r in records], header=list(records[0]))
    elif fmt == "ndjson":
        path.write_bytes(b"\n".join(orjson.dumps(record) for record in records))
    else:
        path.write_bytes(orjson.dumps({"data": records}))
    size = path.stat().st_size
    assert size > 2_000_000

    assert inspect.isgenerator(push.read_rows(path, fmt))
    with CountingReader(path) as raw:
        stream = io.BufferedReader(raw)
        if fmt == "csv":
            rows = push.csv_rows(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
        elif fmt == "ndjson":
            rows = push.ndjson_rows(stream)
        else:
            rows = push.json_rows(stream)
        first = next(rows)
        assert first.record == records[0]
        assert raw.count < 200_000  # the first record came after reading a sliver
        assert sum(1 for _ in rows) == len(records) - 1
        assert raw.count == size


def test_a_file_within_the_one_pass_size_is_read_once_then_sent(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [[f"O-{n:05d}", f"Vendor {n}", "", "" if n % 97 else "bad", ""] for n in range(2000)]
    path = write_csv(tmp_path / "vendors.csv", rows)
    read_rows = push.read_rows
    passes: list[int] = []  # the posts made when each pass over the file ended

    def counted_pass(*args: Any, **kwargs: Any) -> Iterator[push.SourceRow]:
        yield from read_rows(*args, **kwargs)
        passes.append(live.gate.posts)

    monkeypatch.setattr(push, "read_rows", counted_pass)
    monkeypatch.setattr(push, "survey", None)  # no survey pass, in this process or a child
    options = push.PushOptions("vendors", path, live.url, live.key, chunk_size=300)

    summary = push.push_file(options)

    assert passes == [0]  # one pass over the file, ended before anything was sent
    assert (summary.chunks, summary.read_ahead) == (7, 7)
    assert (summary.read, summary.written, summary.failed) == (2000, 1979, 21)
    assert len(read_csv(tmp_path / "results.csv")) == 1979


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_reading_once_finds_what_the_survey_finds(tmp_path: Path, fmt: str) -> None:
    # Repeated ids (one of them trimmed alike) and a row that is not a record.
    ids = ["A", "B", " A", "C", "D", "B", "E", "D"]
    if fmt == "csv":
        rows = [[value, f"Vendor {n}", "", "", ""] for n, value in enumerate(ids)]
        rows.insert(3, ["X", "one", "two", "three", "four", "five", "six"])
        path = write_csv(tmp_path / "vendors.csv", rows)
        id_field = "Supplier ID"
    else:
        items = [json.dumps({"id": value, "name": f"Vendor {n}"}) for n, value in enumerate(ids)]
        items.insert(3, '"not a record"')
        path = tmp_path / "vendors.json"
        path.write_text("[" + ",".join(items) + "]")
        id_field = "id"
    chunks = push.iter_chunks(push.read_rows(path, fmt, id_field), 3, id_field=id_field)

    found, read = push.read_once(chunks)

    assert found == push.survey(path, fmt, id_field)
    assert (found.rows, found.duplicate_ids, found.duplicate_rows) == (
        9,
        frozenset({"A", "B", "D"}),
        6,
    )
    assert all(chunk.records == [] for chunk in read)  # let go once their bodies are made
    not_a_record = 5 if fmt == "csv" else 4  # a CSV's header is its row 1
    assert [problem[0] for chunk in read for problem in chunk.problems] == [not_a_record]


#: A CSV file with what makes cutting it hard: a byte-order mark, quoted fields over
#: several lines, blank lines, a row that is not a record (too many fields), and
#: external_ids repeated far apart and near each other.
AWKWARD_CSV = (
    "\ufeffid,name,notes\r\n"
    + "".join(
        f"A-{n},Vendor {n},"
        + ('"two\r\nlines, and ""quotes"""' if n % 4 == 1 else "plain")
        + "\r\n"
        + ("\r\n" if n % 7 == 3 else "")
        + ("X-1,one,two,three\r\n" if n == 5 else "")
        for n in range(14)
    )
    + 'A-3,again,"ends\nhere"\r\nA-13,last,\r\n'
)


def _awkward_file(tmp_path: Path) -> Path:
    path = tmp_path / "awkward.csv"
    path.write_bytes(AWKWARD_CSV.encode())
    return path


def _chunks_of(path: Path) -> Callable[[frozenset[str]], Any]:
    """The file's chunks of 4 rows, as ``surveyed_chunks`` makes them."""
    return lambda duplicate_ids: push.iter_chunks(
        push.read_rows(path, "csv", "id"), 4, id_field="id", duplicate_ids=duplicate_ids
    )


def _sequential(path: Path) -> tuple[push.Survey, list[tuple[Any, ...]]]:
    """The survey and the chunks of a file read in order, in this process."""
    chunks = _chunks_of(path)(frozenset())
    return push.survey(path, "csv", "id"), [_chunk_facts(chunk) for chunk in chunks]


def _chunk_facts(chunk: push.Chunk) -> tuple[Any, ...]:
    body = chunk.body if chunk.body is not None else push.chunk_body(chunk)
    return chunk.position, chunk.index, chunk.rows, chunk.ids, chunk.problems, body


@pytest.mark.skipif(not push.SURVEY_APART, reason="a CSV file is cut in two on Linux only")
def test_a_csv_file_cut_anywhere_is_surveyed_and_read_as_in_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _awkward_file(tmp_path)
    expected = _sequential(path)
    assert expected[0].duplicate_ids == {"A-3", "A-13"}
    options = push.PushOptions("vendors", path, "http://unused", "key", chunk_size=4, window=2)
    whole_surveys = []  # the cuts where the parts did not meet: the file surveyed whole
    survey = push.survey

    def counted_survey(*args: Any) -> push.Survey:
        whole_surveys.append(args)
        return survey(*args)

    monkeypatch.setattr(push, "survey", counted_survey)
    # Every line start, inside a quoted field or not.
    cuts = {push.cut_at(path, near) for near in range(path.stat().st_size)} - {None}
    assert len(cuts) == AWKWARD_CSV.count("\n")
    for cut in sorted(cuts, key=lambda cut: cut.offset if cut else 0):
        assert cut is not None
        found, read, ahead = push.survey_split(path, "id", options, cut, _chunks_of(path))
        assert (found, [_chunk_facts(chunk) for chunk in [*read, *ahead]]) == expected, cut
    # Cut inside a quoted field, on a blank line or on the header, the file is surveyed
    # whole; on a row's first line, the two parts meet.
    assert 0 < len(whole_surveys) < len(cuts) / 2


@pytest.mark.skipif(not push.SURVEY_APART, reason="a CSV file is cut in two on Linux only")
def test_a_survey_child_that_dies_leaves_the_survey_to_the_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _awkward_file(tmp_path)
    monkeypatch.setattr(push, "survey_after", lambda *args: os._exit(1))
    options = push.PushOptions("vendors", path, "http://unused", "key", chunk_size=4)
    cut = push.csv_cut(path, path.stat().st_size)
    assert cut is not None

    found, read, ahead = push.survey_split(path, "id", options, cut, _chunks_of(path))

    assert (found, [_chunk_facts(chunk) for chunk in [*read, *ahead]]) == _sequential(path)


@pytest.mark.skipif(not push.SURVEY_APART, reason="a CSV file is cut in two on Linux only")
def test_a_file_that_is_not_utf8_after_the_cut_is_refused(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [[f"U-{n:05d}", f"Vendor {n}", "", "", ""] for n in range(2000)]
    path = write_csv(tmp_path / "vendors.csv", rows)
    path.write_bytes(path.read_bytes() + b"U-99999,Caf\xe9,,,\r\n")  # Latin-1, at the end
    monkeypatch.setattr(push, "SPLIT_FROM_BYTES", 0)

    result = live.push(path)

    assert result.exit_code == 2
    assert "is not UTF-8 text" in result.output
    assert live.batches() == 0


def test_a_50000_row_file_is_sent_while_it_is_read(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [[f"L-{n:06d}", f"Vendor {n}", "", "", ""] for n in range(50_000)]
    path = write_csv(tmp_path / "large.csv", rows)
    read_ids, read_rows = push.read_external_ids, push.read_rows
    posts_when_read: dict[str, int] = {}

    def survey_pass(*args: Any, **kwargs: Any) -> Iterator[str | None]:
        yield from read_ids(*args, **kwargs)
        posts_when_read["survey"] = live.gate.posts

    def push_pass(*args: Any, **kwargs: Any) -> Iterator[push.SourceRow]:
        yield from read_rows(*args, **kwargs)
        posts_when_read["push"] = live.gate.posts

    monkeypatch.setattr(push, "read_external_ids", survey_pass)
    monkeypatch.setattr(push, "read_rows", push_pass)
    monkeypatch.setattr(push, "ONE_PASS_BYTES", 0)  # surveyed, as a file too large to read once
    monkeypatch.setattr(push, "SURVEY_APART", False)  # both passes in this process

    result = live.push(path, "--chunk-size", "5000", "--concurrency", "2")

    assert result.exit_code == 0, result.output
    # The survey pass sent nothing; by the time the push pass had read the last row,
    # most chunks had been sent (at most 2 in flight and one being filled).
    assert posts_when_read["survey"] == 0
    assert posts_when_read["push"] >= 7
    assert live.gate.posts == 10
    lines = read_csv(tmp_path / "results.csv")
    assert len(lines) == 50_000
    assert lines[-1]["row"] == "50001" and lines[-1]["external_id"] == "L-049999"


def _survey_held_until_chunks_are_read_ahead(monkeypatch: pytest.MonkeyPatch, chunks: int) -> None:
    """The survey (in its child process) starts reading only once this process has made
    the bodies of ``chunks`` chunks: chunks are then surely read ahead. (The file is
    surveyed, as one too large to read once.)"""
    monkeypatch.setattr(push, "ONE_PASS_BYTES", 0)
    bodies_made = multiprocessing.get_context("fork").Event()
    read_ids, chunk_body = push.read_external_ids, push.chunk_body
    made = 0

    def held_survey_pass(*args: Any, **kwargs: Any) -> Iterator[str | None]:
        assert bodies_made.wait(30), "no chunk was read ahead"
        yield from read_ids(*args, **kwargs)

    def counted(chunk: push.Chunk) -> bytes:
        nonlocal made
        made += 1
        if made == chunks:
            bodies_made.set()
        return chunk_body(chunk)

    monkeypatch.setattr(push, "read_external_ids", held_survey_pass)
    monkeypatch.setattr(push, "chunk_body", counted)


@pytest.mark.skipif(not push.SURVEY_APART, reason="the survey runs apart on Linux only")
def test_chunks_read_while_the_survey_runs_are_the_files_own(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [[f"R-{n:05d}", f"Vendor {n}", "", "" if n % 97 else "bad", ""] for n in range(2000)]
    path = write_csv(tmp_path / "vendors.csv", rows)
    _survey_held_until_chunks_are_read_ahead(monkeypatch, 3)
    options = push.PushOptions("vendors", path, live.url, live.key, chunk_size=300, window=8)

    summary = push.push_file(options)

    assert summary.read_ahead >= 3
    assert (summary.read, summary.written, summary.failed) == (2000, 1979, 21)
    first = (tmp_path / "results.csv").read_bytes(), (tmp_path / "errors.csv").read_bytes()
    # The survey first, then every chunk read in this process: the very same chunks (by
    # their Idempotency-Keys, every one replayed) and the same outcome files.
    monkeypatch.setattr(push, "SURVEY_APART", False)
    again = push.push_file(options)
    assert (again.read_ahead, again.chunks, again.replayed) == (0, 7, 7)
    assert live.batches() == 7
    assert (
        (tmp_path / "results.csv").read_bytes(),
        (tmp_path / "errors.csv").read_bytes(),
    ) == first


@pytest.mark.skipif(not push.SURVEY_APART, reason="the survey runs apart on Linux only")
def test_chunks_read_ahead_are_dropped_when_the_survey_finds_a_repeated_id(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [[f"D-{n:05d}", f"Vendor {n}", "", "", ""] for n in range(1200)]
    rows.append(["D-00001", "Again", "", "", ""])  # the last row repeats the second's id
    path = write_csv(tmp_path / "vendors.csv", rows)
    _survey_held_until_chunks_are_read_ahead(monkeypatch, 2)
    options = push.PushOptions("vendors", path, live.url, live.key, chunk_size=300, window=8)

    summary = push.push_file(options)

    assert (summary.read_ahead, summary.duplicates, summary.written) == (0, 2, 1199)
    assert [(row, code) for row, _id, _field, code in errors(tmp_path)] == [
        (3, "duplicate_external_id"),
        (1202, "duplicate_external_id"),
    ]
    assert "D-00001" not in {external_id for _row, external_id, _action in results(tmp_path)}
    stored = live.client.get("/v1/vendors?external_id=D-00001", headers=live.auth)
    assert stored.json["total"] == 0  # type: ignore[index]  # neither occurrence was sent
    assert live.batches() == 4  # 1,199 records, 300 a chunk


# --- pieces ---------------------------------------------------------------------------


def test_idempotency_key_depends_on_slug_chunk_and_content() -> None:
    key = push.idempotency_key("vendors", 0, b'{"data":[]}')
    assert key == push.idempotency_key("vendors", 0, b'{"data":[]}')
    assert key.startswith("push-") and len(key) <= 255 and key.isascii()
    others = {
        push.idempotency_key("services", 0, b'{"data":[]}'),
        push.idempotency_key("vendors", 1, b'{"data":[]}'),
        push.idempotency_key("vendors", 0, b'{"data":[{}]}'),
    }
    assert key not in others and len(others) == 3


def test_chunks_are_made_lazily() -> None:
    pulled = 0

    def rows() -> Iterator[push.SourceRow]:
        nonlocal pulled
        for n in range(1, 1_000_000):
            pulled += 1
            yield push.SourceRow(n, {"n": n})

    chunks = push.iter_chunks(rows(), 100)
    first = next(chunks)
    assert first.rows == list(range(1, 101)) and first.index == 0
    assert pulled == 100


def test_retry_after_is_honoured() -> None:
    api = push.Api("http://127.0.0.1:1", "ak_x", backoff=0.5)
    response = requests.Response()
    response.headers["Retry-After"] = "7"
    assert api._delay(0, response) == 7.0
    response.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"  # in the past
    assert api._delay(0, response) == 0.0
    assert 1.0 <= api._delay(2, None) <= 2.0
