"""cypoe serve pong speaks redis's framing: one +PONG per command, inline or
multibulk, however the bytes are split (issue 15, item 3)."""
import selectors
import shutil
import socket
import subprocess
import threading

import pytest

from cypoe._resp import RespCounter

from .conftest import recv_exactly, recv_until_eof, serving

INLINE = b"PING\r\n"
MBULK = b"*1\r\n$4\r\nPING\r\n"
# a multibulk command whose argument holds a CRLF and a '*': not lines
ECHO_ARG = b"*2\r\n$4\r\nECHO\r\n$7\r\na\r\n*1\r\nb\r\n"
MIXED = INLINE + MBULK + b"\r\n" + ECHO_ARG + b"PING\n" + b"*0\r\n" + MBULK


def count_split_at_every_byte(data):
    total = 0
    c = RespCounter()
    for i in range(len(data)):
        total += c.feed(data[i:i + 1])
    assert c.error is None
    return total


def test_counter_whole_and_byte_by_byte():
    assert RespCounter().feed(MBULK) == 1
    assert RespCounter().feed(INLINE) == 1
    assert RespCounter().feed(MBULK * 50) == 50
    # inline, mbulk, a blank line (no command), ECHO with CRLF in its
    # argument, inline with a bare \n, *0 (no command), mbulk
    assert RespCounter().feed(MIXED) == 5
    assert count_split_at_every_byte(MIXED) == 5
    assert count_split_at_every_byte(MBULK * 7 + INLINE * 3) == 10


def test_counter_split_at_every_position():
    data = MIXED * 2
    for cut in range(len(data) + 1):
        c = RespCounter()
        assert c.feed(data[:cut]) + c.feed(data[cut:]) == 10, cut


@pytest.mark.parametrize("bad, message", [
    (b"*x\r\n", "invalid multibulk length"),
    (b"*1\r\nPING\r\n", "expected '$'"),
    (b"*1\r\n$-3\r\n", "invalid bulk length"),
    (b"*1\r\n$4x\r\n", "invalid bulk length"),
])
def test_counter_protocol_errors(bad, message):
    c = RespCounter()
    assert c.feed(INLINE + bad) == 1       # what came before still counts
    assert message in c.error
    assert c.feed(INLINE) == 0             # nothing after an error


def _pongs(srv, data, *, split=False):
    n = RespCounter().feed(data)
    with srv.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if split:
            for i in range(len(data)):
                s.sendall(data[i:i + 1])
        else:
            s.sendall(data)
        got = recv_exactly(s, 7 * n)
        s.shutdown(socket.SHUT_WR)
        rest = recv_until_eof(s)
    return n, got, rest


@pytest.mark.parametrize("filter_args", [(), ("--filter", "stream")])
def test_serve_pong_inline_and_mbulk_pipelined(filter_args):
    with serving("pong", *filter_args) as srv:
        for data in (INLINE * 100, MBULK * 100, MIXED * 20):
            n, got, rest = _pongs(srv, data)
            assert got == b"+PONG\r\n" * n and rest == b""


def test_serve_pong_split_at_every_byte():
    with serving("pong") as srv:
        for data in (MBULK * 3, INLINE * 3, MIXED):
            n, got, rest = _pongs(srv, data, split=True)
            assert got == b"+PONG\r\n" * n and rest == b""


def test_serve_pong_protocol_error_answers_and_closes():
    with serving("pong") as srv:
        with srv.connect() as s:
            s.sendall(MBULK + b"*1\r\nPING\r\n" + MBULK)
            data = recv_until_eof(s)
    assert data == b"+PONG\r\n-ERR Protocol error: expected '$', got 'P'\r\n"


def test_serve_pong_block_filter_one_per_block():
    with serving("pong", "--filter", "block") as srv:
        with srv.connect() as s:
            s.sendall(b"4\x00PING4\x00PING")
            assert recv_exactly(s, 14) == b"5\x00+PONG" * 2


class CountingRelay:
    """A loopback relay between redis-benchmark and the server that keeps
    both streams, so that the test can count commands and answers."""

    def __init__(self, port):
        self.port = port
        self.up = bytearray()       # client -> server
        self.down = bytearray()     # server -> client
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.listen_port = self.lsock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.lsock, selectors.EVENT_READ, None)
        peers = {}
        while not self.stop:
            for key, _ in sel.select(0.1):
                if key.data is None:
                    c, _ = self.lsock.accept()
                    s = socket.create_connection(("127.0.0.1", self.port))
                    peers[c], peers[s] = (s, self.up), (c, self.down)
                    sel.register(c, selectors.EVENT_READ, c)
                    sel.register(s, selectors.EVENT_READ, s)
                    continue
                sock = key.data
                data = sock.recv(65536)
                other, log = peers[sock]
                if not data:
                    for x in (sock, other):
                        sel.unregister(x)
                        x.close()
                    continue
                log += data
                other.sendall(data)
        self.lsock.close()

    def close(self):
        self.stop = True
        self.thread.join(10)


@pytest.mark.skipif(shutil.which("redis-benchmark") is None,
                    reason="redis-benchmark is not installed (apt: redis-tools)")
def test_redis_benchmark_ping_inline_and_mbulk():
    with serving("pong") as srv:
        relay = CountingRelay(srv.port)
        try:
            proc = subprocess.run(
                ["redis-benchmark", "-h", "127.0.0.1", "-p", str(relay.listen_port),
                 "-t", "ping", "-n", "1000", "-c", "4", "-q"],
                capture_output=True, text=True, timeout=60)
        finally:
            relay.close()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.replace("\r", "\n")
    assert "PING_INLINE:" in out and "PING_MBULK:" in out, out
    assert "requests per second" in out
    up, down = bytes(relay.up), bytes(relay.down)
    # both forms were sent, 1000 of each (and redis-benchmark's CONFIG GETs)
    assert up.count(b"*1\r\n$4\r\nPING\r\n") == 1000
    assert up.count(b"PING\r\n") == 2000
    commands = up.count(b"PING\r\n") + up.count(b"CONFIG")
    # one answer per command: before, each multibulk PING got three
    assert down == b"+PONG\r\n" * commands
