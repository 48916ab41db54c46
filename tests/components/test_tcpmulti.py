import errno
import os
import socket
import subprocess
import sys
import textwrap

import pytest

import cypoe
from cypoe import Block, CypoeError, Server, Stream, TCPMulti

pytestmark = pytest.mark.timeout(60)


def echo_server(kernel, **kw):
    kw.setdefault("client_input", lambda c, r: c.put(r))
    return Server(port=0, address="127.0.0.1", kernel=kernel, **kw)


def test_callback_order_and_stable_ids(kernel):
    server = echo_server(kernel)
    log = []

    def on_initialize(c):
        log.append(("init", c.id, c.connected))
        c["mark"] = "prepopulated"

    def on_success(c):
        log.append(("success", c.id))
        c.put(b"hello %d" % c.id)

    def on_input(c, record):
        log.append(("input", c.id, record, c["mark"], c.heap["from_connect"]))
        m.shutdown(c.id)

    def on_disconnected(c):
        log.append(("disconnected", c.id))
        assert c.id not in m
        if m.connections == 0:
            server.shutdown()

    m = TCPMulti(kernel=kernel, on_input=on_input, on_initialize=on_initialize,
                 on_success=on_success, on_disconnected=on_disconnected)
    conns = [m.connect("127.0.0.1", server.port, heap={"from_connect": i}) for i in range(3)]
    ids = [c.id for c in conns]
    assert len(set(ids)) == 3 and m.connections == 3
    assert all(m[i] is c for i, c in zip(ids, conns))
    kernel.run()
    for c in conns:
        mine = [e for e in log if e[1] == c.id]
        assert [e[0] for e in mine] == ["init", "success", "input", "disconnected"]
        assert mine[2][2] == b"hello %d" % c.id and mine[2][3] == "prepopulated"
    # idle, not ended: usable until die()
    assert m.connections == 0 and not m.ended and kernel.sessions == 0


def test_refused_timeout_mix_exactly_one_terminal_callback(kernel, unused_port, black_hole):
    server = echo_server(kernel)
    terminal = {}
    failures = []

    def record(kind):
        def cb(c, *a):
            terminal.setdefault(c.id, []).append(kind)
            if len(terminal) == len(conns):
                server.shutdown()
        return cb

    m = TCPMulti(kernel=kernel, on_input=lambda c, r: c.shutdown(),
                 on_success=lambda c: c.put(b"ping"),
                 on_failure=lambda c, op, n, s: failures.append((c.id, op, n)),
                 on_disconnected=record("disconnected"), on_timeout=record("timeout"),
                 connect_timeout=0.3)
    conns = {}
    for port, kind in ((server.port, "ok"), (unused_port, "refused"), (black_hole, "timeout")):
        for _ in range(3):
            conns[m.connect("127.0.0.1", port).id] = kind
    kernel.run()
    assert sorted(terminal) == sorted(conns)
    for cid, kind in conns.items():
        assert len(terminal[cid]) == 1
        assert terminal[cid][0] == ("timeout" if kind == "timeout" else "disconnected")
    assert sorted(cid for cid, op, n in failures) == sorted(
        cid for cid, kind in conns.items() if kind == "refused")
    assert all(op == "connect" and n == errno.ECONNREFUSED for _, op, n in failures)


def test_input_timeout_and_timeout_method(kernel):
    server = echo_server(kernel)
    events = []

    def on_success(c):
        assert c.timeout() == 0.2
        c.timeout(0.1)
        assert c.timeout() == 0.1

    m = TCPMulti(kernel=kernel, on_input=lambda c, r: None, on_success=on_success,
                 input_timeout=0.2,
                 on_timeout=lambda c: (events.append("timeout"), server.shutdown()),
                 on_disconnected=lambda c: events.append("disconnected"))
    c = m.connect("127.0.0.1", server.port)
    assert c.timeout() == 30.0  # the connect timeout while connecting
    start = kernel.time()
    kernel.run()
    assert events == ["timeout"]
    assert 0.1 <= kernel.time() - start < 10


