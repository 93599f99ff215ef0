"""Opaque public identifiers: ``<prefix>_<32 lowercase hex>``."""

from __future__ import annotations

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


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"
