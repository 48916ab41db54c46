"""HdrHistogram's percentile distribution text (``.hgrm``).

:func:`write_hgrm` prints a histogram as HdrHistogram's Java
``AbstractHistogram.outputPercentileDistribution(stream, 5, unitRatio)``
does, character for character (checked against org.HdrHistogram 2.1.11): the header, one row per percentile tick (5 ticks per half distance
to 100%: 0%, 10%, … 50%, 55%, … 75%, 77.5%, …), the last row at 100%
without its infinite ``1/(1-Percentile)``, and the ``#[Mean …]``,
``#[Max …]`` and ``#[Buckets …]`` footer.  It is the file HdrHistogram's
plotter (``HistogramLogAnalyzer``, the online ``hdrhistogram.github.io``
plotter) reads.  :func:`format_latency_distribution` is what ``wrk2
--latency`` prints: the 50 … 100% lines, then the same distribution in
HdrHistogram_c's ``hdr_percentiles_print`` layout (its columns are 12
wide, and its last row has ``inf``).  :func:`parse_hgrm` reads both.

The ``hdrhistogram`` package has its own ``output_percentile_distribution``,
but its tick steps differ from Java's and C's (it does not round the half
distance down to a power of two) and its footer is not theirs, so the
iteration is done here over the package's counts, exactly as Java's
``PercentileIterator`` does.  Mean and standard deviation are the
package's (the same median-equivalent-value sums as Java's).
"""
import decimal
import math
import re

TICKS_PER_HALF_DISTANCE = 5


def percentile_rows(hist, ticks_per_half_distance=TICKS_PER_HALF_DISTANCE):
    """(value, percentile level in %, total count to this value) for each
    step of HdrHistogram's PercentileIterator, the last at 100%."""
    total = hist.get_total_count()
    if not total:
        return []
    counts = hist.counts
    counts_len = hist.counts_len
    rows = []
    index = 0
    count_to_index = 0
    fresh = True
    level = 0.0                # percentileLevelToIterateTo
    reached_last = False
    while True:
        # hasNext(): values left, or one additional last step to 100%
        if count_to_index >= total:
            if reached_last:
                break
            level = 100.0
            reached_last = True
        # next(): move through the sub-buckets until the reporting level
        while index < counts_len:
            count = counts[index]
            if fresh:
                count_to_index += count
                fresh = False
            if count != 0 and (100.0 * count_to_index) / total >= level:
                value = hist.get_highest_equivalent_value(hist.get_value_from_index(index))
                rows.append((value, level, count_to_index))
                # fixed-size ticks within each half distance to 100%: the
                # half distance rounded down to a power of two (Java's
                # (long) casts)
                ticks = ticks_per_half_distance * int(
                    2 ** (int(math.log(100.0 / (100.0 - level)) / math.log(2)) + 1)) \
                    if level < 100.0 else 0
                if ticks:
                    level += 100.0 / ticks
                break
            index += 1
            fresh = True
        else:
            break   # exhausted (cannot happen with consistent counts)
    return rows


def _footer_values(hist, unit_ratio):
    mean = hist.get_mean_value() / unit_ratio
    stdev = hist.get_stddev() / unit_ratio
    return mean, stdev, hist.get_max_value() / unit_ratio, hist.get_total_count()


def _jf(x, decimals, width=0):
    """Java's ``String.format("%W.Df", x)``: the shortest decimal digits of
    the double (Double.toString) rounded half up, where C and Python round
    the exact binary value half to even (0.9997802734375 -> ...438 in
    Java, ...437 in C)."""
    if x != x or x in (math.inf, -math.inf):
        text = "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")
    else:
        q = decimal.Decimal(repr(float(x))).quantize(
            decimal.Decimal(1).scaleb(-decimals), rounding=decimal.ROUND_HALF_UP)
        text = f"{q:.{decimals}f}"
    return text.rjust(width)


def write_hgrm(hist, stream, unit_ratio=1000.0, ticks_per_half_distance=TICKS_PER_HALF_DISTANCE):
    """Write `hist`'s percentile distribution to the text `stream` in
    HdrHistogram's ``.hgrm`` format (Java's outputPercentileDistribution,
    character for character); values divided by `unit_ratio` (µs
    recorded, 1000: milliseconds)."""
    digits = hist.significant_figures
    stream.write("%12s %14s %10s %14s\n\n" % ("Value", "Percentile", "TotalCount", "1/(1-Percentile)"))
    for value, level, count in percentile_rows(hist, ticks_per_half_distance):
        head = f"{_jf(value / unit_ratio, digits, 12)} {_jf(level / 100.0, 12, 2)} {count:10d}"
        if level != 100.0:
            stream.write(f"{head} {_jf(1.0 / (1.0 - level / 100.0), 2, 14)}\n")
        else:
            stream.write(head + "\n")
    mean, stdev, vmax, total = _footer_values(hist, unit_ratio)
    stream.write(f"#[Mean    = {_jf(mean, digits, 12)}, StdDeviation   = {_jf(stdev, digits, 12)}]\n")
    stream.write(f"#[Max     = {_jf(vmax, digits, 12)}, Total count    = {total:12d}]\n")
    stream.write("#[Buckets = %12d, SubBuckets     = %12d]\n" % (hist.bucket_count,
                                                                 hist.sub_bucket_count))


