"""Helpers for the end-to-end CLI tests: run ``python -m cypoe …`` and
``cypoe serve`` in child processes, on loopback, always bounded in time."""
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")
ENV = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_cli(*args, timeout=120, check_rc=None):
    """Run ``python -m cypoe ARGS``; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "cypoe", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


class Served:
    def __init__(self, proc, port, first_line):
        self.proc, self.port, self.first_line = proc, port, first_line

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s


@contextlib.contextmanager
def serving(*args, timeout=20):
    """``cypoe serve ARGS`` in a child; yields a Served; on exit SIGTERM
    (graceful) and checks that it ended with status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "cypoe", "serve", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        m = re.search(r" on (?:\[[^\]]+\]|[^ ]+):(\d+) ", line)
        assert m, f"serve did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        served = Served(proc, int(m.group(1)), line)
        yield served
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=timeout)
        assert rc == 0, (rc, proc.stderr.read())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def recv_exactly(sock, n, timeout=10.0):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def recv_until_eof(sock, timeout=10.0, limit=1 << 20):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def free_ports(n):
    """n ports that nothing listens on right now (bound, then released)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def needs(*names):
    """Skip-free guard: the e2e tests need the components; they fail, not
    skip, when those are missing (a missing feature must show)."""
    import cypoe
    missing = [n for n in names if not hasattr(cypoe, n)]
    assert not missing, f"cypoe lacks {missing}"


@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate and key for 127.0.0.1 (cryptography)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cypoe-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)
