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


# --- the port ranking of --top-ports and of the default port set -------------
#
# cypoe ships its own ranking (it may not ship nmap's, whose frequencies are
# under the Nmap licence); when nmap is installed, its nmap-services
# frequencies (measured by nmap's authors over the Internet) rank the ports
# at run time instead.  The shipped ranking is, in this order:
#
# 1. HAND_RANKED: the services people look for first, ranked by hand by
#    cypoe's authors (web, remote shells, mail, file sharing, databases and
#    caches, directory and name services, message brokers, remote desktops,
#    the usual alternative web ports);
# 2. IANA_TCP: the other TCP ports of IANA's service registry as the
#    netbase package's /etc/services lists them (a snapshot of the numbers),
#    ascending;
# 3. every other port, ascending.

HAND_RANKED = (
    80, 443, 22, 21, 23, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 5432, 6379,
    1723, 111, 995, 993, 5900, 1025, 587, 8443, 8888, 199, 1720, 465, 548, 113, 81, 6001,
    10000, 514, 5060, 179, 1026, 2000, 8000, 8008, 8081, 8088, 9000, 9090, 9200, 9300,
    27017, 27018, 11211, 5672, 15672, 9092, 2181, 2379, 2380, 6443, 10250, 5000, 5001,
    5601, 3000, 4443, 7001, 7002, 8009, 8161, 61616, 1433, 1521, 1434, 3050, 50000, 5984,
    7474, 8086, 26257, 9042, 7000, 1883, 8883, 5222, 5269, 6667, 6697, 389, 636, 88, 464,
    873, 2049, 3260, 161, 631, 9100, 515, 554, 1935, 5353, 5985, 5986, 623, 1080, 3128,
    8118, 8123, 9091, 9418, 3690, 2375, 2376, 5044, 4222, 6000, 49152, 49153, 49154,
    49155, 49156, 49157, 1900, 5357, 5800, 5901, 5902, 2222, 2082, 2083, 2086, 2087, 2095,
    2096, 8880, 8089, 8090, 8091, 8180, 8181, 8282, 8500, 8600, 8800, 9001, 9043, 9060,
    9443, 9999, 10443, 6666, 7070, 7777, 8001, 8002, 8010, 8020, 8083, 8084, 8085, 8087,
    8099, 8100, 8200, 8222, 8300, 8400, 8983, 11300, 15000, 16010, 18080, 20000, 25565,
    32400, 4848, 4567, 4369, 5433, 5555, 6380, 7199, 8060, 50070, 50075, 9093, 9094,
)

IANA_TCP = (
    1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 43, 49, 53, 70, 79, 80, 88, 102,
    104, 106, 110, 111, 113, 119, 135, 139, 143, 161, 162, 163, 164, 174, 179, 199, 209,
    210, 345, 346, 369, 370, 389, 427, 443, 444, 445, 464, 465, 487, 512, 513, 514, 515,
    538, 540, 543, 544, 548, 554, 563, 587, 607, 628, 631, 636, 646, 655, 706, 749, 750,
    751, 754, 775, 777, 783, 853, 871, 873, 989, 990, 992, 993, 995, 1080, 1093, 1094,
    1099, 1127, 1178, 1194, 1236, 1313, 1314, 1352, 1433, 1524, 1645, 1646, 1649, 1677,
    1812, 1813, 2000, 2049, 2086, 2101, 2119, 2121, 2135, 2401, 2430, 2431, 2432, 2433,
    2583, 2600, 2601, 2602, 2603, 2604, 2605, 2606, 2607, 2608, 2628, 2792, 2811, 2947,
    3050, 3205, 3260, 3306, 3389, 3493, 3632, 3689, 3690, 4031, 4094, 4190, 4353, 4369,
    4373, 4460, 4557, 4559, 4691, 4899, 4949, 5060, 5061, 5222, 5269, 5308, 5432, 5556,
    5666, 5667, 5671, 5672, 5680, 6000, 6001, 6002, 6003, 6004, 6005, 6006, 6007, 6346,
    6347, 6379, 6444, 6445, 6446, 6514, 6566, 6667, 6697, 7000, 7100, 8021, 8080, 8081,
    8088, 8140, 8990, 9098, 9101, 9102, 9103, 9418, 9667, 9673, 10000, 10050, 10051,
    10080, 10081, 10082, 10083, 10809, 11112, 11371, 17004, 17500, 22125, 22128, 22273,
    24554, 27374, 30865, 57000, 60177, 60179,
)

DEFAULT_TOP = 1000
# where nmap installs its data (Debian/Ubuntu, /usr/local builds, Homebrew);
# CYPOE_NMAP_SERVICES names another file, or "" for none
NMAP_SERVICES_PATHS = ("/usr/share/nmap/nmap-services", "/usr/local/share/nmap/nmap-services",
                       "/opt/homebrew/share/nmap/nmap-services")
RANKINGS = ("auto", "nmap", "builtin")


def builtin_ranking():
    """All 65535 ports, most wanted first (the shipped ranking above)."""
    seen = set()
    out = []
    for seq in (HAND_RANKED, IANA_TCP, range(MIN_PORT, MAX_PORT + 1)):
        for p in seq:
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out


def nmap_services_path():
    """The nmap-services file to rank by, or None."""
    import os
    env = os.environ.get("CYPOE_NMAP_SERVICES")
    if env is not None:
        return env if env and os.path.isfile(env) else None
    for path in NMAP_SERVICES_PATHS:
        if os.path.isfile(path):
            return path
    return None


def read_nmap_services(path):
    """{port: open frequency} of the TCP lines of an nmap-services file
    (``name port/tcp frequency [# comment]``)."""
    freq = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 3 or not fields[1].endswith("/tcp"):
                continue
            try:
                port = int(fields[1][:-4])
                f = float(fields[2])
            except ValueError:
                continue
            if MIN_PORT <= port <= MAX_PORT and f > freq.get(port, -1.0):
                freq[port] = f
    return freq


def ranking(source="auto"):
    """``(ports in rank order, source name)``: nmap's frequencies (source
    "nmap", or "auto" when nmap-services is installed) with the ports it
    does not list after them in the shipped order; else the shipped
    ranking ("builtin")."""
    if source not in RANKINGS:
        raise ValueError(f"port ranking must be one of {', '.join(RANKINGS)}")
    if source != "builtin":
        path = nmap_services_path()
        if path is not None:
            try:
                freq = read_nmap_services(path)
            except OSError:
                freq = {}
            if freq:
                base = builtin_ranking()
                pos = {p: i for i, p in enumerate(base)}
                ranked = sorted(freq, key=lambda p: (-freq[p], pos[p]))
                listed = set(ranked)
                return ranked + [p for p in base if p not in listed], f"nmap-services ({path})"
        if source == "nmap":
            raise PortSpecError("nmap's nmap-services is not installed (set "
                                "CYPOE_NMAP_SERVICES=FILE or use the builtin ranking)")
    return builtin_ranking(), "builtin"


def top_ports(n, source="auto"):
    """``(the n most wanted TCP ports, sorted, source name)``."""
    if not MIN_PORT <= n <= MAX_PORT:
        raise PortSpecError(f"--top-ports takes 1 to {MAX_PORT}, not {n}")
    ranked, name = ranking(source)
    return sorted(ranked[:n]), name