def _hdr_percentiles_print(hist, unit_ratio=1000.0,
                           ticks_per_half_distance=TICKS_PER_HALF_DISTANCE):
    """HdrHistogram_c's hdr_percentiles_print(..., CLASSIC): what wrk2 prints."""
    out = ["%12s %12s %12s %12s\n\n" % ("Value", "Percentile", "TotalCount", "1/(1-Percentile)")]
    fmt = "%12." + str(hist.significant_figures) + "f %12f %12d %12.2f\n"
    for value, level, count in percentile_rows(hist, ticks_per_half_distance):
        p = level / 100.0
        inv = 1.0 / (1.0 - p) if p < 1.0 else math.inf
        out.append(fmt % (value / unit_ratio, p, count, inv))
    mean, stdev, vmax, total = _footer_values(hist, unit_ratio)
    out.append("#[Mean    = %12.3f, StdDeviation   = %12.3f]\n" % (mean, stdev))
    out.append("#[Max     = %12.3f, Total count    = %12d]\n" % (vmax, total))
    out.append("#[Buckets = %12d, SubBuckets     = %12d]\n" % (hist.bucket_count,
                                                               hist.sub_bucket_count))
    return "".join(out)


def format_time_us(us):
    """wrk's format_time_us: ``950.00us``, ``1.37ms``, ``6.54s``."""
    x = float(us)
    for unit in ("us", "ms"):
        if x < 1000.0:
            return f"{x:.2f}{unit}"
        x /= 1000.0
    if x < 60.0:
        return f"{x:.2f}s"
    if x < 3600.0:
        return f"{x / 60.0:.2f}m"
    return f"{x / 3600.0:.2f}h"


def _print_units(text, width):
    """wrk's print_units: right-aligned, units padded to two characters."""
    pad = 2 - sum(1 for c in text[-2:] if c.isalpha())
    return f"{text:>{width - pad}.{width - pad}}" + " " * pad


def format_latency_distribution(hist, title="Recorded Latency", unit_ratio=1000.0):
    """The ``--latency`` block, as wrk2 prints it: the 50 … 100% lines,
    then the detailed percentile spectrum (values in ms)."""
    lines = [f"  Latency Distribution (HdrHistogram - {title})"]
    for p in (50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0):
        v = hist.get_value_at_percentile(p) if hist.get_total_count() else 0
        lines.append(f"{p:7.3f}%" + _print_units(format_time_us(v), 10))
    text = "\n".join(lines) + "\n\n  Detailed Percentile spectrum:\n"
    if hist.get_total_count():
        text += _hdr_percentiles_print(hist, unit_ratio)
    else:
        text += "       (no values recorded)\n"
    return text


_FOOTER = re.compile(r"#\[\s*(\w[\w ]*?)\s*=\s*([-+\w.]+)\s*,\s*(\w[\w ]*?)\s*=\s*([-+\w.]+)\s*\]")
_FOOTER_KEYS = {"mean": "mean", "stddeviation": "stdev", "max": "max", "total count": "total_count",
                "totalcount": "total_count", "buckets": "buckets", "subbuckets": "sub_buckets"}


def parse_hgrm(text):
    """Read an ``.hgrm`` text (Java's or C's layout, or the detailed
    spectrum of wrk2's ``--latency`` output): returns ``{"rows": [(value,
    percentile, total_count), ...], "footer": {"mean", "stdev", "max",
    "total_count", "buckets", "sub_buckets"}}``; percentiles as fractions
    (1.0 on the last row)."""
    rows = []
    footer = {}
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#["):
            for m in _FOOTER.finditer(s):
                for k, v in ((m.group(1), m.group(2)), (m.group(3), m.group(4))):
                    key = _FOOTER_KEYS.get(k.lower())
                    if key is None:
                        continue
                    num = float(v)
                    footer[key] = int(num) if key in ("total_count", "buckets", "sub_buckets") \
                        else num
            continue
        parts = s.split()
        if len(parts) < 3:
            continue
        try:
            value, pct, count = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            continue   # the header, "Latency Distribution" lines, wrk's own lines
        if not 0.0 <= pct <= 1.0:
            continue
        rows.append((value, pct, count))
    return {"rows": rows, "footer": footer}
