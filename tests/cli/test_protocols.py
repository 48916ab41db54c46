"""cypoe serve's protocols as plain functions (no sockets)."""
import pytest

from cypoe.cli import protocols as P


def test_echo_upper_discard():
    assert P.make_protocol("echo").input(b"abc") == [b"abc"]
    assert P.make_protocol("upper").input(b"abc def") == [b"ABC DEF"]
    assert P.make_protocol("discard").input(b"abc") == []
    assert P.make_protocol("discard").connected() == []


def test_pong_per_command():
    # the server reads pong's input as bytes (RESP is not line-framed): the
    # answers are whole +PONG\r\n, one per command, inline or multibulk
    assert P.make_protocol("pong", "line").input(b"PING") == [b"+PONG\r\n"]
    assert P.make_protocol("pong", "block").input(b"x") == [b"+PONG"]
    stream = P.make_protocol("pong", "stream")
    assert stream.input(b"PING\r\nPING\r\nPI") == [b"+PONG\r\n+PONG\r\n"]
    assert stream.input(b"NG") == []
    assert stream.input(b"\r\n*1\r\n$4\r\nPI") == [b"+PONG\r\n"]
    assert stream.input(b"NG\r\n") == [b"+PONG\r\n"]


def test_daytime():
    d = P.make_protocol("daytime", "line")
    assert d.close_after_connect
    [text] = d.connected(now=0)
    assert b"1970" in text or b"1969" in text  # the epoch, in the local zone
    [raw] = P.make_protocol("daytime", "stream").connected(now=0)
    assert raw.endswith(b"\r\n")


def test_chargen_rfc864():
    first = P.chargen_line(0)
    assert first == bytes(range(32, 32 + 72))
    assert P.chargen_line(1)[0:1] == b"!"
    assert P.chargen_line(95) == first  # the pattern repeats every 95 lines
    assert all(len(P.chargen_line(i)) == 72 for i in range(200))
    c = P.make_protocol("chargen", "stream")
    state = {}
    a = c.more(state)
    b = c.more(state)
    assert len(a) == c.BATCH and a[0] == first + b"\r\n" and b[0] == P.chargen_line(c.BATCH) + b"\r\n"


def test_unknown():
    with pytest.raises(ValueError):
        P.make_protocol("gopher")
    with pytest.raises(ValueError):
        P.make_protocol("echo", "json")
