"""Records re-sent exactly as before: known unchanged without being validated again.

An integration that pushes its whole list every night sends mostly the very records it
sent the night before. Each row remembers the digest of the record whose values it
holds (``source_digest``): the record's JSON, as sent, and everything its validation
depends on besides (the base object, the mapping, the required fields, the org's
choices, and the rules themselves: the compiled validator's text and the releases of
this service and of marshmallow). Validation is a function of those alone, so a record
with the stored digest would give the stored values: it is answered ``updated``,
``changed: false`` with no validation, no compare and no write.

Only a record that gives no warning takes part (an unmapped field warns on every
import), and only while no older batch of the org may still write the objects
(:func:`importer.upsert.older_writes_pending`, as for any record that changes
nothing). Any other write of the row sets the digest of its own record, or none, so a
stored digest always names a record whose values the row holds. A record sent in
another form (keys in another order, another number format) is simply validated and
compared value by value, as before.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.orm import Session

from importer import upsert
from importer.validation import raw_external_id, validator_for


def _release(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


#: The releases whose code decides the values: the service's and marshmallow's.
_RELEASES = [_release(name) for name in ("bulk-importer", "marshmallow")]

#: Bumped when what a digest covers changes; the digests stored before then no longer
#: match anything, so those records are validated and compared once more.
_DIGEST_FORMAT = b"source-digest-1"


class SourceDigests:
    """The digests of one chunk's records, for one report version's validation."""

    def __init__(
        self,
        base_object: str,
        mapping: Mapping[str, str],
        required: Sequence[str],
        org_choices: Mapping[str, Sequence[str]],
    ) -> None:
        self._mapped = frozenset(mapping.values())
        rules = validator_for(base_object, mapping, required, org_choices)
        context = orjson.dumps(
            [
                base_object,
                sorted(mapping.items()),
                sorted(required),
                org_choices,
                rules.__doc__,
                # The rules the text only names (marshmallow's validators) and those of
                # this release: a new version of either validates every record once more.
                _RELEASES,
            ],
            option=orjson.OPT_SORT_KEYS,
        )
        self._context = hashlib.blake2b(_DIGEST_FORMAT, digest_size=16)
        self._context.update(len(context).to_bytes(8, "big") + context)

    def of(self, record: Any) -> str | None:
        """The record's digest; None for a record that is not a JSON object of mapped
        fields only (it warns, or it fails: it is validated every time)."""
        if type(record) is not dict or not self._mapped.issuperset(record):
            return None
        digest = self._context.copy()
        digest.update(orjson.dumps(record))
        return digest.hexdigest()

    def digests(self, payload: Sequence[tuple[int, Any]]) -> dict[int, str]:
        """``{index: digest}`` of the records that have one."""
        found = {}
        for index, record in payload:
            digest = self.of(record)
            if digest is not None:
                found[index] = digest
        return found


@dataclass
class SentBefore:
    """What one read of a chunk's external_ids found, before validation."""

    #: ``{index: (external_id, object id)}`` of the records whose object holds the
    #: values of that very record (its stored digest is the record's).
    same: dict[int, tuple[str, str]] = field(default_factory=dict)
    #: The external_ids read and not found: the write need not read them again.
    absent: frozenset[str] = frozenset()


def sent_before(
    session: Session,
    *,
    org_id: str,
    base_object: str,
    seq: int,
    external_id_field: str | None,
    payload: Sequence[tuple[int, Any]],
    digests: Mapping[int, str],
) -> SentBefore:
    """One read of the chunk's external_ids with their stored digests. Nothing is read
    (and nothing found) while an older batch of the org may still write these objects:
    then every record is written, so that batch loses against this one (later wins).
    PostgreSQL only."""
    if not payload or upsert.older_writes_pending(session, org_id, base_object, seq):
        return SentBefore()
    external_ids = {index: raw_external_id(record, external_id_field) for index, record in payload}
    wanted = {external_id for external_id in external_ids.values() if external_id is not None}
    stored = upsert.stored_rows(session, base_object, org_id, wanted, [upsert.SOURCE_DIGEST])
    same: dict[int, tuple[str, str]] = {}
    for index, digest in digests.items():
        external_id = external_ids.get(index)
        found = stored.get(external_id) if external_id is not None else None
        if external_id is not None and found is not None and found[1] == digest:
            same[index] = (external_id, found[0])
    return SentBefore(same, frozenset(wanted - stored.keys()))
