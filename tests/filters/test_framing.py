"""The response framings (RedisReply, HTTPResponse): the compiled filters
(cypoe._framing, the load engine's parsers) against the plain-Python
reference (cypoe._framing_ref): same records and same errors for any input
split any way; POE's filter interface; malformed input gives a clear
error, never a hang or unbounded buffering."""
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cypoe
from cypoe import _framing, _framing_ref
from cypoe.errors import FrameError, FrameTooLong, FilterError
from cypoe.filters import Filter, parse_response

# CYPOE_HYPOTHESIS_EXAMPLES=5000 for a longer search (not in CI)
SETTINGS = settings(max_examples=int(os.environ.get("CYPOE_HYPOTHESIS_EXAMPLES", "200")),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
MODS = {"compiled": _framing, "reference": _framing_ref}


@pytest.fixture(params=sorted(MODS))
def mod(request):
    return MODS[request.param]


def cut(data, points):
    points = sorted({p % (len(data) + 1) for p in points})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def feed(f, chunks):
    """Records until the first error: (records, error class or None)."""
    out = []
    for c in chunks:
        try:
            out.extend(f.get([c]))
        except FilterError as exc:
            out.extend(exc.records)
            return out, type(exc)
    return out, None


points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)


# -- RESP ------------------------------------------------------------------------

def resp_encode(v):
    if isinstance(v, tuple) and v[0] == "err":
        return b"-" + v[1] + b"\r\n"
    if isinstance(v, tuple) and v[0] == "ok":
        return b"+" + v[1] + b"\r\n"
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, bytes):
        return b"$%d\r\n%s\r\n" % (len(v), v)
    if v is None:
        return b"$-1\r\n"
    if v == "nullarray":
        return b"*-1\r\n"
    return b"*%d\r\n" % len(v) + b"".join(resp_encode(x) for x in v)


simple = st.binary(max_size=12).map(lambda b: b.translate(None, b"\r\n"))
resp_values = st.recursive(
    st.one_of(st.tuples(st.just("ok"), simple), st.tuples(st.just("err"), simple),
              st.integers(-10**17, 10**17), st.binary(max_size=20), st.none(),
              st.just("nullarray")),
    lambda children: st.lists(children, max_size=4), max_leaves=12)


@SETTINGS
@given(values=st.lists(resp_values, max_size=6), pts=points,
       name=st.sampled_from(sorted(MODS)))
def test_redis_split_point_invariance(values, pts, name):
    frames = [resp_encode(v) for v in values]
    data = b"".join(frames)
    for chunks in (cut(data, pts), [data[i:i + 1] for i in range(len(data))], [data]):
        f = MODS[name].RedisReply()
        assert feed(f, chunks) == (frames, None)
        assert f.get_pending() is None


resp_noise = st.lists(st.sampled_from(
    [b"+", b"-", b":", b"$", b"*", b"\r", b"\n", b"\r\n", b"0", b"1", b"3", b"-1", b"a",
     b"OK", b"\x00", b"$3\r\nabc\r\n", b"*2\r\n", b":5\r\n"]), max_size=30).map(b"".join)


@SETTINGS
@given(data=resp_noise | st.binary(max_size=40), pts=points)
def test_redis_compiled_matches_reference(data, pts):
    for chunks in (cut(data, pts), [data[i:i + 1] for i in range(len(data))]):
        assert feed(_framing.RedisReply(), chunks) == feed(_framing_ref.RedisReply(), chunks)


@pytest.mark.parametrize("bad, words", [
    (b"PONG\r\n", "reply starts with 'P'"),
    (b"+OK\n", "CRLF"),
    (b":12x\r\n", "not a valid length"),
    (b"$-2\r\n", "bulk length"),
    (b"$3\r\nabcd\r\n", "bulk data not followed by CRLF"),
    (b"*-5\r\n", "array length"),
    (b"$" + b"9" * 19 + b"\r\n", "not a valid length"),
    (b"$600000000\r\n", "bulk length out of range"),
    (b"*1\r\n" * 33 + b":1\r\n", "nested deeper than 32"),
])
def test_redis_malformed_is_a_clear_error(mod, bad, words):
    f = mod.RedisReply()
    with pytest.raises(FrameError, match=words) as ei:
        f.get([b"+OK\r\n" + bad])
    assert ei.value.records == [b"+OK\r\n"]      # what came before is not lost


def test_redis_goes_on_after_an_error(mod):
    f = mod.RedisReply()
    with pytest.raises(FrameError):
        f.get([b"?+OK\r\n"])
    assert f.get([]) == [b"+OK\r\n"]             # the bytes after the bad one


def test_redis_frame_over_max_length_is_skipped_unbuffered():
    f = _framing.RedisReply(max_length=16)
    big = b"$100\r\n" + b"x" * 100 + b"\r\n"
    with pytest.raises(FrameTooLong):
        f.get([big[:30]])
    assert f.get([big[30:] + b":1\r\n"]) == [b":1\r\n"]
    assert f.get_pending() is None


def test_redis_is_error(mod):
    assert mod.RedisReply.is_error(b"-ERR x\r\n")
    assert not mod.RedisReply.is_error(b"+OK\r\n")


# -- HTTP -------------------------------------------------------------------------

def http_response(status=200, body=b"", mode="length", headers=(), trailers=(), interim=False,
                  chunk=3):
    head = b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b""
    lines = [b"HTTP/1.1 %d X" % status] + [h for h in headers]
    if mode == "length":
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    else:
        lines.append(b"Transfer-Encoding: chunked")
        parts = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
        payload += b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
    return head + b"\r\n".join(lines) + b"\r\n\r\n" + payload