def test_input_resets_the_timeout(kernel):
    ticks = []
    server = echo_server(kernel)
    m = TCPMulti(kernel=kernel, input_timeout=0.15,
                 on_success=lambda c: c.put(b"tick"),
                 on_input=lambda c, r: (ticks.append(r),
                                        c.delay(0.05, lambda c: c.put(b"tick"))
                                        if len(ticks) < 8 else None),
                 on_timeout=lambda c: (ticks.append("timeout"), server.shutdown()))
    m.connect("127.0.0.1", server.port)
    kernel.run()
    # 8 round trips 50 ms apart never let the 150 ms timeout expire.
    assert ticks == [b"tick"] * 8 + ["timeout"]


def test_send_by_id_shutdown_of_gone_id_and_die(kernel):
    server = echo_server(kernel)
    got = []

    def on_success(c):
        assert m.send(c.id, b"via send") is False
        if len(got) == 0 and m.connections == 2 and all(x.connected for x in m):
            pass

    def on_input(c, record):
        got.append(record)
        if len(got) == 2:
            m.die()

    m = TCPMulti(kernel=kernel, on_input=on_input,
                 on_success=lambda c: m.send(c.id, b"via send"),
                 on_disconnected=lambda c: got.append("disc"),
                 states={"_stop": lambda multi: (got.append("stop"), server.shutdown())})
    a = m.connect("127.0.0.1", server.port)
    b = m.connect("127.0.0.1", server.port)
    kernel.run()
    assert got[:2] == [b"via send", b"via send"]
    assert sorted(got[2:4]) == ["disc", "disc"] and got[4] == "stop"
    m.shutdown(a.id)  # gone: nothing happens
    assert m.send(b.id, b"x") is False
    with pytest.raises(CypoeError):
        m.connect("127.0.0.1", server.port)


def test_bind_address_spreads_source_addresses(kernel):
    seen = []
    server = echo_server(kernel, client_connected=lambda c: (seen.append(c.remote_ip),
                                                               c.shutdown()))
    done = []
    m = TCPMulti(kernel=kernel, on_input=lambda c, r: None,
                 on_disconnected=lambda c: (done.append(c.local_addr),
                                            server.shutdown() if len(done) == 3 else None))
    for i in (2, 3, 4):
        m.connect("127.0.0.1", server.port, bind_address=f"127.0.0.{i}")
    kernel.run()
    assert sorted(seen) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def test_per_connection_filter_switch(kernel):
    server = Server(port=0, address="127.0.0.1", kernel=kernel, client_filter=Stream(),
                    client_input=lambda c, r: c.put(r))
    got = []

    def on_success(c):
        c.filter(Block(block_size=4))
        c.put(b"abcd", b"efgh")

    def on_input(c, record):
        got.append(record)
        if len(got) == 2:
            c.shutdown()

    m = TCPMulti(kernel=kernel, on_input=on_input, on_success=on_success,
                 on_disconnected=lambda c: server.shutdown())
    m.connect("127.0.0.1", server.port)
    kernel.run()
    assert got == [b"abcd", b"efgh"]


def test_exception_in_on_input_closes_only_that_connection(kernel, caplog):
    server = echo_server(kernel)
    events = []

    def on_input(c, record):
        if record == b"bad":
            raise RuntimeError("multi callback failed")
        events.append(record)
        c.shutdown()

    def on_disconnected(c):
        events.append(("disc", c.heap["name"]))
        if m.connections == 0:
            server.shutdown()

    m = TCPMulti(kernel=kernel, on_input=on_input, on_success=lambda c: c.put(c.heap["name"]),
                 on_disconnected=on_disconnected)
    m.connect("127.0.0.1", server.port, heap={"name": b"bad"})
    m.connect("127.0.0.1", server.port, heap={"name": b"good"})
    with caplog.at_level("ERROR", logger="cypoe"):
        kernel.run()
    assert b"good" in events and b"bad" not in events
    assert sorted(e[1] for e in events if isinstance(e, tuple)) == [b"bad", b"good"]
    assert any("multi callback failed" in str(r.exc_info[1]) for r in caplog.records
               if r.exc_info)


