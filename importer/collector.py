"""The cyclic garbage collector, paused while a step builds many objects at once.

Building 100,000 records (or a chunk's 5,000, with their validated values, stored rows
and results) allocates far more objects than the collector's threshold, so it runs
hundreds of times in the middle of the step, each time walking objects that refcounting
alone frees: they hold no cycles. Paused, it runs once afterwards, on what is left.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block (a decorator too); the collector is as it
    was afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
