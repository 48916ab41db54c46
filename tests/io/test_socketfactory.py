"""SocketFactory: listen/accept, connect, UDP, UNIX, IPv6, EMFILE."""
import errno
import fcntl
import os
import socket
import subprocess
import sys

import pytest

from cypoe import ReadWrite, SocketFactory, Stream

from .conftest import run_for, run_until


def has_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class SF:
    def __init__(self):
        self.ok = []
        self.fail = []

    def on_success(self, sf, sock, addr, port):
        self.ok.append((sock, addr, port))

    def on_failure(self, sf, op, errnum, errstr):
        self.fail.append((op, errnum, errstr))


def listener(kernel, rec, **kw):
    kw.setdefault("bind_address", "127.0.0.1")
    return SocketFactory(kernel=kernel, on_success=rec.on_success,
                         on_failure=rec.on_failure, **kw)


def assert_socket_flags(sock, tcp=True):
    assert sock.getblocking() is False
    flags = fcntl.fcntl(sock.fileno(), fcntl.F_GETFL)
    assert flags & os.O_NONBLOCK
    assert not os.get_inheritable(sock.fileno())
    if tcp:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def echo_roundtrip(kernel, server_sock, client_sock):
    got = []
    srv = ReadWrite(server_sock, kernel=kernel, on_input=lambda rw, r: rw.put(r))
    cli = ReadWrite(client_sock, kernel=kernel, on_input=lambda rw, r: got.append(r))
    cli.put(b"ping")
    run_until(kernel, lambda: got == [b"ping"], timeout=5)
    srv.close()
    cli.close()


def test_listen_accept_connect_ipv4(kernel):
    srv, cli = SF(), SF()
    lst = listener(kernel, srv)
    addr = lst.getsockname()
    assert addr[0] == "127.0.0.1" and addr[1] > 0
    conn = SocketFactory(kernel=kernel, remote_address="127.0.0.1", remote_port=addr[1],
                         on_success=cli.on_success, on_failure=cli.on_failure)
    run_until(kernel, lambda: srv.ok and cli.ok, timeout=5)
    ssock, raddr, rport = srv.ok[0]
    csock, caddr, cport = cli.ok[0]
    assert isinstance(ssock, socket.socket)
    assert raddr == csock.getsockname() and rport == raddr[1]
    assert caddr == ("127.0.0.1", addr[1]) and cport == addr[1]
    assert_socket_flags(ssock)
    assert_socket_flags(csock)
    assert conn.getsockname() == csock.getsockname()
    echo_roundtrip(kernel, ssock, csock)
    lst.close()
    lst.close()
    conn.close()
    assert not srv.fail and not cli.fail


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6(kernel):
    srv, cli = SF(), SF()
    lst = SocketFactory(kernel=kernel, socket_domain=socket.AF_INET6, bind_address="::1",
                        on_success=srv.on_success, on_failure=srv.on_failure)
    port = lst.getsockname()[1]
    SocketFactory(kernel=kernel, socket_domain=socket.AF_INET6, remote_address="::1",
                  remote_port=port, on_success=cli.on_success, on_failure=cli.on_failure)
    run_until(kernel, lambda: srv.ok and cli.ok, timeout=5)
    assert srv.ok[0][1][0] == "::1" and len(srv.ok[0][1]) == 4
    echo_roundtrip(kernel, srv.ok[0][0], cli.ok[0][0])
    lst.close()


def test_unix_path(kernel, tmp_path):
    path = str(tmp_path / "s.sock")
    srv, cli = SF(), SF()
    lst = SocketFactory(kernel=kernel, socket_domain=socket.AF_UNIX, bind_address=path,
                        on_success=srv.on_success, on_failure=srv.on_failure)
    assert lst.getsockname() == path
    SocketFactory(kernel=kernel, socket_domain=socket.AF_UNIX, remote_address=path,
                  on_success=cli.on_success, on_failure=cli.on_failure)
    run_until(kernel, lambda: srv.ok and cli.ok, timeout=5)
    ssock, raddr, rport = srv.ok[0]
    assert isinstance(raddr, str) and rport is None
    assert cli.ok[0][1] == path and cli.ok[0][2] is None
    assert_socket_flags(ssock, tcp=False)
    echo_roundtrip(kernel, ssock, cli.ok[0][0])
    lst.close()


