"""Spike features (paper Definition 2), ghost features (Definition 3), spike patterns (Definition 4) and
temporal redundancy (Observation 2), as pure functions on N-SFR maps.

A spike feature is the N-SFR map ``nsfr[t, c]`` [H, W] of channel c at step t.

Ghost features: two maps of the same layer at the same step are a ghost pair when both are non-silent
(map sum > ``silent``) and their cosine similarity ``<a, b> / (|a| |b|)`` is >= ``threshold``
(default 0.95). Ghost groups are the connected components (size >= 2) of the graph whose edges are
the ghost pairs. Per layer we report the pair and group counts at every step and their mean over steps.

Temporal redundancy: for each channel the mean cosine similarity between its maps at consecutive
steps t and t + 1 (pairs where either map is silent are skipped); per layer the mean over channels.

Spike patterns per channel ("null", "noise", "normal"):

- :class:`MaskPatternRule` (ground-truth object masks available): "null" when the channel's mean C-SFR
  is below ``null_rate`` (default 1e-3), else "noise" when the fraction of its spikes on background
  positions is >= ``noise_fraction`` (default 0.5, most spikes on the background), else "normal".
- :class:`AreaPatternRule` (no masks, heuristic): "null" as above, else "noise" when the channel fires
  over a large share of its map (the fraction of positions whose time-averaged N-SFR is >= 0.5 is
  >= ``noise_area``, default 0.5) with a high rate (mean C-SFR >= ``noise_rate``, default 0.25),
  else "normal".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from asa_snn.errors import AsaSnnError

SILENT = 1e-9
"""A map whose N-SFR sum is at most this is silent and takes no part in similarities."""


def _check_maps(nsfr: np.ndarray, owner: str) -> np.ndarray:
    nsfr = np.asarray(nsfr, dtype=np.float64)
    if nsfr.ndim != 4:
        raise AsaSnnError(f"{owner}: N-SFR maps must be [T, C, H, W], got shape {nsfr.shape}")
    return nsfr


def cosine_matrix(maps: np.ndarray, silent: float = SILENT) -> np.ndarray:
    """[C, C] cosine similarities of maps [C, H, W] (or [C, P]); NaN in rows / columns of silent maps."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    norms = np.linalg.norm(flat, axis=1)
    active = flat.sum(1) > silent
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = flat @ flat.T / np.outer(norms, norms)
    similarity[~active] = np.nan
    similarity[:, ~active] = np.nan
    return similarity


def ghost_pairs(maps: np.ndarray, threshold: float = 0.95, silent: float = SILENT) -> list[tuple[int, int]]:
    """Index pairs (i < j) of non-silent maps [C, H, W] whose cosine similarity is >= ``threshold``."""
    similarity = cosine_matrix(maps, silent)
    rows, cols = np.nonzero(np.triu(np.nan_to_num(similarity, nan=-1.0) >= threshold, k=1))
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True)]


def ghost_groups(pairs: list[tuple[int, int]], n_maps: int) -> list[list[int]]:
    """Connected components of size >= 2 of the graph on ``n_maps`` nodes with ``pairs`` as edges."""
    parent = list(range(n_maps))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n_maps):
        groups.setdefault(root(i), []).append(i)
    return sorted(group for group in groups.values() if len(group) > 1)


@dataclass(frozen=True)
class GhostSummary:
    """Ghost features of one layer: counts per step [T] and their means over steps."""

    pairs_per_step: list[int]
    groups_per_step: list[int]
    mean_pairs: float
    mean_groups: float


def ghost_summary(nsfr: np.ndarray, threshold: float = 0.95) -> GhostSummary:
    """Ghost pairs and groups of N-SFR maps [T, C, H, W] at every step (module docstring)."""
    nsfr = _check_maps(nsfr, "ghost_summary")
    pairs = [ghost_pairs(step, threshold) for step in nsfr]
    groups = [len(ghost_groups(p, nsfr.shape[1])) for p in pairs]
    counts = [len(p) for p in pairs]
    return GhostSummary(counts, groups, float(np.mean(counts)), float(np.mean(groups)))


def temporal_similarity(nsfr: np.ndarray, silent: float = SILENT) -> np.ndarray:
    """[C]: mean cosine similarity of each channel's maps at steps t and t + 1 (NaN when undefined)."""
    nsfr = _check_maps(nsfr, "temporal_similarity")
    steps, channels = nsfr.shape[:2]
    flat = nsfr.reshape(steps, channels, -1)
    a, b = flat[:-1], flat[1:]
    valid = (a.sum(-1) > silent) & (b.sum(-1) > silent)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    cosine = np.where(valid, cosine, 0.0)
    pairs = valid.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, cosine.sum(0) / pairs, np.nan)


def background_fraction(background_spikes: np.ndarray, spikes: np.ndarray) -> np.ndarray:
    """[C]: share of each channel's spikes (summed over steps) on background positions; NaN if none.

    Args:
        background_spikes: [T, C] spikes on background positions.
        spikes: [T, C] all spikes of the channel.
    """
    background = np.asarray(background_spikes, dtype=np.float64).sum(0)
    total = np.asarray(spikes, dtype=np.float64).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, background / total, np.nan)


class PatternRule(Protocol):
    """Labels every channel "null", "noise" or "normal" from its N-SFR maps and background fraction."""

    def __call__(self, nsfr: np.ndarray, background: np.ndarray | None) -> list[str]: ...


@dataclass(frozen=True)
class MaskPatternRule:
    """Labels from ground-truth masks (module docstring); needs the background fraction per channel."""

    null_rate: float = 1e-3
    noise_fraction: float = 0.5

    def __call__(self, nsfr: np.ndarray, background: np.ndarray | None) -> list[str]:
        if background is None:
            raise AsaSnnError(
                "MaskPatternRule needs the background fraction per channel (measure with masks)"
            )
        rate = _check_maps(nsfr, "MaskPatternRule").mean(axis=(0, 2, 3))
        return [
            "null" if r < self.null_rate else "noise" if b >= self.noise_fraction else "normal"
            for r, b in zip(rate, np.nan_to_num(background, nan=0.0), strict=True)
        ]


@dataclass(frozen=True)
class AreaPatternRule:
    """Heuristic labels without masks (module docstring)."""

    null_rate: float = 1e-3
    noise_area: float = 0.5
    noise_rate: float = 0.25

    def __call__(self, nsfr: np.ndarray, background: np.ndarray | None) -> list[str]:
        nsfr = _check_maps(nsfr, "AreaPatternRule")
        rate = nsfr.mean(axis=(0, 2, 3))
        area = (nsfr.mean(0) >= 0.5).mean(axis=(1, 2))
        return [
            "null"
            if r < self.null_rate
            else "noise"
            if a >= self.noise_area and r >= self.noise_rate
            else "normal"
            for r, a in zip(rate, area, strict=True)
        ]


def pattern_counts(labels: list[str]) -> dict[str, int]:
    """{"null": n, "noise": n, "normal": n}."""
    return {kind: labels.count(kind) for kind in ("null", "noise", "normal")}
