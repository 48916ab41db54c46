"""Helpers shared by the filter tests."""
from cypoe.errors import FilterError


def run_chunks(f, chunks, max_errors=10_000):
    """Feed chunks with one get() call each, as ReadWrite does; after a
    FilterError keep calling get([]) until it returns.  Returns (records,
    [error types]) with the records an error carried kept in order."""
    records, errors = [], []
    for chunk in list(chunks) + [None]:
        arg = [] if chunk is None else [chunk]
        while True:
            try:
                records.extend(f.get(arg))
                break
            except FilterError as exc:
                records.extend(exc.records)
                errors.append(type(exc))
                arg = []
                assert len(errors) < max_errors, "filter keeps raising: no progress"
    return records, errors


def get_all_one(f, chunks):
    """get_one_start(chunks) then get_one() until it returns []."""
    f.get_one_start(chunks)
    out = []
    while True:
        r = f.get_one()
        assert isinstance(r, list)
        if not r:
            return out
        out.extend(r)


def standard(f, chunks, expected, expected_put):
    """POE's test_filter_standard: get, clone, get_one, put."""
    assert f.get(chunks) == expected
    f2 = f.clone()
    assert type(f2) is type(f)
    assert f2.get_pending() is None
    f2.get_one_start(chunks)
    pending = f2.get_pending()
    if isinstance(pending, list):           # Map/Grep buffer records
        assert pending == list(chunks)
    else:                                   # byte filters buffer bytes
        assert pending == b"".join(chunks)
    out = []
    while True:
        r = f2.get_one()
        assert isinstance(r, list)
        if not r:
            break
        out.extend(r)
    assert out == expected
    assert f2.put(expected) == expected_put
