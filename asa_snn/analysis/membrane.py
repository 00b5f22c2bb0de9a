"""Membrane potential distribution (MPD, paper Definition 5), PTD (Definition 6), variance and QE.

The MPD of channel c at step t is the histogram ``hist[t, c]`` over fixed bin edges (the recorder's
:class:`~asa_snn.analysis.recorder.HistogramSpec`; first and last entries are under- and overflow).

PTD (Definition 6), as computed by :func:`ptd`: take the three tallest in-range bars (ties broken by
the lower bin), the "peak interval" is the span from the left edge of the leftmost of them to the
right edge of the rightmost of them; PTD = centre of that interval - v_th. PTD < 0: the peak of the
distribution lies below the threshold (few spikes); PTD >= 0: most neurons sit above it (noise-like).

QE (section 5.5, Table 4): mean over neurons, samples (and steps) of (v - s * v_th)^2, with v the
membrane potential before reset and s the spike count, i.e. the spike's value on the membrane scale
(s * v_th; equal to s when v_th = 1).
"""

from __future__ import annotations

import numpy as np

from asa_snn.errors import AsaSnnError


def ptd(hist: np.ndarray, edges: np.ndarray, v_th: float, tallest: int = 3) -> np.ndarray:
    """Peak-to-threshold distance per histogram (module docstring), in membrane units.

    Args:
        hist: [..., bins + 2] counts with under/overflow at both ends (or [..., bins] with
            ``edges`` of bins + 1 entries: then no under/overflow).
        edges: [bins + 1] bin edges.
        v_th: threshold.
        tallest: number of bars forming the peak interval (3 in the paper).

    Returns:
        [...] float64; NaN where a histogram has no in-range counts.
    """
    hist = np.asarray(hist)
    bins = len(edges) - 1
    if hist.shape[-1] == bins + 2:
        hist = hist[..., 1:-1]
    elif hist.shape[-1] != bins:
        raise AsaSnnError(
            f"ptd: hist has {hist.shape[-1]} bins, edges describe {bins} (+2 for under/overflow)"
        )
    order = np.argsort(-hist, axis=-1, kind="stable")[..., :tallest]
    left = edges[order.min(-1)]
    right = edges[order.max(-1) + 1]
    distance = (left + right) / 2 - v_th
    return np.where(hist.sum(-1) > 0, distance, np.nan)


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