def test_connect_by_name_off_loop(kernel):
    srv, cli = SF(), SF()
    lst = listener(kernel, srv)
    port = lst.getsockname()[1]
    SocketFactory(kernel=kernel, remote_address="localhost", remote_port=port,
                  on_success=cli.on_success, on_failure=cli.on_failure)
    # The constructor returned before the lookup: nothing has happened yet.
    assert not cli.ok and not cli.fail
    run_until(kernel, lambda: cli.ok or cli.fail, timeout=10)
    assert cli.ok, cli.fail
    lst.close()


def test_connect_refused_is_a_failure_event(kernel):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cli = SF()
    SocketFactory(kernel=kernel, remote_address="127.0.0.1", remote_port=port,
                  on_success=cli.on_success, on_failure=cli.on_failure)
    run_until(kernel, lambda: cli.fail, timeout=5)
    assert cli.fail[0][:2] == ("connect", errno.ECONNREFUSED)
    assert not cli.ok


def test_unresolvable_name_is_a_failure_event(kernel):
    cli = SF()
    SocketFactory(kernel=kernel, remote_address="no-such-host.invalid", remote_port=80,
                  on_success=cli.on_success, on_failure=cli.on_failure)
    run_until(kernel, lambda: cli.fail, timeout=20)
    assert cli.fail[0][0] == "resolve"


def test_bind_failure_is_reported_not_raised(kernel):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    rec = SF()
    sf = listener(kernel, rec, bind_port=taken.getsockname()[1])
    assert sf.getsockname() is None
    run_until(kernel, lambda: rec.fail, timeout=5)
    assert rec.fail[0][:2] == ("bind", errno.EADDRINUSE)
    taken.close()


def test_reuse_and_reuse_port(kernel):
    rec = SF()
    a = listener(kernel, rec, reuse="yes", reuse_port=True)
    port = a.getsockname()[1]
    b = listener(kernel, rec, reuse=True, reuse_port=True, bind_port=port)
    assert b.getsockname()[1] == port
    assert a.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    run_for(kernel, 0.02)
    assert not rec.fail
    a.close()
    b.close()


def test_pause_and_resume_accept(kernel):
    srv = SF()
    lst = listener(kernel, srv)
    lst.pause_accept()
    c = socket.create_connection(lst.getsockname())
    run_for(kernel, 0.1)
    assert srv.ok == []
    lst.resume_accept()
    run_until(kernel, lambda: len(srv.ok) == 1, timeout=5)
    c.close()
    lst.close()


def test_accept_loop_bounded_per_iteration(kernel):
    srv = SF()
    lst = listener(kernel, srv, listen_queue=200)
    clients = [socket.create_connection(lst.getsockname()) for _ in range(100)]
    kernel.run_once(1.0)
    assert 0 < len(srv.ok) <= 64
    run_until(kernel, lambda: len(srv.ok) == 100, timeout=5)
    for c in clients:
        c.close()
    lst.close()


def test_udp_bound_and_connected(kernel):
    a, b = SF(), SF()
    SocketFactory(kernel=kernel, socket_type=socket.SOCK_DGRAM, bind_address="127.0.0.1",
                  on_success=a.on_success, on_failure=a.on_failure)
    run_until(kernel, lambda: a.ok, timeout=5)
    asock, addr, port = a.ok[0]
    assert addr is None and port is None
    target = asock.getsockname()
    SocketFactory(kernel=kernel, socket_type=socket.SOCK_DGRAM, remote_address="127.0.0.1",
                  remote_port=target[1], on_success=b.on_success, on_failure=b.on_failure)
    run_until(kernel, lambda: b.ok, timeout=5)
    bsock, baddr, bport = b.ok[0]
    assert baddr == target and bport == target[1]
    bsock.send(b"datagram")
    asock.settimeout(2)
    data, frm = asock.recvfrom(100)
    assert data == b"datagram" and frm == bsock.getsockname()
    asock.close()
    bsock.close()


def test_validation_errors(kernel):
    noop = lambda *a: None
    with pytest.raises(ValueError, match="socket_domain"):
        SocketFactory(kernel=kernel, socket_domain=12345, on_success=noop, on_failure=noop)
    with pytest.raises(ValueError, match="socket_type"):
        SocketFactory(kernel=kernel, socket_type=socket.SOCK_RAW, on_success=noop,
                      on_failure=noop)
    with pytest.raises(TypeError, match="on_success"):
        SocketFactory(kernel=kernel, on_success=None, on_failure=noop)
    with pytest.raises(TypeError, match="on_failure"):
        SocketFactory(kernel=kernel, on_success=noop, on_failure=3)
    with pytest.raises(ValueError, match="remote_port"):
        SocketFactory(kernel=kernel, remote_address="127.0.0.1", on_success=noop,
                      on_failure=noop)
    with pytest.raises(ValueError, match="bind_port"):
        SocketFactory(kernel=kernel, bind_port=70000, on_success=noop, on_failure=noop)
    with pytest.raises(ValueError, match="bind_address"):
        SocketFactory(kernel=kernel, socket_domain=socket.AF_UNIX, on_success=noop,
                      on_failure=noop)
    with pytest.raises(ValueError, match="listen_queue"):
        SocketFactory(kernel=kernel, listen_queue=0, on_success=noop, on_failure=noop)


