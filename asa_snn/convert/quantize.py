"""Quantization of a float folded graph to a target's integers, and the matching fake quantization.

Every weight layer with a neuron gets one scale s (``integer = round(float * s)``, stored in
:class:`~asa_snn.convert.graph.LayerQuant`); weights, bias, threshold and min_v share it, so the
integer layer computes exactly s times the float layer's current (before rounding).

Speck (FACTS.md section 3; int8 weights, int16 state, one threshold and min_v per layer)::

    s = min(127 / max|W|, 32767 / max(theta, |min_v|, max|b|))

The first term makes the largest weight 127 (the whole 8-bit range). The two sinabs pitfalls are
avoided: (1) an unset min_v is written as the int16 floor -32768 instead of being scaled, so it
never caps s at 1 and small weights never round to zero for that reason; (2) when the threshold
term wins (theta > ~258 max|W|) the weights would be starved of bits: this raises an error naming
the layer when fewer than ``min_weight_bits`` bits remain. sinabs' own rule (``discretize.py``)
takes the same minimum but over 8-bit weight / bias scales and a 16-bit scale of (min_v, theta)
with min_v = -2^15 when unset, which is where pitfall (1) comes from.

Loihi (FACTS.md section 4, :mod:`asa_snn.chips.loihi.netx_export`): weights, bias and vThMant in one
integer unit per layer, ``s = min(127 / max|W|, (2^17 - 1) / theta, 4095 / max|b|)`` (8-bit signed
weights, 17-bit unsigned vThMant, 13-bit signed bias mantissa); du, dv stay fractions rounded
to 1/4096 (netx writes iDecay = 4096 du, vDecay = 4096 dv). No min_v (netx has none).

Generic: the float graph is kept (no integer target); its quantizer is the identity.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from asa_snn.convert.graph import FoldedGraph, Layer, LayerQuant, NeuronSpec
from asa_snn.errors import AsaSnnError

DECAY_UNITY = 4096


def _max_abs(values: np.ndarray | None) -> float:
    return 0.0 if values is None or values.size == 0 else float(np.max(np.abs(values)))


def check_range(layer: str, tensor: str, values: np.ndarray | float, low: int, high: int) -> None:
    """Raise :class:`AsaSnnError` naming layer, tensor and offending value unless all lie in [low, high]."""
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    bad = array[(array < low) | (array > high)]
    if bad.size:
        raise AsaSnnError(
            f"layer {layer!r}: quantized {tensor} value {bad.flat[0]:g} is outside [{low}, {high}]; "
            "the model cannot be represented on this target (reduce the weight / threshold ratio)"
        )


def straight_through_round(x: Tensor) -> Tensor:
    """round(x) forward, identity gradient backward."""
    return x + (torch.round(x) - x).detach()


class Quantizer(Protocol):
    """A target's integer rule: a scale per layer, the integer layer, and fake quantization."""

    name: str
    weight_bits: int
    state_bits: int

    def scale(self, layer: Layer, weight: np.ndarray, bias: np.ndarray | None) -> float: ...

    def integer_neuron(self, layer: Layer, scale: float) -> NeuronSpec: ...

    def ranges(self) -> dict[str, tuple[int, int]]: ...


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
        state = max(neuron.threshold, abs(neuron.min_v or 0.0), _max_abs(bias))
        weight_scale = w_max / max(_max_abs(weight), 1e-30)
        scale = min(weight_scale, s_max / state)
        used = _max_abs(weight) * scale
        if used < 2 ** (self.min_weight_bits - 1) - 0.5:
            raise AsaSnnError(
                f"layer {layer.name!r}: threshold {neuron.threshold:g} is "
                f"{neuron.threshold / _max_abs(weight):.0f}x "
                f"the largest weight {_max_abs(weight):g}; at int16 state the weights keep only "
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
        terms = [(2 ** (self.weight_bits - 1) - 1) / max(_max_abs(weight), 1e-30)]
        terms.append((2**self.threshold_bits - 1) / layer.neuron.threshold)
        if _max_abs(bias) > 0:
            terms.append((2 ** (self.bias_bits - 1) - 1) / _max_abs(bias))
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


QUANTIZERS: dict[str, Quantizer | None] = {
    "speck": SpeckQuantizer(),
    "loihi": LoihiQuantizer(),
    "generic": None,
}


def quantize_graph(graph: FoldedGraph, quantizer: Quantizer) -> FoldedGraph:
    """The integer graph of a float ``graph`` for ``quantizer``'s target.

    Every weight layer with a neuron gets a scale (module docstring); weight and bias become int32
    arrays checked against the target's bit widths; threshold / min_v integers in the same unit.

    Raises:
        AsaSnnError: a layer the target cannot hold (a weight layer without neuron, a gain map),
            a value out of range (layer, tensor and value named), weight starvation.
    """
    if graph.quantized:
        raise AsaSnnError("quantize: the graph is already quantized")
    out = copy.deepcopy(graph)
    ranges = quantizer.ranges()
    for layer in out.layers:
        if "gain_map" in layer.tensors:
            raise AsaSnnError(
                f"layer {layer.name!r}: per-neuron gain_map cannot be quantized for {quantizer.name} "
                "(one threshold per layer); fold for this target so the map is averaged away"
            )
        if "weight" not in layer.tensors:
            continue
        if layer.neuron is None:
            raise AsaSnnError(
                f"layer {layer.name!r}: {layer.op} without a neuron (an average pool before the neuron); "
                f"{quantizer.name} ends every weight layer in neurons; use a network without it (speck_net)"
            )
        weight, bias = layer.tensors["weight"], layer.tensors.get("bias")
        scale = quantizer.scale(layer, weight, bias)
        for key, values in (("weight", weight), ("bias", bias)):
            if values is None:
                continue
            integers = np.rint(np.asarray(values, dtype=np.float64) * scale)
            check_range(layer.name, key, integers, *ranges[key])
            layer.tensors[key] = integers.astype(np.int32)
        layer.neuron = quantizer.integer_neuron(layer, scale)
        layer.quant = LayerQuant(
            scale=float(scale), weight_bits=quantizer.weight_bits, state_bits=quantizer.state_bits
        )
    out.quantized = True
    out.target = quantizer.name
    return out


@dataclass(frozen=True)
class FakeQuantizer:
    """Fake quantization for :class:`~asa_snn.convert.graph_model.GraphModel`: per step, the layer's
    scale is recomputed from the current weights, then w <- round(w s) / s with a straight-through
    gradient (bias the same). The threshold is not rounded (its relative error is below 1 / (2 theta s))."""

    quantizer: Quantizer

    def __call__(self, layer: Layer, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        w = weight.detach().double().numpy()
        b = None if bias is None else bias.detach().double().numpy()
        scale = self.quantizer.scale(layer, w, b)
        fake_w = straight_through_round(weight * scale) / scale
        fake_b = None if bias is None else straight_through_round(bias * scale) / scale
        return fake_w, fake_b
