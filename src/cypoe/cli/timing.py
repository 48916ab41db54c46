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

# Off loopback the presets without a rate of their own get one (new
# connections per second): a scan of other people's networks should not
# open thousands of connections in a burst by default.  Loopback targets
# only keep the presets as above (as fast as the concurrency allows).
# --rate / --max-rate (or --rate 0: unlimited) overrides.
REMOTE_RATE = {3: 1000.0, 4: 5000.0, 5: 20000.0}


def preset(level):
    if level not in PRESETS:
        raise ValueError(f"-T takes 0 to 5, not {level!r}")
    return PRESETS[level]


def resolve(level=None, concurrency=None, rate=None, timeout=None, retries=None,
            loopback=True, min_rate=None):
    """The preset for ``level`` (default -T3) with explicit values on top;
    off loopback (``loopback=False``) the preset's :data:`REMOTE_RATE`.
    ``min_rate`` (nmap's --min-rate) raises a finite rate to at least that."""
    level = DEFAULT if level is None else level
    base = preset(level)
    if rate is None:
        rate = base.rate if loopback or base.rate is not None else REMOTE_RATE.get(level)
    elif rate <= 0:
        rate = None
    if min_rate is not None and rate is not None and rate < min_rate:
        rate = min_rate
    return Timing(
        base.name,
        base.concurrency if concurrency is None else concurrency,
        rate,
        base.timeout if timeout is None else timeout,
        base.retries if retries is None else retries,
    )
