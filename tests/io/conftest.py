"""Helpers for the I/O tests: bounded loop driving, loopback pairs, TLS
contexts with a self-signed certificate."""
import datetime
import socket
import time

import pytest


def run_until(kernel, cond, timeout=10.0, step=0.05):
    """Run loop iterations until cond() is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %.1fs" % timeout)
        kernel.run_once(step)


def run_for(kernel, seconds, step=0.02):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kernel.run_once(step)


def tcp_pair(family=socket.AF_INET):
    """A connected loopback TCP pair (a, b), both blocking."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(1)
    a = socket.socket(family, socket.SOCK_STREAM)
    a.connect(lst.getsockname())
    b, _ = lst.accept()
    lst.close()
    return a, b


class Recorder:
    """Collects ReadWrite events in order."""

    def __init__(self):
        self.events = []
        self.records = []

    def on_input(self, rw, record):
        self.records.append(record)

    def on_error(self, rw, op, errnum, errstr):
        self.events.append(("error", op, errnum, errstr))

    def on_flushed(self, rw):
        self.events.append(("flushed",))

    def on_high(self, rw):
        self.events.append(("high",))

    def on_low(self, rw):
        self.events.append(("low",))

    def count(self, kind):
        return sum(1 for e in self.events if e[0] == kind)

    def errors(self):
        return [e for e in self.events if e[0] == "error"]


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def exceptions(kernel):
    """Exceptions reported through the kernel's exception handler."""
    seen = []
    kernel.set_exception_handler(lambda k, ctx: seen.append(ctx))
    return seen


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory):
    """A self-signed certificate for localhost: (certfile, keyfile)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    certfile, keyfile = d / "cert.pem", d / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


@pytest.fixture
def server_ctx(cert_files):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert_files)
    return ctx


@pytest.fixture
def client_ctx(cert_files):
    import ssl

    ctx = ssl.create_default_context(cafile=cert_files[0])
    return ctx
