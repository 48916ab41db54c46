"""Connection-layer benchmarks: ReadWrite against asyncio and uvloop Protocols.

    python -m pytest bench/test_bench_io.py --benchmark-only -q

Every server runs in its own process and does the same work: Line-framed
echo (split on b"\\n", one write per line, or the lines of one read gathered
into a single ``writelines``), Stream echo, and a bulk Stream sink.  The load
generator is the same for every server: a small C client compiled here with
gcc (``poll()`` over C connections, each keeping ``pipeline`` requests in
flight).  A round's time is its wall time; the server's CPU time for the
round (utime + stime from /proc) is reported per request in ``extra_info``.

Issue targets: pipelining 1 -- match the best peer within noise and use less
server CPU per request; pipelining 16 -- at least 1.7x uvloop's batched
(writelines) Protocol.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

CONNS = 8
REQUESTS = 20000          # per round, over all connections
MSG = 32                  # bytes per request, newline included
SINK_BYTES = 256 << 20

LOADGEN_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int dial(int port) {
    struct sockaddr_in a; memset(&a, 0, sizeof a);
    a.sin_family = AF_INET; a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(0x7f000001);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr*)&a, sizeof a) < 0) { perror("connect"); exit(2); }
    return fd;
}

int main(int argc, char** argv) {
    if (argc < 6) { fprintf(stderr, "usage\n"); return 2; }
    int port = atoi(argv[1]), conns = atoi(argv[2]), pipe_n = atoi(argv[3]);
    long total = atol(argv[4]); int msg = atoi(argv[5]);
    if (conns == 0) {       /* sink: send `total` bytes, half-close, wait for the reply */
        int fd = dial(port);
        static char buf[1 << 16]; memset(buf, 's', sizeof buf);
        double t0 = now(); long left = total;
        while (left > 0) {
            ssize_t n = send(fd, buf, left < (long)sizeof buf ? left : (long)sizeof buf, 0);
            if (n <= 0) { perror("send"); return 2; }
            left -= n;
        }
        shutdown(fd, SHUT_WR);
        char r[16]; if (recv(fd, r, sizeof r, 0) <= 0) { fprintf(stderr, "no reply\n"); return 2; }
        printf("%.6f\n", now() - t0); return 0;
    }
    int* fds = calloc(conns, sizeof(int)); long* want = calloc(conns, sizeof(long));
    long* sent = calloc(conns, sizeof(long));
    struct pollfd* p = calloc(conns, sizeof(struct pollfd));
    char* req = malloc(msg * pipe_n); static char rbuf[1 << 16];
    for (int i = 0; i < msg * pipe_n; i++) req[i] = (i % msg == msg - 1) ? '\n' : 'a' + i % 26;
    long per = total / conns;
    for (int i = 0; i < conns; i++) { fds[i] = dial(port); p[i].fd = fds[i]; p[i].events = POLLIN; }
    double t0 = now();
    for (int i = 0; i < conns; i++) {
        int k = per - sent[i] < pipe_n ? per - sent[i] : pipe_n;
        send(fds[i], req, (size_t)k * msg, 0); sent[i] += k; want[i] = (long)k * msg;
    }
    int active = conns;
    while (active > 0) {
        if (poll(p, conns, 10000) <= 0) { fprintf(stderr, "timeout\n"); return 2; }
        for (int i = 0; i < conns; i++) {
            if (!(p[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
            ssize_t n = recv(fds[i], rbuf, sizeof rbuf, 0);
            if (n <= 0) { fprintf(stderr, "closed\n"); return 2; }
            want[i] -= n;
            if (want[i] == 0) {
                if (sent[i] >= per) { p[i].fd = -1; active--; continue; }
                int k = per - sent[i] < pipe_n ? per - sent[i] : pipe_n;
                send(fds[i], req, (size_t)k * msg, 0); sent[i] += k; want[i] = (long)k * msg;
            }
        }
    }
    printf("%.6f\n", now() - t0);
    return 0;
}
"""

