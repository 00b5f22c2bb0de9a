"""Speck's integer rule.

Speck (FACTS.md section 3; int8 weights, int16 state, one threshold and min_v per layer)::

    s = min(127 / max|W|, 32767 / max(theta, |min_v|, max|b|))

The first term makes the largest weight 127 (the whole 8-bit range). The two sinabs pitfalls are
avoided: (1) an unset min_v is written as the int16 floor -32768 instead of being scaled, so it
never caps s at 1 and small weights never round to zero for that reason; (2) when the threshold
term wins (theta > ~258 max|W|) the weights would be starved of bits: this raises an error naming
the layer when fewer than ``min_weight_bits`` bits remain. sinabs' own rule (``discretize.py``)
takes the same minimum but over 8-bit weight / bias scales and a 16-bit scale of (min_v, theta)
with min_v = -2^15 when unset, which is where pitfall (1) comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from asa_snn.convert.graph import Layer, NeuronSpec
from asa_snn.convert.quantize import check_range, max_abs
from asa_snn.errors import AsaSnnError


@dataclass(frozen=True)
class SpeckQuantizer:
    """Speck's rule (module docstring): int8 weights, int16 threshold / min_v / bias per layer."""

    name: str = "speck"
    weight_bits: int = 8
    state_bits: int = 16
    min_weight_bits: int = 4

    def scale(self, layer: Layer, weight: np.ndarray, bias: np.ndarray | None) -> float:
        """s = min(127 / max|W|, 32767 / max(theta, |min_v|, max|b|)); error when weights get < min bits."""
        neuron = layer.neuron
        w_max = 2 ** (self.weight_bits - 1) - 1
        s_max = 2 ** (self.state_bits - 1) - 1
        state = max(neuron.threshold, abs(neuron.min_v or 0.0), max_abs(bias))
        weight_scale = w_max / max(max_abs(weight), 1e-30)
        scale = min(weight_scale, s_max / state)
        used = max_abs(weight) * scale
        if used < 2 ** (self.min_weight_bits - 1) - 0.5:
            raise AsaSnnError(
                f"layer {layer.name!r}: threshold {neuron.threshold:g} is "
                f"{neuron.threshold / max_abs(weight):.0f}x "
                f"the largest weight {max_abs(weight):g}; at int16 state the weights keep only "
                f"{max(int(np.round(used)), 0)} levels (< {self.min_weight_bits} bits): weight starvation "
                "(FACTS.md section 3); retrain with a smaller threshold or larger weights"
            )
        return scale

    def integer_neuron(self, layer: Layer, scale: float) -> NeuronSpec:
        """Threshold and min_v as int16 integers (unset min_v -> the int16 floor)."""
        neuron = layer.neuron
        low, high = -(2 ** (self.state_bits - 1)), 2 ** (self.state_bits - 1) - 1
        threshold = max(round(neuron.threshold * scale), 1)
        min_v = low if neuron.min_v is None else round(neuron.min_v * scale)
        check_range(layer.name, "threshold", threshold, 1, high)
        check_range(layer.name, "min_v", min_v, low, high)
        return replace(neuron, threshold=float(threshold), min_v=float(min_v))

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Integer range per tensor."""
        w = 2 ** (self.weight_bits - 1)
        s = 2 ** (self.state_bits - 1)
        return {"weight": (-w, w - 1), "bias": (-s, s - 1)}
