"""A paused collector must come back, or a worker would keep every cycle it ever made."""

from __future__ import annotations

import gc

import pytest

from importer.collector import gc_paused


def test_the_collector_runs_again_after_the_step_even_when_it_failed():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("the step failed")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
