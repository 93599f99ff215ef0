"""The bulk lane's caps on PostgreSQL, with release passes racing from many threads
(as the web, every worker process and every worker's timer release at once)."""

from __future__ import annotations

import threading
from collections import Counter

import sqlalchemy as sa

from importer import scheduler
from importer.config import Settings
from importer.models import ChunkStatus, ImportChunk
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox, vendor
from tests.integration.factories import vendor_report
from worker.tasks import run_chunk

SLOTS, PER_ORG = 4, 2


def settings_for(pg) -> Settings:
    return Settings.from_env(
        {"DATABASE_URL": pg.url}, worker_concurrency=SLOTS, org_max_in_flight=PER_ORG
    )


def at_once(count: int, target) -> list:
    """Run ``target(i)`` in ``count`` threads released together; their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as error:  # re-raised in the test's thread below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def test_racing_release_passes_never_exceed_the_caps(fresh_pg):
    pg = fresh_pg
    settings = settings_for(pg)
    orgs = []
    for n in range(3):
        org, report = vendor_report(pg, f"racing-{n}")
        accept_records(pg, org, report, [vendor(i) for i in range(20)], chunk_size=2)
        orgs.append(org.id)
    outboxes = [recording_outbox(pg, settings) for _ in range(8)]

    sent_by_each = at_once(8, lambda i: outboxes[i].release())

    sent = [message for messages in sent_by_each for message in messages]
    assert len(sent) == SLOTS
    assert len({message.chunk_id for message in sent}) == SLOTS  # none sent twice
    assert max(Counter(message.org_id for message in sent).values()) <= PER_ORG
    assert len({message.org_id for message in sent}) >= 2  # shared, not one org's

    # Chunks finishing at once each release the next: the caps still hold, and every
    # chunk ends up written exactly once.
    finished: list[int] = []
    while True:
        with pg.session() as session:
            flying = scheduler.in_flight_by_org(session)
            assert sum(flying.values()) <= SLOTS and max(flying.values(), default=0) <= PER_ORG
            running = list(
                session.scalars(
                    sa.select(ImportChunk.id).where(
                        ImportChunk.status == ChunkStatus.PENDING,
                        ImportChunk.dispatched_at.is_not(None),
                    )
                )
            )
        if not running:
            break
        at_once(
            len(running),
            lambda i, running=running: run_chunk(
                recording_outbox(pg, settings), PollingNotifier(), running[i]
            ),
        )
        finished += running
    assert len(finished) == len(set(finished)) == 30