SERVER_PY = r'''
import os, sys
sys.path.insert(0, os.environ["CYPOE_SRC"])
impl, mode = sys.argv[1], sys.argv[2]

if impl == "cypoe":
    import cypoe
    from cypoe import ReadWrite, SocketFactory, Line, Stream
    k = cypoe.kernel
    conns = []

    if mode == "line":
        flt = lambda: Line(literal=b"\n")
        def on_input(rw, rec):
            rw.put(rec)
    elif mode == "stream":
        flt = Stream
        def on_input(rw, rec):
            rw.put(rec)
    else:
        flt = Stream
        count = [0]
        def on_input(rw, rec):
            count[0] += len(rec)

    def on_error(rw, op, errnum, errstr):
        if mode == "sink" and op == "read" and errnum == 0:
            rw.put(b"done")
            rw.shutdown_output()
            return
        rw.close()

    def accepted(sf, sock, addr, port):
        conns.append(ReadWrite(sock, filter=flt(), on_input=on_input, on_error=on_error))

    sf = SocketFactory(bind_address="127.0.0.1", reuse=True, on_success=accepted,
                       on_failure=lambda *a: None)
    print(sf.getsockname()[1], flush=True)
    k.run()
else:
    import asyncio
    if impl.startswith("uvloop"):
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    batched = impl.endswith("writelines")

    class Echo(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            self.buf = b""
            self.n = 0

        def data_received(self, data):
            if mode == "sink":
                self.n += len(data)
                return
            if mode == "stream":
                self.t.write(data)
                return
            buf = self.buf + data if self.buf else data
            lines = buf.split(b"\n")
            self.buf = lines.pop()
            if batched:
                self.t.writelines([l + b"\n" for l in lines])
            else:
                for l in lines:
                    self.t.write(l + b"\n")

        def eof_received(self):
            if mode == "sink":
                self.t.write(b"done")
            return True

    srv = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0, reuse_address=True))
    print(srv.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()
'''

IMPLS = ["cypoe", "asyncio-protocol", "asyncio-protocol-writelines", "uvloop-protocol",
         "uvloop-protocol-writelines"]


@pytest.fixture(scope="module")
def loadgen():
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed for the load generator")
    d = tempfile.mkdtemp(prefix="cypoe-bench-io-")
    src = os.path.join(d, "loadgen.c")
    exe = os.path.join(d, "loadgen")
    with open(src, "w") as fh:
        fh.write(LOADGEN_C)
    subprocess.check_call(["gcc", "-O2", "-o", exe, src])
    yield exe
    shutil.rmtree(d, ignore_errors=True)


_servers = {}


def server(impl, mode):
    key = (impl, mode)
    if key in _servers:
        return _servers[key]
    if impl.startswith("uvloop"):
        pytest.importorskip("uvloop")
    d = tempfile.mkdtemp(prefix="cypoe-bench-srv-")
    script = os.path.join(d, "server.py")
    with open(script, "w") as fh:
        fh.write(SERVER_PY)
    env = dict(os.environ, CYPOE_SRC=SRC)
    p = subprocess.Popen([sys.executable, script, impl, mode], stdout=subprocess.PIPE,
                         env=env, text=True)
    port = int(p.stdout.readline())
    _servers[key] = (p, port)
    return p, port


@pytest.fixture(scope="module", autouse=True)
def _stop_servers():
    yield
    for p, _ in _servers.values():
        p.kill()
        p.wait()
    _servers.clear()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_rounds(benchmark, loadgen, impl_name, mode, args, requests, rounds=5):
    p, port = server(impl_name, mode)
    cpu = []

    def one():
        c0 = cpu_seconds(p.pid)
        out = subprocess.run([loadgen, str(port)] + [str(a) for a in args],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        cpu.append(cpu_seconds(p.pid) - c0)

    benchmark.pedantic(one, rounds=rounds, iterations=1, warmup_rounds=1)
    cpu = cpu[1:] if len(cpu) > 1 else cpu
    benchmark.extra_info["server_cpu_us_per_request"] = round(
        1e6 * sum(cpu) / len(cpu) / requests, 3)
    benchmark.extra_info["requests_per_round"] = requests


@pytest.mark.parametrize("pipeline", [1, 16])
@pytest.mark.parametrize("server_impl", IMPLS)
def test_line_echo(benchmark, impl, loadgen, server_impl, pipeline):
    impl(server_impl, group=f"io line echo, pipelining {pipeline}")
    n = REQUESTS * (10 if pipeline > 1 else 1)
    run_rounds(benchmark, loadgen, server_impl, "line", [CONNS, pipeline, n, MSG], n)


@pytest.mark.parametrize("pipeline", [1, 16])
@pytest.mark.parametrize("server_impl", ["cypoe", "asyncio-protocol", "uvloop-protocol"])
def test_stream_echo(benchmark, impl, loadgen, server_impl, pipeline):
    impl(server_impl, group=f"io stream echo, pipelining {pipeline}")
    n = REQUESTS * (10 if pipeline > 1 else 1)
    run_rounds(benchmark, loadgen, server_impl, "stream", [CONNS, pipeline, n, MSG], n)


@pytest.mark.parametrize("server_impl", ["cypoe", "asyncio-protocol", "uvloop-protocol"])
def test_stream_sink(benchmark, impl, loadgen, server_impl):
    impl(server_impl, group="io stream sink, 256 MiB")
    run_rounds(benchmark, loadgen, server_impl, "sink", [0, 0, SINK_BYTES, 0], 1, rounds=3)
    benchmark.extra_info["MiB_per_s"] = round(
        SINK_BYTES / (1 << 20) / benchmark.stats.stats.median, 1)
