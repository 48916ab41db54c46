"""The compiled load engine in the debug build's counters: engines, their
connections' state arrays, histograms and response parsers are counted
when made and when freed (a release build has no counters: None)."""
import gc

import pytest

import cypoe

_load = pytest.importorskip("cypoe._load", reason="the compiled load engine is not built")


def test_load_engine_counters_return_to_zero():
    if cypoe.debug_counters() is None:
        assert _load._debug_counters() is None
        return
    gc.collect()
    start = cypoe.debug_counters()
    k = cypoe.Kernel(backend="poll")
    eng = _load.LoadEngine(k, "127.0.0.1", 9, [b"PING\r\n"], connections=3, pipeline=4,
                           expect="redis")
    now = cypoe.debug_counters()
    assert now["load_engines"] == start["load_engines"] + 1
    assert now["load_conns"] == start["load_conns"] + 3
    assert now["response_parsers"] == start["response_parsers"] + 3    # one per connection
    assert now["load_histograms"] == start["load_histograms"] + 2      # corrected and raw
    http = _load.LoadEngine(k, "127.0.0.1", 9, [b"GET / HTTP/1.1\r\n\r\n"], connections=2,
                            expect="http")
    assert cypoe.debug_counters()["response_parsers"] == start["response_parsers"] + 5
    del eng, http, k
    gc.collect()
    end = cypoe.debug_counters()
    assert end == dict(start, pool_blocks=end["pool_blocks"])