http_responses = st.builds(
    http_response, status=st.sampled_from([200, 201, 404, 500, 302]),
    body=st.binary(max_size=30), mode=st.sampled_from(["length", "chunked"]),
    headers=st.lists(st.sampled_from([b"Server: x", b"Connection: keep-alive",
                                      b"X-A:b", b"content-type: text/plain"]), max_size=3),
    trailers=st.lists(st.sampled_from([b"X-T: 1", b"Y:2"]), max_size=2),
    interim=st.booleans(), chunk=st.integers(1, 7))


@SETTINGS
@given(responses=st.lists(http_responses, max_size=4), pts=points,
       name=st.sampled_from(sorted(MODS)))
def test_http_split_point_invariance(responses, pts, name):
    data = b"".join(responses)
    for chunks in (cut(data, pts), [data[i:i + 1] for i in range(len(data))], [data]):
        f = MODS[name].HTTPResponse()
        assert feed(f, chunks) == (responses, None)
        assert f.get_eof() == []


http_noise = st.lists(st.sampled_from(
    [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 204 X\r\n", b"HTTP/1.1 100 C\r\n", b"HTTP/2 200\r\n",
     b"Content-Length: 3\r\n", b"Content-Length: 2\r\n", b"content-length: x\r\n",
     b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n", b" folded\r\n",
     b"NoColon\r\n", b"\r\n", b"\n", b"3\r\n", b"0\r\n", b"zz\r\n", b"abc", b"\r", b"X: y\r\n",
     b"3;ext=1\r\n"]), max_size=25).map(b"".join)


@SETTINGS
@given(data=http_noise | st.binary(max_size=40), pts=points)
def test_http_compiled_matches_reference(data, pts):
    for chunks in (cut(data, pts), [data[i:i + 1] for i in range(len(data))]):
        c, r = _framing.HTTPResponse(), _framing_ref.HTTPResponse()
        got_c, got_r = feed(c, chunks), feed(r, chunks)
        assert got_c == got_r
        if got_c[1] is None:
            def eof(f):
                try:
                    return f.get_eof(), None
                except FrameError as exc:
                    return exc.records, FrameError
            assert eof(c) == eof(r)


@pytest.mark.parametrize("bad, words", [
    (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk-size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", "not followed by CRLF"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 129 + b"\r\n", "more than 128"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 9000, "longer than 8192"),
])
def test_http_malformed_is_a_clear_error(mod, bad, words):
    ok = http_response(body=b"hi")
    f = mod.HTTPResponse()
    with pytest.raises(FrameError, match=words) as ei:
        f.get([ok + bad])
    assert ei.value.records == [ok]


def test_http_body_until_close_and_head(mod):
    f = mod.HTTPResponse()
    resp = b"HTTP/1.0 200 OK\r\n\r\nall of it"
    assert f.get([resp]) == []
    assert f.get_eof() == [resp]
    f = mod.HTTPResponse()
    assert f.get([b"HTTP/1.1 200 OK\r\nContent-"]) == []
    with pytest.raises(FrameError, match="ended inside"):
        f.get_eof()
    h = mod.HTTPResponse(head=True)
    r = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    assert h.get([r + r]) == [r, r]


def test_http_huge_body_is_not_buffered():
    f = _framing.HTTPResponse(max_length=1000)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    with pytest.raises(FrameTooLong):
        f.get([head + b"x" * 2000])
    for _ in range(49):
        assert f.get([b"x" * 2000]) == []
        assert f.get_pending() is None or len(f.get_pending()) < 2000
    ok = http_response(body=b"k")
    assert f.get([b"x" * (100000 - 50 * 2000) + ok]) == [ok]


def test_parse_response():
    r = http_response(status=404, body=b"hello world", mode="chunked", trailers=[b"X: 1"],
                      interim=True, headers=[b"Server: s"])
    status, headers, body = parse_response(r)
    assert status == 404 and body == b"hello world"
    assert ("Server", "s") in headers


# -- the POE filter interface -------------------------------------------------------

@pytest.mark.parametrize("cls", ["RedisReply", "HTTPResponse"])
def test_poe_interface(mod, cls):
    f = getattr(mod, cls)()
    assert isinstance(f, Filter)
    one = b"+OK\r\n" if cls == "RedisReply" else http_response(body=b"x")
    f.get_one_start([one[:3], one[3:] + one])
    assert f.get_one() == [one]
    assert f.get_one() == [one]
    assert f.get_one() == []
    f.get_one_start([one[:4]])
    assert f.get_pending() == one[:4]
    assert f.put([b"PING\r\n", b"x"]) == [b"PING\r\n", b"x"]
    g = f.clone()
    assert type(g) is type(f) and g.get_pending() is None
    with pytest.raises(TypeError):
        f.get(b"not a list")


def test_top_level_names():
    assert cypoe.RedisReply is _framing.RedisReply
    assert cypoe.HTTPResponse is _framing.HTTPResponse


def test_filters_in_a_client_connection():
    # the filter works inside a ReadWrite (the C feed face)
    f = _framing.RedisReply()
    out, err = f._c_feed(b"+OK\r\n:1")
    assert out == [b"+OK\r\n"] and err is None
    out, err = f._c_feed(b"\r\n")
    assert out == [b":1\r\n"]
