"""The TLS driver: echo, failed handshake, handshake timeout, close_notify."""
import errno
import hashlib
import socket
import ssl
import struct

import pytest

from cypoe import TLS, ReadWrite, Stream

from .conftest import Recorder, run_for, run_until, tcp_pair

pytest.importorskip("cryptography.x509")


def test_tls_echo(kernel, server_ctx, client_ctx):
    a, b = tcp_pair()
    shakes = []
    got = []
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=lambda rw, r: rw.put(r[::-1]),
                    on_handshake=lambda rw: shakes.append("server"))
    cli = ReadWrite(a, kernel=kernel, driver=TLS(client_ctx, server_hostname="localhost"),
                    on_input=lambda rw, r: got.append(r),
                    on_handshake=lambda rw: shakes.append("client"))
    cli.put(b"hello", b"world")         # queued until the handshake is done
    run_until(kernel, lambda: len(got) == 2, timeout=10)
    assert got == [b"olleh", b"dlrow"]
    assert sorted(shakes) == ["client", "server"]
    assert cli.tls_object.version() in ("TLSv1.2", "TLSv1.3")
    assert cli.tls_object.getpeercert()["subject"][0][0][1] == "localhost"
    srv.close()
    cli.close()


def test_tls_bulk_stream(kernel, server_ctx, client_ctx):
    a, b = tcp_pair()
    total = 16 << 20
    block = bytes(range(256)) * 4096
    h_in, h_out = hashlib.sha256(), hashlib.sha256()
    st = {"got": 0}

    def srv_input(rw, r):
        h_in.update(r)
        st["got"] += len(r)

    srv = ReadWrite(b, kernel=kernel, filter=Stream(), on_input=srv_input,
                    driver=TLS(server_ctx, server_side=True))
    cli = ReadWrite(a, kernel=kernel, filter=Stream(), on_input=lambda rw, r: None,
                    driver=TLS(client_ctx, server_hostname="localhost"))
    for i in range(total // len(block)):
        chunk = bytes([i % 256]) + block[1:]
        h_out.update(chunk)
        cli.put(chunk)
    run_until(kernel, lambda: st["got"] >= total, timeout=30, step=0.01)
    assert h_in.hexdigest() == h_out.hexdigest()
    srv.close()
    cli.close()


def test_tls_shutdown_output_sends_close_notify(kernel, server_ctx, client_ctx):
    a, b = tcp_pair()
    srec, crec = Recorder(), Recorder()
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=srec.on_input, on_error=srec.on_error)
    cli = ReadWrite(a, kernel=kernel, driver=TLS(client_ctx, server_hostname="localhost"),
                    on_input=crec.on_input, on_error=crec.on_error)
    cli.put(b"bye")
    cli.shutdown_output()
    run_until(kernel, lambda: srec.errors(), timeout=10)
    assert srec.records == [b"bye"]
    assert srec.errors() == [("error", "read", 0, "")]     # orderly: close_notify then FIN
    # The other direction still works after the half-close.
    srv.put(b"still here")
    run_until(kernel, lambda: crec.records == [b"still here"], timeout=10)
    srv.close()
    cli.close()


def test_tls_failed_handshake(kernel, server_ctx):
    a, b = tcp_pair()
    srec, crec = Recorder(), Recorder()
    untrusting = ssl.create_default_context()      # does not know our self-signed CA
    srv = ReadWrite(b, kernel=kernel, driver=TLS(server_ctx, server_side=True),
                    on_input=srec.on_input, on_error=srec.on_error)
    cli = ReadWrite(a, kernel=kernel, driver=TLS(untrusting, server_hostname="localhost"),
                    on_input=crec.on_input, on_error=crec.on_error)
    cli.put(b"never delivered")
    run_until(kernel, lambda: crec.errors() and srec.errors(), timeout=10)
    errs = crec.errors()
    assert len(errs) == 1 and errs[0][1] == "tls" and errs[0][2] == errno.EPROTO
    assert "certificate" in errs[0][3].lower()
    assert srec.errors()[0][1] == "tls"
    assert srec.records == []
    srv.close()
    cli.close()


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("side", ["client", "server"])
def test_tls_reset_during_the_handshake_is_a_tls_error(kernel, server_ctx, client_ctx, side):
    """A peer that resets the connection before the handshake is done: the
    handshake failed ("tls", ECONNRESET), not a "read" error."""
    a, b = tcp_pair()
    rec = Recorder()
    if side == "client":
        drv = TLS(client_ctx, server_hostname="localhost")
    else:
        drv = TLS(server_ctx, server_side=True)
        b.sendall(b"\x16\x03\x01")      # the start of a ClientHello
    rw = ReadWrite(a, kernel=kernel, driver=drv, on_input=rec.on_input, on_error=rec.on_error)
    run_for(kernel, 0.05)
    if side == "client":
        b.settimeout(5)
        assert b.recv(5)            # the ClientHello is on its way
    _reset(b)
    run_until(kernel, lambda: rec.errors(), timeout=5)
    run_for(kernel, 0.05)
    assert [e[:3] for e in rec.errors()] == [("error", "tls", errno.ECONNRESET)]
    rw.close()


def test_tls_handshake_timeout(kernel, server_ctx):
    a, b = tcp_pair()
    rec = Recorder()
    srv = ReadWrite(b, kernel=kernel,
                    driver=TLS(server_ctx, server_side=True, handshake_timeout=0.3),
                    on_input=rec.on_input, on_error=rec.on_error)
    run_until(kernel, lambda: rec.errors(), timeout=5)
    assert rec.errors() == [("error", "tls", errno.ETIMEDOUT, "TLS handshake timed out")]
    run_for(kernel, 0.05)
    assert len(rec.errors()) == 1
    srv.close()
    a.close()


def test_sslsocket_handle(kernel, server_ctx, client_ctx):
    a, b = tcp_pair()
    sb = server_ctx.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
    sa = client_ctx.wrap_socket(a, server_hostname="localhost", do_handshake_on_connect=False)
    got = []
    srv = ReadWrite(sb, kernel=kernel, on_input=lambda rw, r: rw.put(r + b"!"))
    cli = ReadWrite(sa, kernel=kernel, on_input=lambda rw, r: got.append(r))
    cli.put(b"hi")
    run_until(kernel, lambda: got == [b"hi!"], timeout=10)
    srv.close()
    cli.close()


def test_tls_validation(server_ctx):
    with pytest.raises(TypeError, match="context"):
        TLS("not a context")
    with pytest.raises(ValueError, match="handshake_timeout"):
        TLS(server_ctx, handshake_timeout=0)
