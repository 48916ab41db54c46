"""The framing filters in the debug build's counters: each RedisReply and
HTTPResponse is a response parser, and an HTTP line split between two
inputs holds a line buffer until it completes (a release build has no
counters: None)."""
import gc

import cypoe
from cypoe import _framing


def test_framing_parsers_and_their_line_buffers_are_counted():
    if cypoe.debug_counters() is None:
        assert _framing._debug_counters() is None
        return
    gc.collect()
    start = cypoe.debug_counters()
    redis = cypoe.RedisReply()
    http = cypoe.HTTPResponse()
    assert cypoe.debug_counters()["response_parsers"] == start["response_parsers"] + 2
    assert http.get([b"HTTP/1.1 200 OK\r\nContent-Len"]) == []   # a line split: buffered
    assert cypoe.debug_counters()["parser_lines"] == start["parser_lines"] + 1
    assert http.get([b"gth: 2\r\n\r\nok"]) == [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    assert cypoe.debug_counters()["parser_lines"] == start["parser_lines"]
    http.get([b"HTTP/1.1 200 OK\r\nX-Half"])          # dropped with a line under way
    assert redis.get([b"+OK\r\n"]) == [b"+OK\r\n"]
    del redis, http
    gc.collect()
    end = cypoe.debug_counters()
    assert end == dict(start, pool_blocks=end["pool_blocks"])
