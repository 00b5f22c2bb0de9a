"""Quantization of a float folded graph to a chip's integers, and the matching fake quantization.

Every weight layer with a neuron gets one scale s (``integer = round(float * s)``, stored in
:class:`~asa_snn.convert.graph.LayerQuant`); weights, bias, threshold and min_v share it, so the
integer layer computes exactly s times the float layer's current (before rounding). How s is
chosen and which bit widths hold is the chip's rule, a :class:`Quantizer` living in the chip's
folder (``asa_snn/chips/<chip>/quantizer.py``). A chip without integers (the generic target) has no
quantizer and keeps the float graph.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from asa_snn.convert.graph import FoldedGraph, Layer, LayerQuant, NeuronSpec
from asa_snn.errors import AsaSnnError


def max_abs(values: np.ndarray | None) -> float:
    """Largest absolute value of ``values``; 0 for None or an empty array."""
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
        w = weight.detach().cpu().double().numpy()
        b = None if bias is None else bias.detach().cpu().double().numpy()
        scale = self.quantizer.scale(layer, w, b)
        fake_w = straight_through_round(weight * scale) / scale
        fake_b = None if bias is None else straight_through_round(bias * scale) / scale
        return fake_w, fake_b
