"""Opaque public identifiers: ``<prefix>_<32 lowercase hex>``."""

from __future__ import annotations

import re
import uuid

ORG = "cborg"
IMPORT_REPORT = "cbimprt"
BATCH = "cbbatch"
VENDOR = "cbvndr"
SERVICE = "cbsvc"
ASSESSMENT = "cbqsrw"
WEBHOOK = "cbwhk"
DELIVERY = "cbwhdlv"
EVENT = "cbevt"

_ID_RE = re.compile(r"^[a-z]+_[0-9a-f]{32}$")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def looks_like(prefix: str, value: str) -> bool:
    """Whether ``value`` has the shape of an id with ``prefix`` (not whether it exists)."""
    return bool(_ID_RE.match(value)) and value.startswith(prefix + "_")
