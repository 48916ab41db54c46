"""TCPMulti at scale: 15,000 concurrent connections from this process to a
cypoe Server in a child process, one line echoed on each, all closed, and
this process's fds back to their baseline."""
import gc
import os
import resource
import subprocess
import sys
import textwrap

import pytest

import cypoe

N = 15_000

SERVER = textwrap.dedent("""
    import resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import cypoe
    def client_input(conn, record):
        conn.put(record)
        if record == b"bye":
            conn.shutdown()   # the server closes first: TIME_WAIT stays on its side
    server = cypoe.Server(port=0, address="127.0.0.1", client_input=client_input,
                          listen_queue=4096)
    print(server.port, flush=True)
    def on_stdin(fd):
        if not sys.stdin.buffer.read1(100):
            cypoe.kernel.select_read(sys.stdin, None)
            server.shutdown(connections=True)
    cypoe.kernel.select_read(sys.stdin, on_stdin)
    cypoe.run()
""")


def open_fds():
    gc.collect()   # kernels and sockets of earlier tests that wait in reference cycles
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_15000_concurrent_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < N + 1000:
        pytest.fail(f"the open-file hard limit ({hard}) is below what this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        k = cypoe.Kernel()
        baseline = open_fds()
        state = {"echoed": 0, "open": 0, "max_open": 0, "disconnected": 0,
                 "failed": [], "errors": []}

        def on_success(c):
            state["open"] += 1
            state["max_open"] = max(state["max_open"], state["open"])
            c.put(b"line %d" % c.id)

        def on_input(c, record):
            if record == b"line %d" % c.id:
                state["echoed"] += 1
                if state["echoed"] == N:
                    # Everyone is connected at once now: close them all.
                    assert state["open"] == N
                    for conn in m:
                        conn.put(b"bye")
            elif record != b"bye":
                state["errors"].append(record)

        def on_disconnected(c):
            state["open"] -= 1
            state["disconnected"] += 1

        m = TCPMulti = cypoe.TCPMulti(
            kernel=k, on_success=on_success, on_input=on_input,
            on_failure=lambda c, op, n, s: state["failed"].append((op, n)),
            on_disconnected=on_disconnected, connect_timeout=60, input_timeout=120)
        # Open in waves so the listen queue is never overrun; the sources are
        # spread over 127.0.0.x so no single source runs short of ports.
        pending = list(range(N))

        def wave():
            for _ in range(min(2000, len(pending))):
                i = pending.pop()
                m.connect("127.0.0.1", port, bind_address=f"127.0.0.{2 + i % 8}")
            if pending:
                k.delay(0.05, wave)

        wave()
        k.run()
        assert state["failed"] == []
        assert state["errors"] == []
        assert state["echoed"] == N
        assert state["max_open"] == N
        assert state["disconnected"] == N
        assert m.connections == 0
        assert open_fds() == baseline
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
