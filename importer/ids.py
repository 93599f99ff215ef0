"""Opaque public identifiers: ``<prefix>_<32 lowercase hex>``.

The 32 hex digits are a UUID version 7 (RFC 9562): a millisecond time stamp, then
random bits. Ids made one after another are near each other in a B-tree, so an
insert touches the pages the previous ones touched, instead of a random page of an
index that outgrows memory as the tables grow (docs/benchmarks.md, "Growth"). They
stay opaque: nothing reads the time back from an id.
"""

from __future__ import annotations

import uuid6

ORG = "cborg"
IMPORT_REPORT = "cbimprt"
BATCH = "cbbatch"
VENDOR = "cbvndr"
SERVICE = "cbsvc"
ASSESSMENT = "cbqsrw"
WEBHOOK = "cbwhk"
DELIVERY = "cbwhdlv"
EVENT = "cbevt"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid6.uuid7().hex}"
