"""Port and target specifications (no network)."""
import ipaddress

import pytest

from cypoe.cli.ports import PortSpecError, format_ports, parse_ports
from cypoe.cli.targets import TargetSet, TargetSpecError, read_spec_file


@pytest.mark.parametrize("spec,expected", [
    ("22", [22]),
    ("22,80,443", [22, 80, 443]),
    ("80,22,80", [22, 80]),
    ("8000-8003", [8000, 8001, 8002, 8003]),
    ("1-3,2-5", [1, 2, 3, 4, 5]),
    ("65533-", [65533, 65534, 65535]),
    ("-3", [1, 2, 3]),
    ("T:21-22", [21, 22]),
])
def test_parse_ports(spec, expected):
    assert parse_ports(spec) == expected


def test_all_ports():
    ports = parse_ports("-")
    assert len(ports) == 65535 and ports[0] == 1 and ports[-1] == 65535


def test_service_names():
    assert parse_ports("ssh") == [22]
    assert parse_ports("http,https") == [80, 443]


@pytest.mark.parametrize("spec", ["", "70000", "10-5", "1,,2", "nosuchservice-xyz", "a-b-c",
                                  "0", "0-5", "22,0", "-0"])
def test_bad_ports(spec):
    with pytest.raises(PortSpecError):
        parse_ports(spec)


def test_format_ports_round_trip():
    ports = [1, 2, 3, 22, 80, 81, 443]
    assert format_ports(ports) == "1-3,22,80-81,443"
    assert parse_ports(format_ports(ports)) == ports


def test_single_addresses_and_order():
    ts = TargetSet(["10.0.0.2", "10.0.0.1", "::1", "10.0.0.1"])
    assert list(ts) == ["10.0.0.1", "10.0.0.2", "::1"]
    assert len(ts) == 3
    assert ts[0] == "10.0.0.1" and ts[2] == "::1" and ts[-1] == "::1"
    assert ts.version_at(2) == 6


def test_cidr_includes_network_and_broadcast():
    ts = TargetSet(["192.0.2.0/30"])
    assert list(ts) == ["192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert len(TargetSet(["192.0.2.77/24"])) == 256  # host bits ignored


def test_ranges():
    assert list(TargetSet(["10.0.0.1-3"])) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    ts = TargetSet(["10.0.0.250-10.0.1.5"])
    assert len(ts) == 12
    assert ts[0] == "10.0.0.250" and ts[-1] == "10.0.1.5"
    assert list(TargetSet(["fd00::1-fd00::3"])) == ["fd00::1", "fd00::2", "fd00::3"]


def test_overlaps_merge():
    ts = TargetSet(["10.0.0.0/29", "10.0.0.4-10", "10.0.0.8"])
    assert list(ts) == [f"10.0.0.{i}" for i in range(11)]


def test_exclusions():
    ts = TargetSet(["10.0.0.0/28"], exclude=["10.0.0.0", "10.0.0.4-7", "10.0.0.15/32"])
    expected = [f"10.0.0.{i}" for i in range(16) if i not in (0, 4, 5, 6, 7, 15)]
    assert list(ts) == expected
    assert len(ts) == len(expected)
    assert all(ts[i] == a for i, a in enumerate(expected))
    assert "10.0.0.5" not in ts and "10.0.0.8" in ts


def test_excluding_everything_is_empty():
    assert len(TargetSet(["10.0.0.0/24"], exclude=["10.0.0.0/16"])) == 0


def test_big_networks_are_not_listed():
    ts = TargetSet(["10.0.0.0/8", "fd00::/64"])
    assert ts.count() == 2 ** 24 + 2 ** 64
    assert ts[2 ** 24 - 1] == "10.255.255.255"
    assert ts[2 ** 24] == "fd00::"
    assert ts[ts.count() - 1] == str(ipaddress.ip_address("fd00::ffff:ffff:ffff:ffff"))


def test_family_filter():
    ts = TargetSet(["127.0.0.1", "::1"], family=6)
    assert list(ts) == ["::1"]


def test_host_names_resolve_up_front():
    ts = TargetSet(["localhost"], family=4)
    assert "127.0.0.1" in list(ts)


@pytest.mark.parametrize("spec", ["", "10.0.0.300", "10.0.0.5-2", "10.0.0.1-300",
                                  "10.0.0.0/33", "10.0.0.1-::5", "1.2.3", "10.0.0.0/x"])
def test_bad_targets(spec):
    with pytest.raises(TargetSpecError):
        TargetSet([spec])


def test_unresolvable_name():
    with pytest.raises(TargetSpecError):
        TargetSet(["no-such-host.invalid"])


def test_spec_file(tmp_path):
    f = tmp_path / "hosts.txt"
    f.write_text("# targets\n10.0.0.1 10.0.0.2, 10.0.0.3\n\n10.0.1.0/30  # a net\n")
    specs = read_spec_file(str(f))
    assert specs == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.0/30"]
    assert len(TargetSet(specs)) == 7
