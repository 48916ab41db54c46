"""Scan order: the permutation and the shards (no network)."""
import pytest

from cypoe.cli.order import Permutation, check_shard, shard_order, shard_size


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 16, 17, 255, 1000, 4097, 65535])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_permutation_covers_each_index_once(n, seed):
    p = Permutation(n, seed)
    seq = list(p)
    assert len(seq) == n
    assert sorted(seq) == list(range(n))
    assert [p[i] for i in range(n)] == seq


def test_permutation_is_seeded_and_shuffles():
    a = list(Permutation(1000, 1))
    assert a == list(Permutation(1000, 1))
    assert a != list(Permutation(1000, 2))
    assert a != list(range(1000))
    assert list(Permutation(1000, None)) == list(range(1000))


def test_permutation_index_space_not_materialised():
    n = 2 ** 40 + 17
    p = Permutation(n, 7)
    xs = [p[i] for i in (0, 1, n - 1)]
    assert all(0 <= x < n for x in xs) and len(set(xs)) == 3
    with pytest.raises(IndexError):
        p[n]


@pytest.mark.parametrize("total,shards", [(0, 3), (1, 4), (10, 3), (1000, 7), (65535, 16), (5, 5)])
def test_shards_partition_exactly(total, shards):
    seen = []
    for i in range(shards):
        part = list(shard_order(total, shards, i, seed=99 + i))  # seeds may differ per shard
        assert len(part) == shard_size(total, shards, i)
        seen.extend(part)
    assert sorted(seen) == list(range(total))


def test_bad_shards():
    with pytest.raises(ValueError):
        check_shard(0, 0)
    with pytest.raises(ValueError):
        check_shard(4, 4)
    with pytest.raises(ValueError):
        check_shard(4, -1)
