"""ReadWrite's drivers: the one shared plain driver, a TLS driver per TLS
connection (freed with it), TLS failures reported as "tls", and a filter
change in the middle of a decrypted batch."""
import errno
import gc
import sys

import cypoe
from cypoe import TLS, Block, Line, ReadWrite, Stream
from cypoe._readwrite import Driver, PlainDriver, plain_driver
from cypoe._tls import TLSDriver

from .conftest import Recorder, run_for, run_until, tcp_pair


def _tls_drivers():
    counts = cypoe.debug_counters()
    return None if counts is None else counts["tls_drivers"]


def test_plain_connections_share_one_stateless_driver(kernel):
    pairs = [tcp_pair() for _ in range(3)]
    before = _tls_drivers()
    rws = [ReadWrite(b, kernel=kernel, on_input=lambda rw, r: None) for _, b in pairs]
    try:
        shared = plain_driver()
        assert isinstance(shared, PlainDriver) and isinstance(shared, Driver)
        assert all(rw.driver is shared for rw in rws)
        assert all(rw.tls_object is None for rw in rws)
        assert _tls_drivers() == before
    finally:
        for rw in rws:
            rw.close()
        for a, _ in pairs:
            a.close()
    # Closing does not take the shared driver away from anyone else.
    assert rws[0].driver is plain_driver()


def test_a_tls_connection_has_its_own_driver(kernel, server_ctx, client_ctx):
    a, b = tcp_pair()
    before = _tls_drivers()
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=lambda rw, r: rw.put(r))
    cli = ReadWrite(a, kernel=kernel, driver=TLS(client_ctx, server_hostname="localhost"),
                    on_input=lambda rw, r: None)
    try:
        assert isinstance(srv.driver, TLSDriver) and isinstance(cli.driver, TLSDriver)
        assert srv.driver is not cli.driver
        if before is not None:
            assert _tls_drivers() == before + 2
    finally:
        srv.close()
        cli.close()


def test_the_tls_driver_is_freed_when_its_connection_ends(kernel, server_ctx, client_ctx):
    a, b = tcp_pair()
    before = _tls_drivers()
    got = []
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=lambda rw, r: rw.put(r))
    cli = ReadWrite(a, kernel=kernel, driver=TLS(client_ctx, server_hostname="localhost"),
                    on_input=lambda rw, r: got.append(r))
    cli.put(b"ping")
    run_until(kernel, lambda: got == [b"ping"], timeout=10)
    drivers = [srv.driver, cli.driver]
    srv.close()
    cli.close()
    del srv, cli
    gc.collect()
    # Nothing but this list holds them: no timer, no cycle through the kernel.
    # (counted outside the assert: its rewriting keeps references of its own)
    refs = [sys.getrefcount(drivers[0]), sys.getrefcount(drivers[1])]
    assert refs == [2, 2]
    del drivers
    if before is not None:
        assert _tls_drivers() == before


def test_non_tls_bytes_to_a_tls_server_are_a_tls_error(kernel, server_ctx):
    a, b = tcp_pair()
    rec = Recorder()
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=rec.on_input, on_error=rec.on_error)
    a.sendall(b"GET / HTTP/1.0\r\n\r\n")       # plain text where a ClientHello belongs
    run_until(kernel, lambda: rec.errors(), timeout=5)
    run_for(kernel, 0.05)
    errs = rec.errors()
    assert len(errs) == 1 and errs[0][1] == "tls" and errs[0][2] == errno.EPROTO
    assert rec.records == []
    assert srv.closed is False          # an error event; closing is the user's call
    srv.close()
    a.close()


def test_a_read_error_after_the_handshake_is_a_read_error(kernel, server_ctx, client_ctx):
    """Once the handshake is done, a failure is reported as the system call
    that failed, not as "tls"."""
    import socket
    import struct

    a, b = tcp_pair()
    rec = Recorder()
    got = []
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=lambda rw, r: got.append(r), on_error=rec.on_error)
    sa = client_ctx.wrap_socket(a, server_hostname="localhost", do_handshake_on_connect=False)
    sa.setblocking(False)
    cli = ReadWrite(sa, kernel=kernel, on_input=lambda rw, r: None)
    cli.put(b"hello")
    run_until(kernel, lambda: got == [b"hello"], timeout=10)
    sock = cli.socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cli.close()
    run_until(kernel, lambda: rec.errors(), timeout=5)
    assert [e[:3] for e in rec.errors()] == [("error", "read", errno.ECONNRESET)]
    srv.close()


def test_a_filter_change_mid_batch_on_a_tls_connection(kernel, server_ctx, client_ctx):
    """The records of one decrypted batch after a set_input_filter() go to
    the new filter, as on a plain connection."""
    a, b = tcp_pair()
    got = []

    def on_input(rw, rec):
        got.append(rec)
        if rec == b"switch":
            rw.set_input_filter(Block(block_size=4))

    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    filter=Line(), on_input=on_input)
    cli = ReadWrite(a, kernel=kernel, driver=TLS(client_ctx, server_hostname="localhost"),
                    filter=Line(), on_input=lambda rw, r: None)
    # One put, one TLS record: the switch happens inside its batch.
    cli.set_output_filter(Stream())
    cli.put(b"one\nswitch\nabcdefgh")
    run_until(kernel, lambda: len(got) >= 4, timeout=10)
    run_for(kernel, 0.05)
    assert got == [b"one", b"switch", b"abcd", b"efgh"]
    srv.close()
    cli.close()


def test_a_paused_tls_connection_still_completes_its_handshake(kernel, server_ctx, client_ctx):
    """Input paused before the handshake: the driver still reads the
    handshake (F_HANDSHAKING), and the records wait for resume_input()."""
    a, b = tcp_pair()
    shakes, got = [], []
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=lambda rw, r: got.append(r),
                    on_handshake=lambda rw: shakes.append("server"))
    srv.pause_input()
    cli = ReadWrite(a, kernel=kernel, driver=TLS(client_ctx, server_hostname="localhost"),
                    on_input=lambda rw, r: None,
                    on_handshake=lambda rw: shakes.append("client"))
    cli.put(b"held")
    run_until(kernel, lambda: sorted(shakes) == ["client", "server"], timeout=10)
    run_for(kernel, 0.1)
    assert got == []
    srv.resume_input()
    run_until(kernel, lambda: got == [b"held"], timeout=10)
    srv.close()
    cli.close()


def test_tls_input_and_eof_received_while_paused_wait_for_resume(kernel, server_ctx,
                                                                 client_ctx):
    """What the TLS driver received while input was paused -- records and
    the peer's end of input -- is delivered after resume_input(), in order,
    even though the socket has nothing more to read by then."""
    a, b = tcp_pair()
    rec = Recorder()
    shaken = []
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=rec.on_input, on_error=rec.on_error,
                    on_handshake=lambda rw: shaken.append(rw))
    cli = ReadWrite(a, kernel=kernel, driver=TLS(client_ctx, server_hostname="localhost"),
                    on_input=lambda rw, r: None)
    run_until(kernel, lambda: shaken, timeout=10)
    srv.pause_input()
    cli.put(b"one", b"two")
    cli.shutdown_output()
    run_for(kernel, 0.2)
    assert rec.records == [] and rec.errors() == []
    srv.resume_input()
    run_until(kernel, lambda: rec.errors(), timeout=10)
    assert rec.records == [b"one", b"two"]
    assert rec.errors() == [("error", "read", 0, "")]
    srv.close()
    cli.close()
