"""A torch executor of a folded graph: evaluation of the float fold and fold-aware fine-tuning.

``GraphModel(graph)`` holds the graph's weights and biases as parameters and runs its layers in
order on frames [T, B, C, H, W], with the neurons of :mod:`asa_snn.models` (time steps first):

    conv2d / linear    z = W x (+ b, except for CUBA neurons whose bias enters the voltage)
    sumpool2d          z = sum over k x k windows
    flatten            z = x reshaped to [F] per step
    gain_map           z <- G * z  (generic target: the per-neuron attention map, [C, H, W])
    neuron             s = neuron(z) over time

A quantized graph runs on its integers as float values (exact while sums stay below 2^24; the
int16 saturation of a Speck membrane is not modelled). ``fake_quant`` (a strategy from
:mod:`asa_snn.convert.quantize`) rounds weight and bias to the target's integer grid in every
forward pass with a straight-through gradient; :meth:`GraphModel.to_graph` writes the (unrounded)
parameters back into a copy of the graph.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asa_snn.convert.graph import FoldedGraph, Layer, NeuronSpec
from asa_snn.errors import AsaSnnError
from asa_snn.models.firing import MultiSpike, ResetBySubtraction, ResetToZero, SpikeAtOrAbove
from asa_snn.models.neurons import IAF, LIF, CubaLIF


class FakeQuant(Protocol):
    """``(layer, weight, bias) -> (weight, bias)`` rounded to the target grid, straight-through gradient."""

    def __call__(self, layer: Layer, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]: ...


_RESETS = {"subtract": ResetBySubtraction(), "zero": ResetToZero()}


def make_neuron(spec: NeuronSpec, name: str) -> nn.Module:
    """The :mod:`asa_snn.models` neuron of ``spec`` (iaf -> IAF, lif -> LIF, cuba -> CubaLIF)."""
    reset = _RESETS[spec.reset]
    if spec.kind == "iaf":
        fire = MultiSpike() if spec.multi_spike else SpikeAtOrAbove()
        return IAF(v_th=spec.threshold, fire=fire, reset=reset, min_v=spec.min_v)
    if spec.kind == "lif":
        return LIF(v_th=spec.threshold, decay=1.0 if spec.decay is None else spec.decay, reset=reset)
    if spec.du is None or spec.dv is None:
        raise AsaSnnError(f"layer {name!r}: cuba neuron without du / dv; expected decay fractions")
    return CubaLIF(du=spec.du, dv=spec.dv, v_th=spec.threshold)


@dataclass
class GraphRun:
    """Output of one :meth:`GraphModel.run`.

    Attributes:
        scores: [B, K] mean output rate per class (vote groups averaged).
        channel_spikes: spiking layer name -> spikes per sample and channel, summed over T and space, [B, C].
    """

    scores: Tensor
    channel_spikes: dict[str, Tensor]


class GraphModel(nn.Module):
    """Runs a :class:`FoldedGraph` in torch (see the module docstring).

    Args:
        graph: a folded graph without ``add`` layers (float or quantized).
        fake_quant: optional weight / bias rounding strategy for fold-aware fine-tuning.

    Shape:
        Input frames [T, B, C, H, W]; output scores [B, K].
    """

    def __init__(self, graph: FoldedGraph, fake_quant: FakeQuant | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.fake_quant = fake_quant
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self.neurons = nn.ModuleDict()
        self.gain_maps: dict[str, Tensor] = {}
        for layer in graph.layers:
            if layer.op == "add":
                raise AsaSnnError(
                    f"layer {layer.name!r}: GraphModel runs chains only; 'add' is not supported"
                )
            if layer.inputs and len(layer.inputs) != 1:
                raise AsaSnnError(f"layer {layer.name!r}: reads {list(layer.inputs)}; expected one input")
            for key, store in (("weight", self.weights), ("bias", self.biases)):
                if key in layer.tensors:
                    store[layer.name] = nn.Parameter(
                        torch.as_tensor(np.asarray(layer.tensors[key], np.float32))
                    )
            if "gain_map" in layer.tensors:
                self.gain_maps[layer.name] = torch.as_tensor(
                    np.asarray(layer.tensors["gain_map"], np.float32)
                )
            if layer.neuron is not None:
                self.neurons[layer.name] = make_neuron(layer.neuron, layer.name)

    def _params(self, layer: Layer) -> tuple[Tensor | None, Tensor | None]:
        weight = self.weights.get(layer.name)
        bias = self.biases.get(layer.name)
        if self.fake_quant is not None and weight is not None and layer.neuron is not None:
            weight, bias = self.fake_quant(layer, weight, bias)
        return weight, bias

    def _op(self, layer: Layer, x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
        if layer.op == "conv2d":
            attrs = layer.attrs
            return F.conv2d(x, weight, bias, attrs.stride, attrs.padding, attrs.dilation, attrs.groups)
        if layer.op == "linear":
            return F.linear(x.flatten(1), weight, bias)
        if layer.op == "sumpool2d":
            return F.avg_pool2d(x, layer.attrs.kernel_size, divisor_override=1)
        return x.flatten(1)

    def run(self, frames: Tensor) -> GraphRun:
        """Scores and per-channel spike counts for frames [T, B, C, H, W] (time steps first)."""
        steps, batch = frames.shape[:2]
        x = frames.flatten(0, 1)
        spikes: dict[str, Tensor] = {}
        for layer in self.graph.layers:
            weight, bias = self._params(layer)
            is_cuba = layer.neuron is not None and layer.neuron.kind == "cuba"
            x = self._op(layer, x, weight, None if is_cuba else bias)
            if layer.name in self.gain_maps:
                x = x * self.gain_maps[layer.name].to(x.dtype)
            if layer.neuron is None:
                continue
            neuron = self.neurons[layer.name]
            if is_cuba:
                neuron.bias = 0.0 if bias is None else bias.reshape(-1, *([1] * (x.ndim - 2)))
            s = neuron(x.unflatten(0, (steps, batch)))
            spikes[layer.name] = s.sum(0).flatten(2).sum(2) if s.ndim > 3 else s.sum(0)
            x = s.flatten(0, 1)
        rate = x.unflatten(0, (steps, batch)).flatten(2).mean(0)
        scores = rate.unflatten(1, (-1, self.graph.vote)).mean(2)
        return GraphRun(scores, spikes)

    def forward(self, frames: Tensor) -> Tensor:
        """Scores [B, K] for frames [T, B, C, H, W]."""
        return self.run(frames).scores

    def to_graph(self) -> FoldedGraph:
        """A copy of the graph holding the current parameters (float32 -> float64 arrays)."""
        graph = copy.deepcopy(self.graph)
        for layer in graph.layers:
            for key, store in (("weight", self.weights), ("bias", self.biases)):
                if layer.name in store:
                    layer.tensors[key] = store[layer.name].detach().double().numpy().copy()
        return graph
