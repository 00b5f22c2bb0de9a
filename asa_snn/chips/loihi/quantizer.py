"""Loihi's integer rule.

Loihi (FACTS.md section 4, :mod:`asa_snn.chips.loihi.netx_export`): weights, bias and vThMant in one
integer unit per layer, ``s = min(127 / max|W|, (2^17 - 1) / theta, 4095 / max|b|)`` (8-bit signed
weights, 17-bit unsigned vThMant, 13-bit signed bias mantissa); du, dv stay fractions rounded
to 1/4096 (netx writes iDecay = 4096 du, vDecay = 4096 dv). No min_v (netx has none).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from asa_snn.convert.graph import Layer, NeuronSpec
from asa_snn.convert.quantize import check_range, max_abs

DECAY_UNITY = 4096
"""netx's unit of iDecay / vDecay: a decay fraction d is written as 4096 d."""


@dataclass(frozen=True)
class LoihiQuantizer:
    """Loihi's rule (module docstring): 8-bit weights, 17-bit vThMant, 13-bit bias, decays in 1/4096."""

    name: str = "loihi"
    weight_bits: int = 8
    threshold_bits: int = 17
    bias_bits: int = 13
    state_bits: int = 24

    def scale(self, layer: Layer, weight: np.ndarray, bias: np.ndarray | None) -> float:
        """s = min(127 / max|W|, (2^17 - 1) / theta, 4095 / max|b|)."""
        terms = [(2 ** (self.weight_bits - 1) - 1) / max(max_abs(weight), 1e-30)]
        terms.append((2**self.threshold_bits - 1) / layer.neuron.threshold)
        if max_abs(bias) > 0:
            terms.append((2 ** (self.bias_bits - 1) - 1) / max_abs(bias))
        return min(terms)

    def integer_neuron(self, layer: Layer, scale: float) -> NeuronSpec:
        """vThMant as an integer; du, dv rounded to 1/4096."""
        neuron = layer.neuron
        threshold = max(round(neuron.threshold * scale), 1)
        check_range(layer.name, "threshold (vThMant)", threshold, 1, 2**self.threshold_bits - 1)
        du, dv = (round(x * DECAY_UNITY) / DECAY_UNITY for x in (neuron.du, neuron.dv))
        return replace(neuron, threshold=float(threshold), du=du, dv=dv)

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Integer range per tensor."""
        w, b = 2 ** (self.weight_bits - 1), 2 ** (self.bias_bits - 1)
        return {"weight": (-w, w - 1), "bias": (-b, b - 1)}
