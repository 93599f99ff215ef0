"""The push client's own settings, declared like the service's (``importer.config``):
the variable, parser, default and text of each sit together."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from importer.config import knob, text


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    url: str = knob(
        "IMPORTER_URL",
        "http://127.0.0.1:8000",
        text,
        shown="`http://127.0.0.1:8000`",
        doc="the service `importer push` talks to",
    )
    api_key: str | None = knob(
        "IMPORTER_API_KEY",
        None,
        text,
        shown="unset",
        doc="the API key `importer push` sends",
        secret=True,
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            spec = field.metadata["knob"]
            raw = (env.get(spec.env) or "").strip()
            if raw:
                values[field.name] = spec.parse(spec.env, raw)
        return cls(**values)
