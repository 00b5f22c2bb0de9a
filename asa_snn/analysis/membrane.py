"""Membrane potential distribution (MPD, paper Definition 5), PTD (Definition 6), variance and QE.

The MPD of channel c at step t is the histogram ``hist[t, c]`` over fixed bin edges (the recorder's
:class:`~asa_snn.analysis.recorder.HistogramSpec`; the first and last entries count the values below
and above the range). What is histogrammed is the recorder's ``quantity``: the membrane potential U
before reset (default, Definition 5) or the neuron's input current X after attention (what the
released code's figures show).

PTD (Definition 6: "We picked out the highest three pillars in membrane potential distribution and
obtained the peak interval by averaging these pillars' membrane potential intervals. We then define
peak-to-threshold distance as the difference between the center point of the peak interval and the
threshold."), as computed by :func:`ptd`:

    peak interval = mean of the intervals [l_i, r_i] of the three tallest in-range bars
                  = [mean_i l_i, mean_i r_i]
    PTD           = (mean_i l_i + mean_i r_i) / 2 - v_th = mean_i centre_i - v_th

(bars centred at 0.5, 1.5 and 9.5 give a peak centre of 3.83, not the 5.0 of the span from the
leftmost to the rightmost of them). Ties: when several bars share the height of the third-tallest
place, they share the places left equally (:func:`peak_weights`), so the result does not depend on
the direction in which bins are numbered. Empty bars are never peaks: a histogram with fewer than
three non-empty bars averages the non-empty ones. PTD < 0: the peak lies below the threshold (few
spikes); PTD >= 0: most neurons sit at or above it (noise-like features).

Values outside the histogram range are counted, not binned: :func:`range_shares` gives their share
below and above the range, and :func:`peak_outside` flags histograms whose below- or above-range
count exceeds the tallest in-range bar (the real peak then lies outside the range and the PTD of the
in-range bars does not describe it). The variance comes from exact running sums over every finite
value (:func:`variance`) and never depends on the range.

QE (section 5.5, Table 4): mean over neurons, samples (and steps) of (U - s * v_th)^2, with U the
membrane potential before reset and s the spike count. The paper defines QE as "the square of the
difference between the membrane potential and its corresponding quantization spike value" without
saying what value a spike quantizes to; s * v_th (the spike's value on the membrane scale, equal to s
when v_th = 1) is this project's ASSUMPTION. For neurons without a lower bound on the potential
(non-leaky IAF with ``min_v=None``) large negative potentials build up and dominate QE, so only
the QE of the paper's LIF networks is comparable to Table 4.
"""

from __future__ import annotations

import numpy as np

from asa_snn.errors import AsaSnnError

OUT_OF_RANGE_WARNING = 0.10
"""Share of values outside the histogram range above which the report warns."""


def _in_range(hist: np.ndarray, edges: np.ndarray, owner: str) -> np.ndarray:
    """The in-range bars [..., bins] of ``hist`` ([..., bins + 2] with under/overflow, or [..., bins])."""
    hist = np.asarray(hist)
    bins = len(edges) - 1
    if hist.shape[-1] == bins + 2:
        return hist[..., 1:-1]
    if hist.shape[-1] != bins:
        raise AsaSnnError(
            f"{owner}: hist has {hist.shape[-1]} bins, edges describe {bins} (+2 for under/overflow)"
        )
    return hist


def peak_weights(counts: np.ndarray, tallest: int = 3) -> np.ndarray:
    """Weight of every bar in the peak: 1 for each of the ``tallest`` tallest non-empty bars, 0 else.

    Bars tied at the height of the last place share the places still free equally: heights
    [4, 4, 4, 4] with 3 places give each bar 3/4. The weights of a histogram sum to
    min(``tallest``, number of non-empty bars) (0 for an empty histogram).

    Args:
        counts: [..., bins] bar heights (no under/overflow).
        tallest: number of places (3 in the paper).

    Returns:
        float64 [..., bins].
    """
    if tallest < 1:
        raise AsaSnnError(f"peak_weights: tallest must be >= 1, got {tallest}")
    counts = np.asarray(counts, dtype=np.float64)
    places = np.minimum(tallest, (counts > 0).sum(-1))
    ordered = -np.sort(-counts, axis=-1)
    cut = np.take_along_axis(ordered, np.maximum(places - 1, 0)[..., None], axis=-1)
    above = (counts > cut) & (counts > 0)
    tied = (counts == cut) & (counts > 0)
    free = places - above.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(tied.sum(-1) > 0, free / tied.sum(-1), 0.0)
    return above + tied * share[..., None]


def ptd(hist: np.ndarray, edges: np.ndarray, v_th: float, tallest: int = 3) -> np.ndarray:
    """Peak-to-threshold distance per histogram (module docstring), in the histogram's units.

    Args:
        hist: [..., bins + 2] counts with under/overflow at both ends (or [..., bins] with
            ``edges`` of bins + 1 entries: then no under/overflow).
        edges: [bins + 1] bin edges.
        v_th: threshold.
        tallest: number of bars forming the peak interval (3 in the paper).

    Returns:
        [...] float64; NaN where a histogram has no in-range counts.
    """
    counts = _in_range(hist, edges, "ptd")
    edges = np.asarray(edges, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    weights = peak_weights(counts, tallest)
    total = weights.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (weights * centres).sum(-1) / total
    return np.where(total > 0, centre - v_th, np.nan)


def range_shares(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(below, above): shares of the values counted in ``hist`` [..., bins + 2] outside the range.

    Returns two float64 arrays [...]; NaN where a histogram is empty.
    """
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.where(total > 0, hist[..., 0] / total, np.nan)
        above = np.where(total > 0, hist[..., -1] / total, np.nan)
    return below, above


def peak_outside(hist: np.ndarray) -> np.ndarray:
    """bool [...]: the below- or above-range count of ``hist`` [..., bins + 2] exceeds every in-range bar."""
    hist = np.asarray(hist)
    tallest = hist[..., 1:-1].max(-1)
    return (hist[..., 0] > tallest) | (hist[..., -1] > tallest)


def variance(total: np.ndarray, total_sq: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Population variance from running sums: E[v^2] - E[v]^2 (NaN where count is 0), clipped at 0."""
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(total) / count
        var = np.asarray(total_sq) / count - mean**2
    return np.where(count > 0, np.maximum(var, 0.0), np.nan)


def quantization_error(membrane: np.ndarray, spikes: np.ndarray, v_th: float) -> float:
    """QE = mean((v - s * v_th)^2) over all finite entries of ``membrane`` (any shape, same as ``spikes``)."""
    v = np.asarray(membrane, dtype=np.float64)
    s = np.asarray(spikes, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return float("nan")
    return float(np.mean((v[finite] - s[finite] * v_th) ** 2))


def mean_from_sums(total: np.ndarray, count: np.ndarray) -> float:
    """sum(total) / sum(count) over all entries (NaN when the count is 0), e.g. QE from ``qe_sum``."""
    n = float(np.sum(count))
    return float(np.sum(total) / n) if n > 0 else float("nan")