EMFILE_SCRIPT = r'''
import errno, os, resource, socket, sys, time
import cypoe
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
k = cypoe.Kernel()
failures, accepted = [], []
sf = cypoe.SocketFactory(kernel=k, bind_address="127.0.0.1", listen_queue=64,
                         on_success=lambda sf, s, a, p: accepted.append(s),
                         on_failure=lambda sf, *f: failures.append(f))
filler = []
while True:
    try:
        filler.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
print(sf.getsockname()[1], flush=True)
sys.stdin.readline()            # the parent has connected its clients
r0 = resource.getrusage(resource.RUSAGE_SELF)
deadline = time.monotonic() + 1.0
while time.monotonic() < deadline:
    k.run_once(0.05)
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
n_before = len(accepted)
for fd in filler:
    os.close(fd)
deadline = time.monotonic() + 5.0
while len(accepted) < 5 and time.monotonic() < deadline:
    k.run_once(0.05)
print(len(failures), failures[0][0] if failures else "-",
      failures[0][1] if failures else 0, "%.3f" % cpu, n_before, len(accepted), flush=True)
'''


def test_emfile_on_accept_backs_off_and_recovers(tmp_path):
    script = tmp_path / "emfile.py"
    script.write_text(EMFILE_SCRIPT)
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = int(p.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    nfail, op, errnum, cpu, n_before, n_after = out.split()
    assert int(nfail) == 1, (out, err)        # reported once
    assert op == "accept" and int(errnum) in (errno.EMFILE, errno.ENFILE)
    assert float(cpu) < 0.5                   # a busy loop would burn the whole second
    assert int(n_before) == 0
    assert int(n_after) == 5                  # accepting resumed by itself
    for c in clients:
        c.close()


def test_connect_by_name_uses_the_shared_lookup_service(kernel, monkeypatch):
    """A name goes to the one name-resolution service (cypoe._lookup's
    NameLookup, the components' too): getaddrinfo runs in a worker thread
    while the loop keeps running, and a failed lookup is reported as
    ("resolve", EHOSTUNREACH, text) as before."""
    import threading
    real = socket.getaddrinfo
    release = threading.Event()
    calls = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if isinstance(host, str) and host.endswith(".cypoe.test"):
            calls.append((host, family, threading.current_thread().name))
            release.wait(30)
            if host.startswith("fail."):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    srv, cli, bad = SF(), SF(), SF()
    lst = listener(kernel, srv)
    port = lst.getsockname()[1]
    SocketFactory(kernel=kernel, remote_address="echo.cypoe.test", remote_port=port,
                  on_success=cli.on_success, on_failure=cli.on_failure)
    SocketFactory(kernel=kernel, remote_address="fail.cypoe.test", remote_port=port,
                  on_success=bad.on_success, on_failure=bad.on_failure)
    # Both lookups are in their threads, blocked; the loop still runs.
    ticks = []
    run_until(kernel, lambda: len(calls) == 2, timeout=10)
    kernel.call_soon_threadsafe(ticks.append, 2)
    run_until(kernel, lambda: ticks, timeout=10)
    assert not cli.ok and not cli.fail and not bad.ok and not bad.fail
    assert sorted(calls) == [("echo.cypoe.test", socket.AF_INET, "cypoe-resolve"),
                             ("fail.cypoe.test", socket.AF_INET, "cypoe-resolve")]
    release.set()
    run_until(kernel, lambda: (cli.ok or cli.fail) and bad.fail and srv.ok, timeout=10)
    assert cli.ok and not cli.fail, cli.fail
    sock, addr, rport = cli.ok[0]
    assert addr == ("127.0.0.1", port) and rport == port
    echo_roundtrip(kernel, srv.ok[0][0], sock)
    assert bad.fail[0][:2] == ("resolve", errno.EHOSTUNREACH) and not bad.ok
    assert "Name or service not known" in bad.fail[0][2]
    lst.close()
