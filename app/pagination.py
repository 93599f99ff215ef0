"""Every list of the API: ``?limit=``, ``?offset=`` or ``?cursor=``, and the body
``{items, total, total_is_lower_bound, limit, offset, next_cursor}``.

A list is paged by keyset: ``next_cursor`` carries the sort key of the page's last
item, and the next page starts after it, through the index that serves the list's
order, so a page deep in a list costs what its first page costs. ``?offset=`` is kept
for compatibility, up to :data:`MAX_OFFSET` (skipping rows costs their reading).

A cursor is opaque to clients (URL-safe base64 of a small JSON array) and checked
strictly when it comes back: its version, the list and filters it was made for (a
digest of the list's name, the org and the filters: a cursor of one list used on
another is refused), the position it carries and the type of every part of its key.
Anything else is ``422 invalid_parameter``, never a 500. It is not signed: it holds
only a position in a list the caller may read in full anyway.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.errors import InvalidParameter
from importer.listing import COUNT_BOUND

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: The deepest ``?offset=``; deeper pages are reached with ``?cursor=``.
MAX_OFFSET = COUNT_BOUND
CURSOR_VERSION = 1
#: The longest cursor read (a key is a few ids, times and numbers).
MAX_CURSOR_LENGTH = 1024

#: The kinds of value a sort key holds: an integer, a string, or a time (carried as
#: integer microseconds since the epoch, exact for PostgreSQL's and SQLite's times).
KeyKind = Literal["int", "str", "time"]
Key = tuple[Any, ...]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_MAX_MICROS = 253402300799_999999  # 9999-12-31T23:59:59.999999Z
_MAX_INT = 2**63 - 1
_MAX_STR = 255


# --- cursors ------------------------------------------------------------------------


def _micros(value: dt.datetime) -> int:
    if value.tzinfo is None:  # SQLite hands some values back naive; they are UTC
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // _MICROSECOND


def _encode_part(kind: KeyKind, value: Any) -> Any:
    return _micros(value) if kind == "time" else value


def _decode_part(kind: KeyKind, value: Any) -> Any:
    """A key part as sent back, checked for its kind; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("a boolean is no key")
    if kind == "str":
        if not isinstance(value, str) or len(value) > _MAX_STR:
            raise ValueError("not a key string")
        return value
    if not isinstance(value, int):
        raise ValueError("not a key integer")
    if kind == "time":
        if not 0 <= value <= _MAX_MICROS:
            raise ValueError("time out of range")
        return _EPOCH + value * _MICROSECOND
    if not -_MAX_INT <= value <= _MAX_INT:
        raise ValueError("integer out of range")
    return value


def scope_digest(*parts: Any) -> str:
    """What a cursor is bound to: the list, the org and the filters, digested."""
    return hashlib.sha256(orjson.dumps([str(part) for part in parts])).hexdigest()[:16]


def encode_cursor(scope: str, offset: int, kinds: Sequence[KeyKind], key: Key) -> str:
    parts = [_encode_part(kind, value) for kind, value in zip(kinds, key, strict=True)]
    raw = orjson.dumps([CURSOR_VERSION, scope, offset, *parts])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str, scope: str, kinds: Sequence[KeyKind]) -> tuple[int, Key]:
    """``(offset, key)`` of a cursor this list made; raises :class:`InvalidParameter`."""
    refused = InvalidParameter(
        "Query parameter 'cursor' is not a cursor of this list: send back the next_cursor "
        "of the previous page unchanged, with the same filters, or leave cursor out to "
        "start from the first page."
    )
    if len(token) > MAX_CURSOR_LENGTH or not token.isascii():
        raise refused
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise refused from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 3 + len(kinds)
        or decoded[0] != CURSOR_VERSION
        or isinstance(decoded[0], bool)
        or decoded[1] != scope
    ):
        raise refused
    offset = decoded[2]
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= _MAX_INT:
        raise refused
    try:
        key = tuple(
            _decode_part(kind, value) for kind, value in zip(kinds, decoded[3:], strict=True)
        )
    except ValueError:
        raise refused from None
    return offset, key


