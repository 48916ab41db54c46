"""Scan order: a seeded pseudo-random permutation of the index space and
an exact partition of it into shards.

The work of a scan is the index space ``[0, targets × ports)``; index
``i`` is address ``i // nports``, port ``ports[i % nports]``.  Nothing
materialises that product: the order comes from a small keyed Feistel
network over the next even power of two, with cycle-walking to stay inside
``[0, n)`` (the construction masscan's BlackRock and format-preserving
encryption use), so it is a bijection whatever ``n`` is, costs O(1) memory
and the same seed gives the same order on every machine.

Shards (``--shards N --shard I``, 0-based as in zmap) take the indices
``I, I+N, I+2N, …``: every index belongs to exactly one shard whatever the
seeds, and each shard visits its own indices in its own random order.
"""
import os

_M64 = (1 << 64) - 1


def _mix(x):
    # splitmix64's finaliser: a good, cheap 64-bit avalanche.
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _M64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _M64
    return x ^ (x >> 31)


class Permutation:
    """A bijection of ``range(n)`` chosen by ``seed``.

    ``p[i]`` (or ``p.index(i)``) is the i-th element of the order;
    ``iter(p)`` yields all n of them.  ``seed=None`` keeps the natural order.
    """

    ROUNDS = 4

    def __init__(self, n, seed=None):
        if n < 0:
            raise ValueError("n must be >= 0")
        self.n = n
        self.seed = seed
        self.identity = seed is None or n <= 1
        if self.identity:
            return
        bits = max(2, (n - 1).bit_length())
        self._half = (bits + 1) // 2
        self._mask = (1 << self._half) - 1
        # A domain smaller than 4n keeps the walk short (< 4 steps on average).
        k = _mix((int(seed) & _M64) ^ 0x5DEECE66D)
        self._keys = []
        for r in range(self.ROUNDS):
            k = _mix(k + 0x9E3779B97F4A7C15 & _M64)
            self._keys.append(k)

    @property
    def feistel(self):
        """``(round keys, half width in bits)``, or None for the natural
        order: what :class:`cypoe._scan.ScanOrder` needs to walk the same
        order in C."""
        return None if self.identity else (tuple(self._keys), self._half)

    def _encrypt(self, x):
        # round function: multiplicative hashing (the top bits of a 64-bit
        # product), cheap in Python and well mixed after four rounds
        half, mask, shift = self._half, self._mask, 64 - self._half
        left, right = x >> half, x & mask
        for key in self._keys:
            left, right = right, left ^ (((right ^ key) * 0x9E3779B97F4A7C15 & _M64) >> shift)
        return (left << half) | right

    def index(self, i):
        if not 0 <= i < self.n:
            raise IndexError("permutation index out of range")
        if self.identity:
            return i
        x = self._encrypt(i)
        while x >= self.n:
            x = self._encrypt(x)
        return x

    __getitem__ = index

    def __len__(self):
        return self.n

    def __iter__(self):
        return self.walk()

    def walk(self, start=0):
        """The order from its ``start``-th element on."""
        if self.identity:
            yield from range(start, self.n)
            return
        enc, n = self._encrypt, self.n
        for i in range(start, n):
            x = enc(i)
            while x >= n:
                x = enc(x)
            yield x


def shard_size(total, shards, shard):
    """How many of ``range(total)`` shard ``shard`` of ``shards`` holds."""
    check_shard(shards, shard)
    if shard >= total:
        return 0
    return (total - shard + shards - 1) // shards


def check_shard(shards, shard):
    if shards < 1:
        raise ValueError("--shards must be >= 1")
    if not 0 <= shard < shards:
        raise ValueError(f"--shard must be in 0..{shards - 1} (0-based), not {shard}")


def shard_order(total, shards=1, shard=0, seed=None, start=0):
    """Yield this shard's indices of ``range(total)``, in the seed's order,
    from the ``start``-th on (a resumed scan)."""
    m = shard_size(total, shards, shard)
    for k in Permutation(m, seed).walk(start):
        yield shard + k * shards


def random_seed():
    return int.from_bytes(os.urandom(6), "big")
