"""The outbox: the one seam between the database and the broker.

Chunks and webhook deliveries are rows committed before anyone is told about them;
a broker message is only a nudge to look at one. Every hand-over of the service goes
through an :class:`Outbox`:

    after_accept   the web, once a batch is committed: its interactive chunks at once;
                   for a bulk batch, a release pass of the scheduler; the webhooks of
                   a batch that ended as it was accepted
    after_chunk    a worker, once a chunk's write committed: a release pass (a bulk
                   slot is free) and, when the batch ended, its webhook deliveries
    maintain       every worker's timer: the sweep of abandoned chunks, the relay of
                   what the broker never got or lost, a release pass, the webhook relay
    redrive        an operator (``importer batches retry``, the ops page's Retry)

The rule for chunks, everywhere: a chunk is marked handed over (``dispatched_at``)
in a transaction that holds its row lock (so two passes never pick the same chunk),
and its message is sent once that commits (so it never arrives before its row, and
no broker round trip happens under a lock); a failed send takes the mark back. A
crash between the commit and the send is repaired by the relay, which re-sends what
was handed over long ago and never started. The web's interactive chunks are marked
in the very transaction that accepts their batch (no extra write on the hot path).
Webhook deliveries are sent under their row lock, then marked (see
``importer.webhooks.mark_dispatched``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import redrive, scheduler, webhooks
from importer.batches import Accepted, ChunkFinished
from importer.broker import Broker, ChunkMessage
from importer.config import Settings
from importer.db import Database, utcnow
from importer.models import ChunkStatus, ImportChunk, Lane

log = logging.getLogger(__name__)

#: Rows handed over per relay pass.
RELAY_BATCH = 500


def _messages(session: Session, where: Any, limit: int | None = None) -> list[ChunkMessage]:
    """The pending chunks ``where`` selects, row-locked (skipping locked rows, so a
    concurrent pass or a worker writing one keeps it), as messages."""
    query = (
        sa.select(ImportChunk.id, ImportChunk.batch_id, ImportChunk.org_id, ImportChunk.lane)
        .where(ImportChunk.status == ChunkStatus.PENDING, where)
        .order_by(ImportChunk.id)
        .with_for_update(skip_locked=True)
    )
    if limit is not None:
        query = query.limit(limit)
    return [
        ChunkMessage(chunk_id, batch_id, org_id, Lane(lane))
        for chunk_id, batch_id, org_id, lane in session.execute(query)
    ]


def _mark(session: Session, messages: Sequence[ChunkMessage], at: dt.datetime | None) -> None:
    if messages:
        session.execute(
            sa.update(ImportChunk)
            .where(ImportChunk.id.in_([message.chunk_id for message in messages]))
            .values(dispatched_at=at)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True)
class MaintenancePass:
    """What one :meth:`Outbox.maintain` pass did."""

    swept: int = 0
    relayed: int = 0
    released: int = 0
    webhooks: int = 0
    lost_queues: bool = False


@dataclass(frozen=True)
class Redriven:
    """A re-drive (``importer.redrive.redrive_batch``) and the hand-over that followed."""

    outcome: redrive.RedriveOutcome
    #: Chunks handed to the broker right after the re-drive's commit.
    sent: int
    #: Why they could not be handed over (the relay sends them), or None.
    send_error: str | None = None
    #: Bulk chunks left in the backlog, waiting for their turn in the bulk lane.
    waiting: int = 0

    def describe(self) -> str:
        text = self.outcome.describe()
        if self.send_error is not None:
            return (
                f"{text} The broker could not be reached ({self.send_error}); "
                f"the relay will send the {len(self.outcome.to_send)} chunk(s) when it is back."
            )
        if self.sent:
            text = f"{text} Sent {self.sent} chunk(s) to the broker."
        if self.waiting:
            text = f"{text} {self.waiting} chunk(s) wait for their turn in the bulk lane."
        return text

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self.outcome)
        data["to_send"] = list(self.outcome.to_send)
        data.update(
            changed=self.outcome.changed,
            sent=self.sent,
            send_error=self.send_error,
            waiting=self.waiting,
            message=self.describe(),
        )
        return data


class Outbox:
    """Hands committed work to the broker for one process (web, worker, or command)."""

    def __init__(self, settings: Settings, db: Database, broker: Broker) -> None:
        self.settings = settings
        self.db = db
        self.broker = broker

    # --- the web ------------------------------------------------------------------

    def after_accept(self, accepted: Accepted) -> None:
        """Hand a just-committed batch's work over (never raises: what cannot be
        handed over now is left to the relay or the next release pass)."""
        batch_id = accepted.batch.id
        if not accepted.chunk_ids:
            if accepted.deliveries:  # nothing to write: the batch ended when accepted
                self.hand_over_deliveries(batch_id)
            return
        if accepted.lane == Lane.BULK:
            self.release_quietly()
            return
        # Interactive: marked dispatched when accepted (see the module's docstring).
        messages = [
            ChunkMessage(chunk_id, batch_id, accepted.batch.org_id, Lane.INTERACTIVE)
            for chunk_id in accepted.chunk_ids
        ]
        try:
            self._send(messages)
        except Exception:
            log.warning("could not queue batch %s now; the relay will", batch_id, exc_info=True)
            return
        log.info("queued chunk(s) %s of batch %s", accepted.chunk_ids, batch_id)

    def _send(self, messages: Sequence[ChunkMessage]) -> None:
        """Send chunks whose hand-over was just committed; if the broker refuses, take
        the marks back (so the relay or the next release pass sends them) and raise."""
        if not messages:
            return
        try:
            self.broker.send_chunks(messages)
        except Exception:
            try:
                with self.db.session() as session:
                    _mark(session, messages, None)
            except Exception:
                log.warning("could not take back the hand-over of %d chunk(s)", len(messages))
            raise

    # --- the workers --------------------------------------------------------------

    def after_chunk(self, finished: ChunkFinished) -> None:
        """After a chunk's commit: its bulk slot goes to the next chunk, and the
        webhook deliveries of a batch that ended are queued (never raises)."""
        if finished.lane == Lane.BULK:
            self.release_quietly()
        if finished.batch_done and finished.deliveries:
            self.hand_over_deliveries(finished.batch_id)

    def release(self) -> list[ChunkMessage]:
        """One release pass of the bulk lane's scheduler; returns what it sent.
        Raises when the database or the broker cannot be reached (nothing stays marked)."""
        with self.db.session() as session:
            slots = scheduler.bulk_slots(session, self.settings)
            released = scheduler.release(
                session, slots=slots, per_org=scheduler.org_cap(self.settings, slots)
            )
        self._send(released)
        if released:
            log.info(
                "released %d bulk chunk(s): %s",
                len(released),
                ", ".join(f"{m.chunk_id} (org {m.org_id})" for m in released[:10]),
            )
        return released

    def release_quietly(self) -> list[ChunkMessage]:
        try:
            return self.release()
        except Exception:
            log.warning("release pass failed; the next one will", exc_info=True)
            return []

    def hand_over_deliveries(self, batch_id: str) -> int:
        """Queue the batch's new webhook deliveries (never raises: the relay will)."""
        try:
            with self.db.session() as session:
                handed_over = webhooks.undispatched(session, batch_id)
                if handed_over:
                    self.broker.send_deliveries([delivery_id for delivery_id, _ in handed_over])
                    webhooks.mark_dispatched(session, handed_over)
        except Exception:
            log.warning(
                "could not queue the webhooks of batch %s now; the relay will",
                batch_id,
                exc_info=True,
            )
            return 0
        if handed_over:
            log.info("queued %d webhook delivery(ies) of batch %s", len(handed_over), batch_id)
        return len(handed_over)

    # --- the timer ----------------------------------------------------------------

    def sweep(self) -> int:
        """Put chunks abandoned mid-write back in their lane; returns how many. A live
        worker holds a chunk's row lock for its whole write, so a chunk "processing"
        for long whose lock is free was left by a worker that died."""
        cutoff = utcnow() - dt.timedelta(seconds=self.settings.stuck_after_seconds)
        with self.db.session() as session:
            chunk_ids = list(
                session.scalars(
                    sa.select(ImportChunk.id)
                    .where(
                        ImportChunk.status == ChunkStatus.PROCESSING,
                        ImportChunk.started_at < cutoff,
                    )
                    .with_for_update(skip_locked=True)
                )
            )
            if chunk_ids:
                session.execute(
                    sa.update(ImportChunk)
                    .where(ImportChunk.id.in_(chunk_ids))
                    .values(status=ChunkStatus.PENDING, dispatched_at=None)
                )
        if chunk_ids:
            log.warning("sweep re-queued %d abandoned chunk(s): %s", len(chunk_ids), chunk_ids[:10])
        return len(chunk_ids)

    def relay(self, *, broker_lost_queues: bool = False) -> int:
        """Send what the broker should have and does not; returns how many chunks:

        * interactive chunks nobody handed over (the web's send failed, or it died
          between its commit and its send), after ``IMPORTER_RELAY_GRACE_SECONDS``;
        * chunks of either lane handed over more than
          ``IMPORTER_REDISPATCH_AFTER_SECONDS`` ago and still not started (their
          message was lost), or every handed-over one when the broker lost its queues.

        Bulk chunks never handed over are the scheduler's backlog, not the relay's.
        """
        now = utcnow()
        never_sent = sa.and_(
            ImportChunk.lane == Lane.INTERACTIVE,
            ImportChunk.dispatched_at.is_(None),
            ImportChunk.created_at < now - dt.timedelta(seconds=self.settings.relay_grace_seconds),
        )
        lost = (
            ImportChunk.dispatched_at.is_not(None)
            if broker_lost_queues
            else ImportChunk.dispatched_at
            < now - dt.timedelta(seconds=self.settings.redispatch_after_seconds)
        )
        with self.db.session() as session:
            messages = _messages(session, sa.or_(never_sent, lost), limit=RELAY_BATCH)
            _mark(session, messages, now)
        self._send(messages)
        if messages:
            log.info(
                "relay sent %d chunk(s): %s", len(messages), [m.chunk_id for m in messages[:10]]
            )
        return len(messages)

    def relay_webhooks(self, *, broker_lost_queues: bool = False) -> int:
        """Send webhook deliveries that are due and that the broker does not have."""
        with self.db.session() as session:
            handed_over = webhooks.due_for_relay(
                session,
                grace_seconds=self.settings.relay_grace_seconds,
                redispatch_after_seconds=self.settings.redispatch_after_seconds,
                broker_lost_queues=broker_lost_queues,
                limit=RELAY_BATCH,
            )
            if handed_over:
                self.broker.send_deliveries([delivery_id for delivery_id, _ in handed_over])
                webhooks.mark_dispatched(session, handed_over)
        if handed_over:
            log.info(
                "relay sent %d webhook delivery(ies): %s",
                len(handed_over),
                [delivery_id for delivery_id, _ in handed_over[:10]],
            )
        return len(handed_over)

    def maintain(self) -> MaintenancePass:
        """One pass of the workers' timer (never raises: the next tick tries again)."""
        swept = relayed = released = sent_webhooks = 0
        lost = False
        try:
            swept = self.sweep()
            lost = self.broker.lost_queues()
            if lost:
                log.warning("the broker came back without its queues; re-sending waiting work")
            relayed = self.relay(broker_lost_queues=lost)
            released = len(self.release())
        except Exception:
            # The database or the broker is down: try again on the next tick.
            log.warning("relay/sweep/release pass failed", exc_info=True)
        try:
            sent_webhooks = self.relay_webhooks(broker_lost_queues=lost)
        except Exception:
            log.warning("webhook relay pass failed", exc_info=True)
        return MaintenancePass(swept, relayed, released, sent_webhooks, lost)

    # --- operators ----------------------------------------------------------------

    def redrive(self, batch_id: str, *, check_broker: bool = True) -> Redriven:
        """Re-drive a batch (committed), then hand its chunks over: the interactive
        lane's at once, the bulk lane's through a release pass. With the broker down
        they are left to the relay and the timer's release passes. Raises
        ``importer.redrive.BatchNotFound``."""
        with self.db.session() as session:
            outcome = redrive.redrive_batch(session, batch_id)
        if not outcome.to_send:
            return Redriven(outcome, 0)
        try:
            if check_broker:
                self.broker.ping()
            with self.db.session() as session:
                messages = _messages(
                    session,
                    sa.and_(
                        ImportChunk.id.in_(outcome.to_send),
                        ImportChunk.dispatched_at.is_(None),
                        ImportChunk.lane == Lane.INTERACTIVE,
                    ),
                )
                _mark(session, messages, utcnow())
            self._send(messages)
            released = [m for m in self.release() if m.batch_id == batch_id]
        except Exception as error:
            log.warning("could not queue re-driven batch %s now; the relay will", batch_id)
            return Redriven(outcome, 0, f"{type(error).__name__}: {error}"[:300])
        with self.db.session() as session:
            waiting = session.scalar(
                sa.select(sa.func.count()).where(
                    ImportChunk.batch_id == batch_id,
                    ImportChunk.lane == Lane.BULK,
                    ImportChunk.status == ChunkStatus.PENDING,
                    ImportChunk.dispatched_at.is_(None),
                )
            )
        return Redriven(outcome, len(messages) + len(released), waiting=int(waiting or 0))
