"""The embedded broker (a folder of message files) under concurrent use, and bad files in it.

Messages go through the transport exactly as the service configures it: sent by
``importer.broker.producer_app`` (what the web and the outbox send with), read by a
kombu consumer of the worker's app (``worker.celery_app.create_celery``).
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
import uuid
from pathlib import Path
from typing import Any

from kombu import Connection, Consumer, Exchange, Queue

from importer.broker import BULK_QUEUE, IMPORT_CHUNK_TASK, celery_config, producer_app
from importer.config import Settings
from importer.embedded_broker import BAD_FOLDER, Transport
from worker.celery_app import create_celery

WRITER_PROCESSES = 3
THREADS_PER_WRITER = 4
MESSAGES_PER_THREAD = 40


def embedded_settings(data_dir: Path) -> Settings:
    return Settings.from_env({"IMPORTER_DATA_DIR": str(data_dir)})


def padding(writer: int, thread: int, n: int) -> str:
    """A body large enough that writing it is not one instant, and checkable on arrival."""
    return f"{writer}/{thread}/{n};" * 2000


def write_messages(data_dir: str, writer: int, go: Any) -> None:
    """One writer process: threads sending chunk tasks as the web does."""
    app = producer_app(embedded_settings(Path(data_dir)))

    def send(thread: int) -> None:
        go.wait()
        for n in range(MESSAGES_PER_THREAD):
            send_chunk(app, writer, thread, n, padding(writer, thread, n))

    threads = [threading.Thread(target=send, args=(t,)) for t in range(THREADS_PER_WRITER)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def send_chunk(app: Any, *args: Any) -> None:
    app.send_task(IMPORT_CHUNK_TASK, args=list(args), queue=BULK_QUEUE)


def consume(app: Any, until: Any, idle_timeout: float = 10) -> list[Any]:
    """Message bodies from the imports queue, until ``until(bodies)`` or nothing comes
    for ``idle_timeout`` seconds (a guard against hanging, not a timing expectation)."""
    bodies: list[Any] = []

    def received(body: Any, message: Any) -> None:
        bodies.append(body)
        message.ack()

    with app.connection_for_read() as connection:
        queue = app.amqp.queues[BULK_QUEUE]
        with Consumer(connection, [queue], accept=["json"], callbacks=[received]):
            while not until(bodies):
                try:
                    connection.drain_events(timeout=idle_timeout)
                except TimeoutError:  # socket.timeout
                    break
    return bodies


def test_the_embedded_deployment_uses_this_transport(tmp_path):
    settings = embedded_settings(tmp_path)
    for app in (producer_app(settings), create_celery(settings)):
        with app.connection_for_write() as connection:
            assert isinstance(connection.transport, Transport)


def test_concurrent_writers_and_a_reader_deliver_every_message_once_and_whole(tmp_path):
    settings = embedded_settings(tmp_path)
    total = WRITER_PROCESSES * THREADS_PER_WRITER * MESSAGES_PER_THREAD
    spawn = multiprocessing.get_context("spawn")
    go = spawn.Event()
    writers = [
        spawn.Process(target=write_messages, args=(str(tmp_path), w, go))
        for w in range(WRITER_PROCESSES)
    ]
    for writer in writers:
        writer.start()
    go.set()
    try:
        # The reader runs while the writers write.
        bodies = consume(create_celery(settings), until=lambda got: len(got) >= total)
    finally:
        for writer in writers:
            writer.join(60)
    assert [writer.exitcode for writer in writers] == [0] * WRITER_PROCESSES

    ids = [tuple(args[:3]) for args, _kwargs, _embed in bodies]
    expected = {
        (w, t, n)
        for w in range(WRITER_PROCESSES)
        for t in range(THREADS_PER_WRITER)
        for n in range(MESSAGES_PER_THREAD)
    }
    assert len(ids) == total  # none twice
    assert set(ids) == expected  # none lost
    assert all(args[3] == padding(*args[:3]) for args, _kwargs, _embed in bodies)
    # Nothing was taken for a bad file, and no message is left behind.
    assert not (settings.broker_folder / BAD_FOLDER).exists()
    assert sorted(p.name for p in settings.broker_folder.iterdir()) == ["control"]


def test_bad_message_files_are_set_aside_and_the_reader_goes_on(tmp_path, caplog):
    settings = embedded_settings(tmp_path)
    app, worker_app = producer_app(settings), create_celery(settings)
    send_chunk(app, "good")
    [message_file] = settings.broker_folder.glob(f"*.{BULK_QUEUE}.msg")
    whole = message_file.read_bytes()
    # Named to come before the good message: the reader meets them first.
    bad = {
        "truncated": whole[: len(whole) // 2],
        "empty": b"",
        "not-an-object": b"[1, 2, 3]",
        "no-envelope": b'{"body": "e30="}',
        "bad-base64": re.sub(rb'"body": "[^"]*"', b'"body": "W1s"', whole),
        "not-utf8": b"\xff\xfe\x00garbage",
    }
    for n, content in enumerate(bad.values()):
        (settings.broker_folder / f"0_{n}_{uuid.uuid4()}.{BULK_QUEUE}.msg").write_bytes(content)

    with caplog.at_level(logging.ERROR, logger="importer.embedded_broker"):
        bodies = consume(worker_app, until=lambda got: len(got) >= 1)
    assert [args for args, _kwargs, _embed in bodies] == [["good"]]
    set_aside = sorted((settings.broker_folder / BAD_FOLDER).iterdir())
    assert sorted(path.read_bytes() for path in set_aside) == sorted(bad.values())
    assert len([r for r in caplog.records if "set aside" in r.getMessage()]) == len(bad)
    assert list(settings.broker_folder.glob("*.msg")) == []

    # The reader keeps reading later messages.
    send_chunk(app, "after")
    bodies = consume(worker_app, until=lambda got: len(got) >= 1)
    assert [args for args, _kwargs, _embed in bodies] == [["after"]]


def test_two_readers_of_one_folder_never_get_the_same_message(tmp_path):
    settings = embedded_settings(tmp_path)
    app = producer_app(settings)
    for n in range(50):
        send_chunk(app, n)
    got: list[list[Any]] = [[], []]

    def read(slot: int) -> None:
        # Each reads until the folder has no message left for anyone.
        got[slot] = consume(
            create_celery(settings),
            until=lambda _: not any(settings.broker_folder.glob(f"*.{BULK_QUEUE}.msg")),
            idle_timeout=2,
        )

    readers = [threading.Thread(target=read, args=(slot,)) for slot in (0, 1)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    delivered = sorted(args[0] for bodies in got for args, _kwargs, _embed in bodies)
    assert delivered == list(range(50))


def test_queues_bound_at_once_to_a_new_exchange_are_all_kept(tmp_path):
    """The web and the worker declare their queues as they start, maybe at the same time."""
    options = celery_config(embedded_settings(tmp_path))["broker_transport_options"]
    threads, exchanges = 8, 20
    errors: list[Exception] = []

    def bind(exchange: str, n: int, go: threading.Barrier) -> None:
        with Connection("filesystem://", transport=Transport, transport_options=options) as conn:
            channel = conn.default_channel
            go.wait()
            try:
                Queue(f"{exchange}-q{n}", Exchange(exchange, "direct"), f"q{n}")(channel).declare()
            except Exception as error:
                errors.append(error)

    for e in range(exchanges):
        go = threading.Barrier(threads)
        binders = [threading.Thread(target=bind, args=(f"ex{e}", n, go)) for n in range(threads)]
        for binder in binders:
            binder.start()
        for binder in binders:
            binder.join()
    assert errors == []
    for e in range(exchanges):
        with Connection("filesystem://", transport=Transport, transport_options=options) as conn:
            table = conn.default_channel.get_table(f"ex{e}")
        assert sorted(binding.queue for binding in table) == [f"ex{e}-q{n}" for n in range(threads)]
