"""Stream: POE 1.370 t/10_units/05_filters/08_stream.t."""
from filter_helpers import standard

FODDER = [b"a", b"bc", b"def", b"ghij", b"klmno"]


def test_poe_standard(impl):
    standard(impl.Stream(), FODDER, [b"abcdefghijklmno"], [b"abcdefghijklmno"])


def test_poe_specific(impl):
    f = impl.Stream()
    assert f.get(FODDER) == [b"abcdefghijklmno"]
    assert f.put(FODDER) == FODDER
    f.get_one_start(FODDER)
    assert f.get_pending() == b"abcdefghijklmno"
    assert f.get_one() == [b"abcdefghijklmno"]
    assert f.get_one() == []
    assert f.get_pending() is None


def test_empty_input_gives_nothing(impl):
    f = impl.Stream()
    assert f.get([]) == [] and f.get([b""]) == []
    assert f.get([b"x"]) == [b"x"]
    assert f.clone().get_pending() is None
