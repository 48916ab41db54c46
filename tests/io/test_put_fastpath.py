"""ReadWrite.put's calling forms (one record takes a fast path without an
argument tuple): every form queues the same bytes and counts the same
messages, on built-in and Python filters, on ReadWrite and its subclasses."""
import socket

import pytest

from cypoe import Block, Filter, Line, ReadWrite, Stream
from cypoe._components import Connection

from .conftest import Recorder, run_until


class Upper(Filter):
    """A Python output filter: upper-cases and adds b"|"."""

    def get_one_start(self, chunks):
        pass

    def get_one(self):
        return []

    def get_pending(self):
        return None

    def put(self, records):
        return [bytes(r).upper() + b"|" for r in records]


def make(kernel, flt):
    a, b = socket.socketpair()
    rec = Recorder()
    rw = ReadWrite(a, kernel=kernel, filter=flt, on_input=rec.on_input,
                   on_error=rec.on_error)
    return rw, b


@pytest.mark.parametrize("make_filter", [Line, Stream, Block, Upper,
                                         lambda: Line(encoding="utf-8")])
def test_put_forms_queue_the_same_bytes(kernel, make_filter):
    one, _ = make(kernel, make_filter())
    many, _ = make(kernel, make_filter())
    recs = [b"ab", b"", b"c" * 3000, bytearray(b"de")]
    for r in recs:
        assert one.put(r) is False
    assert many.put(*recs) is False
    assert many.put() is False
    assert one.get_driver_out_octets() == many.get_driver_out_octets() > 0
    assert one.get_driver_out_messages() == many.get_driver_out_messages() == len(recs)
    one.close()
    many.close()


def test_put_rejects_keywords_and_bad_records(kernel):
    rw, _ = make(kernel, Line())
    with pytest.raises(TypeError, match="unexpected keyword argument 'record'"):
        rw.put(record=b"x")
    with pytest.raises(TypeError):
        rw.put("not bytes")
    with pytest.raises(TypeError):
        rw.put(b"ok", "not bytes")
    with pytest.raises(TypeError):
        ReadWrite.put(object(), b"x")
    assert ReadWrite.put(rw, b"x") is False
    rw.close()
    assert rw.put(b"after close") is False
    assert rw.put(b"a", b"b") is False


def test_put_one_record_returns_true_above_high_mark(kernel):
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    rec = Recorder()
    rw = ReadWrite(a, kernel=kernel, filter=Stream(), on_input=rec.on_input,
                   on_error=rec.on_error, high_mark=10000, low_mark=100,
                   on_high=rec.on_high, on_low=rec.on_low)
    results = [rw.put(b"x" * 1000) for _ in range(2000)]
    assert results[0] is False and results[-1] is True
    assert rec.count("high") == 1
    rw.close()
    b.close()


def test_echo_through_subclass_put(kernel):
    # The components' connection classes carry the same put in their own dict.
    assert "put" in Connection.__dict__
    assert Connection.put.__doc__ == ReadWrite.put.__doc__
    assert Connection.put.__objclass__ is Connection
    with pytest.raises(TypeError):
        Connection.put(ReadWrite.__new__(ReadWrite), b"x")
    a, b = socket.socketpair()
    got = []
    rw = ReadWrite(a, kernel=kernel, filter=Line(literal=b"\n"),
                   on_input=lambda rw, r: rw.put(r))
    b.sendall(b"".join(b"%d\n" % i for i in range(1000)))
    b.settimeout(0.01)
    data = bytearray()

    def done():
        try:
            data.extend(b.recv(65536))
        except socket.timeout:
            pass
        return data.count(b"\n") >= 1000
    run_until(kernel, done)
    assert bytes(data) == b"".join(b"%d\n" % i for i in range(1000))
    rw.close()
    b.close()