def test_connect_by_posting_to_the_alias_and_start_state(kernel):
    server = echo_server(kernel)
    got = []

    def start(multi, port):
        multi.heap["started"] = True
        multi.connect("127.0.0.1", port)

    m = TCPMulti(kernel=kernel, alias="multi", args=(server.port,),
                 states={"_start": start},
                 on_success=lambda c: c.put(b"hi"),
                 on_input=lambda c, r: (got.append(r), c.shutdown()),
                 on_disconnected=lambda c: server.shutdown() if len(got) == 2 else None)
    assert m.heap["started"]
    kernel.post("multi", "connect", "127.0.0.1", server.port)
    kernel.run()
    assert got == [b"hi", b"hi"]


def test_name_lookup_and_failure(kernel):
    server = echo_server(kernel)
    events = []
    m = TCPMulti(kernel=kernel, on_success=lambda c: c.put(b"named"),
                 on_input=lambda c, r: (events.append(r), c.shutdown()),
                 on_failure=lambda c, op, n, s: events.append(op),
                 on_disconnected=lambda c: server.shutdown() if m.connections == 0 else None,
                 domain=socket.AF_INET)
    m.connect("localhost", server.port)
    m.connect("no-such-host.invalid", server.port)
    kernel.run()
    assert sorted(events, key=str) == [b"named", "resolve"]


def test_many_connections_leave_nothing_behind(kernel):
    server = echo_server(kernel)
    done = []
    m = TCPMulti(kernel=kernel, on_success=lambda c: c.put(b"x"),
                 on_input=lambda c, r: c.shutdown(),
                 on_disconnected=lambda c: (done.append(c.id),
                                            server.shutdown() if len(done) == 300 else None))
    for _ in range(300):
        m.connect("127.0.0.1", server.port)
    kernel.run()
    assert len(done) == 300
    assert kernel.n_handlers == 0 and kernel.n_timers == 0 and kernel.sessions == 0


def test_validation(kernel):
    with pytest.raises(TypeError, match="on_input"):
        TCPMulti(kernel=kernel, on_input=None)
    m = TCPMulti(kernel=kernel, on_input=print)
    with pytest.raises(ValueError, match="port"):
        m.connect("127.0.0.1", 0)
    with pytest.raises(TypeError, match="address"):
        m.connect(None, 80)
    with pytest.raises(ValueError, match="connect_timeout"):
        m.connect("127.0.0.1", 80, connect_timeout=-1)
    kernel.run()


# -- an idle TCPMulti stays usable until die() (SEMANTICS "TCPMulti") ----------

def _idle_multi(kernel, log, **kw):
    kw.setdefault("on_success", lambda c: c.put(b"ping"))
    kw.setdefault("on_input", lambda c, r: (log.append(r), c.shutdown()))
    return TCPMulti(kernel=kernel, **kw)


def test_connect_from_a_timer_before_the_first_connection(kernel):
    server = echo_server(kernel)
    got = []
    m = _idle_multi(kernel, got, on_disconnected=lambda c: server.shutdown())
    # The TCPMulti has nothing to do when the loop first looks at it.
    kernel.delay(0.01, lambda: m.connect("127.0.0.1", server.port))
    kernel.run()
    assert got == [b"ping"]
    assert not m.ended


def test_connect_after_every_connection_has_ended(kernel):
    server = echo_server(kernel)
    got = []

    def on_disconnected(c):
        if len(got) < 3:
            # a later batch: the TCPMulti is idle until the timer fires
            kernel.delay(0.01, lambda: m.connect("127.0.0.1", server.port))
        else:
            server.shutdown()

    m = _idle_multi(kernel, got, on_disconnected=on_disconnected)
    m.connect("127.0.0.1", server.port)
    kernel.run()
    assert got == [b"ping"] * 3


