"""Figures of the redundancy analysis (matplotlib, Agg backend), each saved as PNG and SVG.

- :func:`plot_spike_feature_grid`: spike features of many channels at one step (paper Fig. 2a).
- :func:`plot_channel_over_time`: one channel's spike features across steps (paper Fig. 2b).
- :func:`plot_mpd`: histograms of the membrane potential U (or of the input current X, as the
  released code's figures show; the title says which) with the threshold, the PTD peak centre, the
  variance and the shares outside the histogram range, next to the channels' spike features
  (paper Fig. 6).
- :func:`plot_firing_rates`: per-layer mean firing rate (N-SFR averaged over steps and neurons) bars,
  one bar group per model (vanilla vs ASA side by side when two are given).
- :func:`plot_feature_comparison`: the same channels of two models at one step, one row each.

Every function takes a path stem (no suffix; dots in it are kept), writes ``stem.png`` and
``stem.svg`` and returns both paths. ``warning`` (e.g. non-finite membrane values left out) is
printed in red under the title.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

RATE_LABEL = "N-SFR (fraction of samples firing)"


def _save(fig: plt.Figure, stem: Path, title: str, warning: str) -> list[Path]:
    fig.suptitle(title)
    if warning:
        fig.text(0.5, 0.005, warning, color="red", ha="center", va="bottom")
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"]
    for path in paths:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 8)
    return (n + cols - 1) // cols, cols


def _map_grid(maps: list[np.ndarray], labels: list[str]) -> plt.Figure:
    """One N-SFR map per panel (colour scale 0..1), labelled, with one shared colour bar."""
    rows, cols = _grid(len(maps))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 1, 1.6 * rows + 0.8), squeeze=False)
    image = None
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(maps):
            image = ax.imshow(maps[index], vmin=0, vmax=1, cmap="jet")
            ax.set_title(labels[index], fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label=RATE_LABEL)
    return fig


def plot_spike_feature_grid(
    nsfr: np.ndarray, step: int, stem: Path, title: str, max_channels: int = 32, warning: str = ""
) -> list[Path]:
    """Maps ``nsfr[step, c]`` ([T, C, H, W] input) of the first ``max_channels`` channels in a grid."""
    channels = range(min(nsfr.shape[1], max_channels))
    fig = _map_grid([nsfr[step, c] for c in channels], [f"ch {c}" for c in channels])
    return _save(fig, stem, f"{title}: spike features at step t={step}", warning)


def plot_channel_over_time(
    nsfr: np.ndarray, channel: int, stem: Path, title: str, warning: str = ""
) -> list[Path]:
    """Maps ``nsfr[t, channel]`` for every step t ([T, C, H, W] input)."""
    steps = range(nsfr.shape[0])
    fig = _map_grid([nsfr[t, channel] for t in steps], [f"t={t}" for t in steps])
    return _save(fig, stem, f"{title}: channel {channel} across steps", warning)


def plot_mpd(
    hist: np.ndarray,
    edges: np.ndarray,
    v_th: float,
    ptd: np.ndarray,
    variance: np.ndarray,
    nsfr: np.ndarray,
    channels: list[int],
    step: int,
    stem: Path,
    title: str,
    warning: str = "",
    quantity: str = "membrane potential U before reset",
) -> list[Path]:
    """One row per channel: its spike feature at ``step`` and the histogram of ``quantity``.

    Args:
        hist: [T, C, bins + 2] counts (under/overflow at the ends; their shares are in the legend).
        edges: [bins + 1] bin edges (membrane units).
        v_th: threshold (dashed red line).
        ptd: [T, C] peak-to-threshold distances (the peak centre v_th + PTD is a dotted black line).
        variance: [T, C] variance of the quantity (over every finite value, in range or not).
        nsfr: [T, C, H, W] spike features.
        quantity: what was histogrammed, in words (title and axis label).
    """
    fig, axes = plt.subplots(
        len(channels), 2, figsize=(8, 2.2 * len(channels) + 0.8), squeeze=False, layout="constrained"
    )
    centres = (edges[:-1] + edges[1:]) / 2
    for row, channel in enumerate(channels):
        image = axes[row, 0].imshow(nsfr[step, channel], vmin=0, vmax=1, cmap="jet")
        axes[row, 0].set_title(f"ch {channel} spike feature", fontsize=9)
        axes[row, 0].axis("off")
        fig.colorbar(image, ax=axes[row, 0], label="N-SFR")
        counts = hist[step, channel]
        ax = axes[row, 1]
        ax.bar(centres, counts[1:-1], width=edges[1] - edges[0], color="tab:blue")
        ax.axvline(v_th, color="red", linestyle="--", label=f"threshold {v_th:.3g}")
        if np.isfinite(ptd[step, channel]):
            ax.axvline(
                v_th + ptd[step, channel],
                color="black",
                linestyle=":",
                label=f"peak centre, PTD = {ptd[step, channel]:.3g}",
            )
        ax.plot([], [], " ", label=f"variance {variance[step, channel]:.3g}")
        total = max(int(counts.sum()), 1)
        ax.plot([], [], " ", label=f"below / above range {counts[0] / total:.0%} / {counts[-1] / total:.0%}")
        ax.set_xlabel(f"{quantity} (same scale as v_th)")
        ax.set_ylabel("neurons x samples")
        ax.legend(fontsize=7)
    return _save(fig, stem, f"{title}: distribution of the {quantity} at step t={step}", warning)


def plot_firing_rates(
    rates: dict[str, dict[str, float]], stem: Path, title: str, warning: str = ""
) -> list[Path]:
    """Grouped bars: ``rates[model label][layer name]`` = mean N-SFR of the layer."""
    layers = list(dict.fromkeys(name for model in rates.values() for name in model))
    width = 0.8 / max(len(rates), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(layers) + 2), 4))
    positions = np.arange(len(layers))
    for index, (label, values) in enumerate(rates.items()):
        heights = [values.get(name, np.nan) for name in layers]
        ax.bar(positions + index * width, heights, width, label=label)
    ax.set_xticks(positions + width * (len(rates) - 1) / 2, layers, rotation=30, ha="right")
    ax.set_ylabel("mean N-SFR (fraction of samples firing per neuron-step)")
    ax.set_xlabel("spiking layer")
    ax.legend()
    fig.tight_layout()
    return _save(fig, stem, f"{title}: per-layer firing rates", warning)


def plot_feature_comparison(
    nsfrs: dict[str, np.ndarray], step: int, stem: Path, title: str, max_channels: int = 8, warning: str = ""
) -> list[Path]:
    """One row per model: the first ``max_channels`` spike features ([T, C, H, W] each) at ``step``."""
    channels = min(min(x.shape[1] for x in nsfrs.values()), max_channels)
    fig, axes = plt.subplots(
        len(nsfrs), channels, figsize=(1.6 * channels + 1.5, 1.8 * len(nsfrs) + 0.8), squeeze=False
    )
    image = None
    for row, (label, nsfr) in enumerate(nsfrs.items()):
        for channel in range(channels):
            ax = axes[row, channel]
            image = ax.imshow(nsfr[step, channel], vmin=0, vmax=1, cmap="jet")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ch {channel}", fontsize=8)
            if channel == 0:
                ax.set_ylabel(label)
    fig.colorbar(image, ax=axes, shrink=0.8, label=RATE_LABEL)
    return _save(fig, stem, f"{title}: spike features at step t={step}", warning)
