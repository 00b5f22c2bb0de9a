"""Attention modules for the slot after batch norm and before the spiking neuron.

Every module maps the input current X [T, B, C, H, W] (T time steps first) to a tensor of the same
shape, computes everything per sample, and reports ``extra_macs(T, C, H, W)``, the
multiply-accumulates it adds per sample (counting rule in
:meth:`AdvancedSpatialAttention.extra_macs`). Build one with :func:`make_attention`.

Parameters added on the paper's 3-layer net (T = 60, C = 64, 128, 128; FACTS.md section 1):
"sa" +294, "tcsa" +24,126, "asa1" +10,914 (reduction 2), "asa2" +114.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import Tensor, nn

from asa_snn.errors import AsaSnnError
from asa_snn.models.attention.asa import (
    AdvancedSpatialAttention,
    BatchUnionSelector,
    PooledImportance,
    StraightThroughSelector,
    TemporalFcImportance,
    asa1,
    asa2,
    asa_reference,
    batch_union_masks,
    separation_masks,
)
from asa_snn.models.attention.spatial import SpatialMap, check_input
from asa_snn.models.attention.tcsa import SpatialAttention, TemporalChannelSpatialAttention

__all__ = [
    "ATTENTION_KINDS",
    "AdvancedSpatialAttention",
    "BatchUnionSelector",
    "NoAttention",
    "PooledImportance",
    "SpatialAttention",
    "SpatialMap",
    "StraightThroughSelector",
    "TemporalChannelSpatialAttention",
    "TemporalFcImportance",
    "batch_union_masks",
    "make_attention",
    "separation_masks",
]


class NoAttention(nn.Module):
    """Identity: Y = X, for X [T, B, C, H, W]. No parameters, no MACs."""

    def forward(self, x: Tensor) -> Tensor:
        """Return X unchanged (after checking it is rank 5)."""
        check_input(x, "NoAttention(none)")
        return x

    def extra_macs(self, T: int, C: int, H: int, W: int) -> int:
        """Zero."""
        return 0


def _none(channels: int, timesteps: int) -> nn.Module:
    return NoAttention()


def _sa(channels: int, timesteps: int, kernel_size: int = 7) -> nn.Module:
    return SpatialAttention(kernel_size)


def _tcsa(channels: int, timesteps: int, t_reduction: int = 4, c_reduction: int = 4) -> nn.Module:
    return TemporalChannelSpatialAttention(channels, timesteps, t_reduction, c_reduction)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "none": _none,
    "sa": _sa,
    "tcsa": _tcsa,
    "asa1": asa1,
    "asa2": asa2,
    "asa_reference": asa_reference,
}

ATTENTION_KINDS: tuple[str, ...] = tuple(_BUILDERS)
"""The kinds :func:`make_attention` accepts."""


def make_attention(kind: str, channels: int, timesteps: int, **options: object) -> nn.Module:
    """Build the attention module of one layer.

    Args:
        kind: one of :data:`ATTENTION_KINDS`: "none" (identity), "sa", "tcsa" (MA-SNN),
            "asa1", "asa2" (per-sample, trainable selector), "asa_reference" (the released code).
        channels: C of the layer.
        timesteps: T, number of time steps.
        **options: kind-specific keywords: "sa" kernel_size; "tcsa" t_reduction, c_reduction;
            "asa1" reduction, lam, temperature; "asa2" lam, temperature; "asa_reference"
            reduction, lam, learned; the three ASA kinds also backend ("auto", "stepwise",
            "reference" or "compiled": :class:`AdvancedSpatialAttention`).

    Raises:
        AsaSnnError: unknown kind or option, or an invalid value.
    """
    if kind not in _BUILDERS:
        raise AsaSnnError(f"attention kind {kind!r} is unknown, expected one of {', '.join(ATTENTION_KINDS)}")
    builder = _BUILDERS[kind]
    accepted = list(inspect.signature(builder).parameters)[2:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise AsaSnnError(
            f"attention kind {kind!r}: unknown option(s) {', '.join(unknown)}, "
            f"expected any of {', '.join(accepted) or '(none)'}"
        )
    return builder(channels, timesteps, **options)
