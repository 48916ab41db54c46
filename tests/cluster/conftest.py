"""A Dask cluster of real processes on loopback for the cluster tests: one
scheduler (``dask scheduler --port 0 --scheduler-file F``) and two workers
(``dask worker … --nthreads 1 --resources cypoe=1``, each under its nanny),
shut down with ``client.shutdown()``."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

distributed = pytest.importorskip(
    "distributed", reason="the cluster tests need Dask distributed: pip install 'cypoe[cluster]'")

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")


class DaskCluster:
    """The processes of a local Dask cluster; ``token`` marks every process
    started under it (its environment), so the tests find the agents."""

    def __init__(self, tmp_path, workers=2, scheduler_env=None, tls=None):
        self.token = uuid.uuid4().hex
        self.env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
                        CYPOE_TEST_CLUSTER=self.token)
        self.env.pop("CYPOE_CLUSTER", None)
        self.file = str(tmp_path / f"scheduler-{self.token[:8]}.json")
        self.logs = []
        # tls: (ca, cert, key): every process with it, the client through Dask's config
        tls_args = ["--tls-ca-file", tls[0], "--tls-cert", tls[1], "--tls-key", tls[2]] \
            if tls else []
        self.scheduler = self._start(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", self.file,
             "--no-dashboard", *(["--protocol", "tls"] if tls else []), *tls_args],
            dict(self.env, **(scheduler_env or {})), tmp_path, "scheduler")
        self.nannies = []
        self.client = None
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(self.file) or not os.path.getsize(self.file):
                assert self.scheduler.poll() is None, self.log_tail()
                assert time.monotonic() < deadline, "the scheduler did not start"
                time.sleep(0.05)
            time.sleep(0.05)  # the file is written whole
            for i in range(workers):
                self.nannies.append(self._start(
                    ["worker", "--scheduler-file", self.file, "--nthreads", "1",
                     "--resources", "cypoe=1", "--host", "127.0.0.1", "--no-dashboard",
                     "--name", f"agent-{i}", *tls_args], self.env, tmp_path, f"worker{i}"))
            security = distributed.Security(tls_ca_file=tls[0], tls_client_cert=tls[1],
                                            tls_client_key=tls[2], require_encryption=True) \
                if tls else None
            self.client = distributed.Client(scheduler_file=self.file, timeout=60,
                                             set_as_default=False, security=security)
            self.client.wait_for_workers(workers, timeout=90)
        except BaseException:
            self.close()
            raise

    def _start(self, args, env, tmp_path, name):
        log = open(tmp_path / f"{name}-{self.token[:8]}.log", "w")
        self.logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "dask", *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self):
        out = []
        for log in self.logs:
            log.flush()
            with open(log.name) as fh:
                out.append(log.name + ":\n" + "".join(fh.readlines()[-15:]))
        return "\n".join(out)

    def worker_pids(self):
        """{worker address: pid of the worker process (a nanny's child)}"""
        return self.client.run(os.getpid)

    def agent_pids(self):
        """PIDs of the agent children (``cypoe.cli.agent``) of this cluster."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read()
                if b"cypoe.cli.agent" not in cmd:
                    continue
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if f"CYPOE_TEST_CLUSTER={self.token}".encode() not in fh.read().split(b"\0"):
                        continue
            except OSError:
                continue
            if alive(int(entry)):
                pids.append(int(entry))
        return pids

    def close(self):
        if self.client is not None:
            try:
                self.client.shutdown()
            except Exception:  # noqa: BLE001 - some processes may be gone already
                pass
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
        for proc in self.nannies + [self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for log in self.logs:
            log.close()


def alive(pid):
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(cond, timeout=60.0, what="the condition"):
    """Poll ``cond`` (bounded; a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    c = DaskCluster(tmp_path_factory.mktemp("dask"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def fragile_cluster(tmp_path_factory):
    """A cluster whose scheduler gives a task up (KilledWorker) at the first
    worker that dies under it (allowed-failures 0)."""
    c = DaskCluster(tmp_path_factory.mktemp("dask-fragile"),
                    scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    yield c
    c.close()


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for a test that kills its processes."""
    made = []

    def make(**kw):
        c = DaskCluster(tmp_path, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


@pytest.fixture
def tls_cert(tmp_path):
    """A self-signed CA certificate for 127.0.0.1 and its key: the CA, the
    certificate and the key of every process of a TLS cluster."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cypoe-cluster-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path = tmp_path / "cluster-cert.pem"
    key_path = tmp_path / "cluster-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def listeners():
    """Listening sockets on 127.0.0.1 (and one on 127.0.1.7): the scan's open ports."""
    import socket
    socks = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(512)
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    extra = socket.socket()
    extra.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    extra.bind(("127.0.1.7", ports[0]))
    extra.listen(512)
    socks.append(extra)
    yield ports
    for s in socks:
        s.close()


def read_jsonl(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
