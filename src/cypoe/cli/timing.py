"""Timing templates ``-T0`` … ``-T5``, after nmap's.

Each preset gives the number of connections in flight (``concurrency``),
the rate of new connections per second (``rate``, None: as fast as the
concurrency allows), the connect timeout in seconds and the number of
retries of a probe that timed out (a refusal is an answer and is never
retried).  Explicit ``--concurrency``, ``--rate``, ``--timeout`` and
``--retries`` override the preset.
"""
from collections import namedtuple

Timing = namedtuple("Timing", "name concurrency rate timeout retries")

PRESETS = {
    0: Timing("paranoid", 1, 1 / 300.0, 300.0, 10),
    1: Timing("sneaky", 1, 1 / 15.0, 15.0, 10),
    2: Timing("polite", 10, 2.5, 10.0, 10),
    3: Timing("normal", 1000, None, 2.0, 2),
    4: Timing("aggressive", 5000, None, 1.25, 2),
    5: Timing("insane", 10000, None, 0.3, 1),
}

DEFAULT = 3


def preset(level):
    if level not in PRESETS:
        raise ValueError(f"-T takes 0 to 5, not {level!r}")
    return PRESETS[level]


def resolve(level=None, concurrency=None, rate=None, timeout=None, retries=None):
    """The preset for ``level`` (default -T3) with explicit values on top."""
    base = preset(DEFAULT if level is None else level)
    return Timing(
        base.name,
        base.concurrency if concurrency is None else concurrency,
        base.rate if rate is None else (rate if rate > 0 else None),
        base.timeout if timeout is None else timeout,
        base.retries if retries is None else retries,
    )