# --- a page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PageRequest:
    limit: int
    #: Position of the page's first item in the list (given, or carried by the cursor).
    offset: int
    #: The sort key of the previous page's last item (None: page by ``offset``).
    after: Key | None


def page_request(args: Mapping[str, Any], scope: str, kinds: Sequence[KeyKind]) -> PageRequest:
    """The page the parsed query string asks for (``limit``, and ``offset`` or a
    ``cursor`` of this list: :class:`app.schemas.PageQuerySchema` has checked their
    bounds and that not both are given)."""
    token = args.get("cursor")
    if token:
        offset, key = decode_cursor(token, scope, kinds)
        return PageRequest(args["limit"], offset, key)
    return PageRequest(args["limit"], args["offset"], None)


Fetch = Callable[[PageRequest, int], Sequence[tuple[Key, Any]]]
Total = Callable[[], tuple[int, bool]]


def paged(
    args: Mapping[str, Any],
    scope: str,
    kinds: Sequence[KeyKind],
    fetch: Fetch,
    total: Total,
    *,
    total_first: bool = False,
) -> dict[str, Any]:
    """One page of a list, the one helper every list view answers with.

    ``fetch(page, n)`` returns up to ``n`` ``(key, item)`` pairs of the list, in its
    order, from the page's start (after ``page.after``, or at ``page.offset``);
    ``total()`` returns ``(total, is_lower_bound)``. One more item than the page
    holds is fetched, so ``next_cursor`` is null exactly on the last page; with
    ``total_first`` (a list whose exact total is stored, such as a batch's results)
    the total says whether more follow, and only the page is fetched. ``args``: the
    parsed query string (:class:`app.schemas.PageQuerySchema`)."""
    page = page_request(args, scope, kinds)
    if total_first:
        count, lower_bound = total()
        items = list(fetch(page, page.limit))
        more = page.offset + len(items) < count
    else:
        found = list(fetch(page, page.limit + 1))
        items = found[: page.limit]
        more = len(found) > page.limit
        count, lower_bound = total()
    next_cursor = None
    if more and items:
        next_cursor = encode_cursor(scope, page.offset + len(items), kinds, items[-1][0])
    return {
        "items": [item for _, item in items],
        "total": count,
        "total_is_lower_bound": lower_bound,
        "limit": page.limit,
        "offset": page.offset,
        "next_cursor": next_cursor,
    }


def after_key(order: Sequence[Any], key: Key, descending: bool) -> sa.ColumnElement[bool]:
    """Rows strictly after ``key`` in the order of ``order`` (a row-value comparison,
    which PostgreSQL turns into a range of the index that has these columns)."""
    values = [
        sa.bindparam(None, value, type_=column.type)
        for column, value in zip(order, key, strict=True)
    ]
    if len(order) == 1:
        column, value = order[0], values[0]
        return column < value if descending else column > value
    left, right = sa.tuple_(*order), sa.tuple_(*values)
    return left < right if descending else left > right


def query_page(
    session: Session,
    query: sa.Select[Any],
    order: Sequence[Any],
    args: Mapping[str, Any],
    *,
    scope: str,
    kinds: Sequence[KeyKind],
    total: Total,
    item: Callable[[Any], Any] | None = None,
    descending: bool = False,
    entities: bool = False,
) -> dict[str, Any]:
    """:func:`paged` for a SQL list: ``query`` filtered to the list, ordered by
    ``order`` (the columns of an index, ending with a unique one), ``item`` renders a
    row (else the page holds the rows, for the view's response schema to dump);
    ``entities``: the query selects ORM objects (read with ``scalars``)."""
    names = [column.key for column in order]

    def fetch(page: PageRequest, n: int) -> list[tuple[Key, Any]]:
        selected = query
        if page.after is not None:
            selected = selected.where(after_key(order, page.after, descending))
        else:
            selected = selected.offset(page.offset)
        ordered = [column.desc() if descending else column for column in order]
        selected = selected.order_by(*ordered).limit(n)
        rows: Iterable[Any] = session.scalars(selected) if entities else session.execute(selected)
        return [
            (tuple(getattr(row, name) for name in names), row if item is None else item(row))
            for row in rows
        ]

    return paged(args, scope, kinds, fetch, total)
