"""Port specifications, as nmap and masscan take them.

``22``, ``22,80,443``, ``8000-8100``, ``-`` or ``1-65535`` (all ports),
``-1024`` (1 to 1024), ``60000-`` (60000 to 65535), service names known to
the system (``http``, ``ssh``), and any comma-separated mix of these.

Port 0 is not a port one can connect to (it asks the system for "any
port"), so a specification naming it, alone or as a range's end, is an
error that names the specification.
"""
import socket

MIN_PORT = 1
MAX_PORT = 65535


class PortSpecError(ValueError):
    pass


def _port(text, spec):
    text = text.strip()
    if not text:
        raise PortSpecError(f"empty port in {spec!r}")
    if text.isdigit():
        n = int(text)
        if n == 0:
            raise PortSpecError(f"port 0 cannot be scanned (ports are {MIN_PORT}-{MAX_PORT}) "
                                f"in {spec!r}")
        if n > MAX_PORT:
            raise PortSpecError(f"port {n} out of range {MIN_PORT}-{MAX_PORT} in {spec!r}")
        return n
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise PortSpecError(f"unknown port or service {text!r} in {spec!r}") from None


def parse_ports(spec):
    """Parse a port specification into a sorted list of distinct ports.

    ``-`` (as in ``-p-``) means 1-65535, like nmap; port 0 is an error
    (:class:`PortSpecError`, which names the specification).
    """
    if not isinstance(spec, str):
        raise TypeError("port specification must be a str")
    spec = spec.strip()
    if spec.upper().startswith("T:"):
        spec = spec[2:]
    if not spec:
        raise PortSpecError("empty port specification")
    ports = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise PortSpecError(f"empty element in port specification {spec!r}")
        if part == "-":
            lo, hi = 1, MAX_PORT
        elif "-" in part:
            a, _, b = part.partition("-")
            lo = _port(a, spec) if a.strip() else 1
            hi = _port(b, spec) if b.strip() else MAX_PORT
            if lo > hi:
                raise PortSpecError(f"reversed port range {part!r} in {spec!r}")
        else:
            lo = hi = _port(part, spec)
        ports.update(range(lo, hi + 1))
    return sorted(ports)


def format_ports(ports):
    """Compact text for a sorted port list: ``[22, 80, 81, 82]`` -> ``22,80-82``."""
    out = []
    ports = sorted(set(ports))
    i = 0
    while i < len(ports):
        j = i
        while j + 1 < len(ports) and ports[j + 1] == ports[j] + 1:
            j += 1
        out.append(str(ports[i]) if i == j else f"{ports[i]}-{ports[j]}")
        i = j + 1
    return ",".join(out)
