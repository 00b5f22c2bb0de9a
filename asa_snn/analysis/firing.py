"""Spike firing rates of the paper's Definition 1 (section 3.2), as pure functions on count arrays.

With ``fired[t, c, h, w]`` the number of the N tested samples in which neuron (c, h, w) fires at step t:

    N-SFR[t, c, h, w] = fired[t, c, h, w] / N
    C-SFR[t, c]       = mean over (h, w) of N-SFR[t, c]
    T-SFR[t]          = mean of N-SFR[t] over all neurons of all spiking layers (the whole network)
    NASFR (paper)     = mean over t of T-SFR[t]                                  -> :func:`nasfr_paper`
    NASFR (released)  = total spikes / (neurons * T * N) over every spiking layer, output included
                        (the released code's neuron-count-weighted definition)   -> :func:`nasfr_released`

For binary spikes the two NASFRs coincide; they differ for multi-spike neurons (the released form
counts spikes, the paper's counts firing samples).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asa_snn.errors import AsaSnnError
from asa_snn.models.recording import released_nasfr


def _check_samples(n_samples: int) -> None:
    if n_samples < 1:
        raise AsaSnnError(f"firing rates: n_samples must be >= 1, got {n_samples}")


def n_sfr(fired: np.ndarray, n_samples: int) -> np.ndarray:
    """N-SFR [T, C, H, W] in [0, 1]: fraction of the samples in which each neuron fires at step t."""
    _check_samples(n_samples)
    return np.asarray(fired, dtype=np.float64) / n_samples


def c_sfr(nsfr: np.ndarray) -> np.ndarray:
    """C-SFR [T, C]: mean N-SFR over each channel's H x W map."""
    return np.asarray(nsfr, dtype=np.float64).mean(axis=(2, 3))


def t_sfr(nsfrs: Sequence[np.ndarray]) -> np.ndarray:
    """T-SFR [T]: mean N-SFR over all neurons of the given layers (each [T, C, H, W]) at each step."""
    if not nsfrs:
        raise AsaSnnError("t_sfr: no layers given")
    total = sum(np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1).sum(1) for x in nsfrs)
    neurons = sum(int(np.prod(x.shape[1:])) for x in nsfrs)
    return total / neurons


def nasfr_paper(nsfrs: Sequence[np.ndarray]) -> float:
    """NASFR, paper Definition 1: mean over steps of :func:`t_sfr` of the given layers."""
    return float(t_sfr(nsfrs).mean())


def nasfr_released(spike_totals: Sequence[np.ndarray], n_samples: int) -> float:
    """NASFR, released code: total spikes / (neurons * T * samples) over the given layers, i.e.
    :func:`~asa_snn.models.recording.released_nasfr` of the layers' totals.

    Args:
        spike_totals: per layer, spike counts summed over samples, [T, C, H, W] (same T for all).
        n_samples: N.

    Raises:
        AsaSnnError: no layers, n_samples < 1, or layers with different T.
    """
    _check_samples(n_samples)
    if not spike_totals:
        raise AsaSnnError("nasfr_released: no layers given")
    steps = {int(np.shape(x)[0]) for x in spike_totals}
    if len(steps) > 1:
        raise AsaSnnError(
            f"nasfr_released: layers have different step counts T {sorted(steps)}; expected one"
        )
    spikes = {str(i): float(np.sum(x)) for i, x in enumerate(spike_totals)}
    neurons = {str(i): int(np.prod(np.shape(x)[1:])) for i, x in enumerate(spike_totals)}
    return released_nasfr(spikes, neurons, steps.pop(), n_samples)