def test_idle_multi_lets_run_return_and_comes_back(kernel):
    got = []
    stops = []
    servers = []

    def on_disconnected(c):
        if m.connections == 0:
            servers[-1].shutdown()

    m = _idle_multi(kernel, got, alias="idle-multi", on_disconnected=on_disconnected,
                    states={"_stop": lambda multi: stops.append("stop")})
    kernel.run()            # nothing to do: returns
    assert not m.ended and m.connections == 0 and stops == []
    assert kernel.sessions == 0 and kernel.alias_resolve("idle-multi") is m
    servers.append(echo_server(kernel))
    m.connect("127.0.0.1", servers[-1].port)
    m.connect("127.0.0.1", servers[-1].port)
    kernel.run()
    assert got == [b"ping", b"ping"] and stops == []
    assert kernel.sessions == 0 and kernel.n_handlers == 0
    # posting to the alias of an idle TCPMulti brings it back too
    servers.append(echo_server(kernel))
    assert kernel.post("idle-multi", "connect", "127.0.0.1", servers[-1].port)
    kernel.run()
    assert got == [b"ping"] * 3
    m.die()
    assert m.ended and stops == ["stop"]
    assert kernel.alias_resolve("idle-multi") is None
    with pytest.raises(CypoeError, match="ended"):
        m.connect("127.0.0.1", servers[-1].port)
    m.die()                 # twice is fine
    assert stops == ["stop"]


def test_state_timer_and_heap_survive_an_idle_period(kernel):
    server = echo_server(kernel)
    got = []

    def again(multi):
        multi.heap["rounds"] += 1
        multi.connect("127.0.0.1", server.port)

    def on_disconnected(c):
        if len(got) == 2:
            server.shutdown()
        else:
            # the TCPMulti is idle once this returns; its own timer (set
            # while it is idle) brings the session back
            kernel.delay(0.01, lambda: m.delay(0.01, "again"))

    m = _idle_multi(kernel, got, states={"again": again}, on_disconnected=on_disconnected)
    m.heap["rounds"] = 0
    m.connect("127.0.0.1", server.port)
    kernel.run()
    assert got == [b"ping", b"ping"] and m.heap["rounds"] == 1


def test_adopt_on_an_idle_multi(kernel):
    server = echo_server(kernel)
    got = []
    m = _idle_multi(kernel, got, on_disconnected=lambda c: server.shutdown())

    def adopt():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", server.port))
        m.adopt(s, "127.0.0.1", server.port)
        assert s.fileno() == -1          # detached: the Conn owns the fd

    kernel.delay(0.01, adopt)
    kernel.run()
    assert got == [b"ping"]


def test_adopt_keeps_its_private_name():
    assert cypoe.TCPMulti._adopt is cypoe.TCPMulti.adopt


def test_connect_while_dying_raises(kernel):
    server = echo_server(kernel)
    m = _idle_multi(kernel, [], on_disconnected=lambda c: server.shutdown())
    m.connect("127.0.0.1", server.port)
    m.die()
    with pytest.raises(CypoeError, match="ended"):
        m.connect("127.0.0.1", server.port)
    kernel.run()
    assert m.ended


def test_connects_beyond_the_fd_limit_fail_one_by_one(tmp_path):
    """In a subprocess with RLIMIT_NOFILE 1024: 2000 connects made before
    run() -- those past the limit get on_failure(conn, "socket", EMFILE,
    ...), every connection gets exactly one terminal callback, and the run
    goes on to its end (issue 11)."""
    script = textwrap.dedent("""
        import collections, errno, resource, socket
        import cypoe
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(4096)        # never accepted: the queue holds no fd here
        port = lst.getsockname()[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        k = cypoe.Kernel()
        failures = collections.Counter()
        ends = collections.Counter()
        successes = []
        m = cypoe.TCPMulti(kernel=k, on_input=lambda c, r: None,
                           on_success=lambda c: (successes.append(c.id), c.shutdown()),
                           on_failure=lambda c, op, n, s: failures.update([(op, n)]),
                           on_disconnected=lambda c: ends.update([c.id]),
                           on_timeout=lambda c: ends.update([c.id]), connect_timeout=20)
        conns = [m.connect("127.0.0.1", port) for _ in range(2000)]
        k.run()
        print(failures[("socket", errno.EMFILE)], sum(failures.values()), len(successes),
              len(ends), max(ends.values()), sorted(ends) == sorted(c.id for c in conns),
              m.connections)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    emfile, failed, succeeded, ended, most, all_ended, left = proc.stdout.split()
    assert int(emfile) > 0 and int(emfile) == int(failed)
    assert int(succeeded) > 0 and int(emfile) + int(succeeded) <= 2000
    assert int(ended) == 2000 and int(most) == 1 and all_ended == "True" and left == "0"
