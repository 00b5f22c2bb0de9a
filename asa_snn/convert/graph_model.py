"""A torch executor of a folded graph: evaluation of the float fold and fold-aware fine-tuning.

``GraphModel(graph)`` holds the graph's weights and biases as parameters and runs its layers in
order on frames [T, B, C, H, W], with the neurons of :mod:`asa_snn.models` (time steps first):

    conv2d / linear    z = W x (+ b, except for CUBA neurons whose bias enters the voltage)
    sumpool2d          z = sum over k x k windows
    flatten            z = x reshaped to [F] per step
    add                z = x_a + x_b  (the outputs of its two inputs: a residual block's spikes)
    gain_map           z <- G * z  (generic target: the per-neuron attention map, [C, H, W])
    neuron             s = neuron(z) over time

Without ``dynamics`` a quantized graph runs on its integers as float values with the float
neurons (no synaptic delay, no saturation, no unary input). ``fake_quant`` (a strategy from
:mod:`asa_snn.convert.quantize`) rounds weight and bias to the target's integer grid in every
forward pass with a straight-through gradient; :meth:`GraphModel.to_graph` writes the (unrounded)
parameters back into a copy of the graph.

With ``dynamics`` (a :class:`~asa_snn.convert.chip_dynamics.ChipDynamics`) the model runs what the
chip runs: the chip's input, synaptic delay and integer neurons, on integer weights (a quantized
graph's own, or ``round(w s)`` of a float graph with the ``quantizer``'s scale ``s``, recomputed
every pass, rounding straight-through). Where the chip delays (``delay`` steps per conv / linear
layer, n in all) it runs ``T + n`` steps, the last n without input, as the chip's simulator does,
so that every frame reaches the output; rates are still spikes / T. In evaluation mode its spikes
equal the chip simulator's, layer by layer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asa_snn.convert.chip_dynamics import ChipDynamics, delayed, drain_steps
from asa_snn.convert.graph import FoldedGraph, Layer, NeuronSpec
from asa_snn.convert.quantize import Quantizer, straight_through_round
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
        trains: with ``record``, spiking layer name -> spikes [T, B, *output_shape]; else empty.
    """

    scores: Tensor
    channel_spikes: dict[str, Tensor]
    trains: dict[str, Tensor] = field(default_factory=dict)


class GraphModel(nn.Module):
    """Runs a :class:`FoldedGraph` in torch (see the module docstring).

    Args:
        graph: a folded graph (float or quantized); an ``add`` sums the outputs of its two inputs.
        fake_quant: optional weight / bias rounding strategy for fold-aware fine-tuning (float
            neurons only).
        dynamics: the chip's dynamics, or None for the float neurons of :mod:`asa_snn.models`.
        quantizer: the chip's integer rule; needed with ``dynamics`` on a float graph.

    Shape:
        Input frames [T, B, C, H, W]; output scores [B, K].
    """

    def __init__(
        self,
        graph: FoldedGraph,
        fake_quant: FakeQuant | None = None,
        dynamics: ChipDynamics | None = None,
        quantizer: Quantizer | None = None,
    ) -> None:
        super().__init__()
        if dynamics is not None and not graph.quantized and quantizer is None:
            raise AsaSnnError(
                f"GraphModel: {dynamics.name} dynamics on a float graph need the chip's quantizer"
            )
        self.graph = graph
        self.fake_quant = fake_quant
        self.dynamics = dynamics
        self.quantizer = quantizer
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self.neurons = nn.ModuleDict()
        self.gain_maps: dict[str, Tensor] = {}
        self.named = {name for layer in graph.layers for name in layer.inputs}
        for layer in graph.layers:
            if len(layer.inputs) != (2 if layer.op == "add" else min(len(layer.inputs), 1)):
                raise AsaSnnError(
                    f"layer {layer.name!r}: {layer.op} reads {list(layer.inputs)}; expected one input "
                    "(an add: two)"
                )
            for key, store in (("weight", self.weights), ("bias", self.biases)):
                if key in layer.tensors:
                    store[layer.name] = nn.Parameter(
                        torch.as_tensor(np.asarray(layer.tensors[key], np.float32))
                    )
            if "gain_map" in layer.tensors:
                if dynamics is not None:
                    raise AsaSnnError(
                        f"layer {layer.name!r}: a per-neuron gain_map cannot run with {dynamics.name} "
                        "dynamics (one threshold per layer); fold for that target"
                    )
                self.gain_maps[layer.name] = torch.as_tensor(
                    np.asarray(layer.tensors["gain_map"], np.float32)
                )
            if layer.neuron is not None and dynamics is None:
                self.neurons[layer.name] = make_neuron(layer.neuron, layer.name)

    def _params(self, layer: Layer) -> tuple[Tensor | None, Tensor | None]:
        weight = self.weights.get(layer.name)
        bias = self.biases.get(layer.name)
        if self.fake_quant is not None and weight is not None and layer.neuron is not None:
            weight, bias = self.fake_quant(layer, weight, bias)
        return weight, bias

    def _chip_params(self, layer: Layer) -> tuple[Tensor | None, Tensor | None, NeuronSpec | None]:
        """Integer weight, bias and neuron of ``layer`` in the chip's units (module docstring)."""
        weight = self.weights.get(layer.name)
        bias = self.biases.get(layer.name)
        if weight is None or layer.neuron is None or self.graph.quantized:
            return weight, bias, layer.neuron
        w = weight.detach().cpu().double().numpy()
        b = None if bias is None else bias.detach().cpu().double().numpy()
        scale = self.quantizer.scale(layer, w, b)
        weight = straight_through_round(weight.double() * scale).to(weight.dtype)
        if bias is not None:
            bias = straight_through_round(bias.double() * scale).to(bias.dtype)
        return weight, bias, self.quantizer.integer_neuron(layer, scale)

    def _op(self, layer: Layer, x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
        if layer.op == "conv2d":
            attrs = layer.attrs
            return F.conv2d(x, weight, bias, attrs.stride, attrs.padding, attrs.dilation, attrs.groups)
        if layer.op == "linear":
            return F.linear(x.flatten(1), weight, bias)
        if layer.op == "sumpool2d":
            return F.avg_pool2d(x, layer.attrs.kernel_size, divisor_override=1)
        return x.flatten(1)

    def _input(self, layer: Layer, x: Tensor, outputs: dict[str, Tensor]) -> Tensor:
        """What ``layer`` reads: the sum of its two inputs (add), its named input, else ``x``."""
        if layer.op == "add":
            return outputs[layer.inputs[0]] + outputs[layer.inputs[1]]
        return outputs[layer.inputs[0]] if layer.inputs else x

    def run(self, frames: Tensor, record: bool = False) -> GraphRun:
        """Scores and per-channel spike counts for frames [T, B, C, H, W] (time steps first);
        with ``record`` also every spiking layer's spike trains."""
        if self.dynamics is not None:
            return self._run_chip(frames, record)
        steps, batch = frames.shape[:2]
        x = frames.flatten(0, 1)
        spikes: dict[str, Tensor] = {}
        trains: dict[str, Tensor] = {}
        outputs: dict[str, Tensor] = {}
        last = ""
        for layer in self.graph.layers:
            if last in self.named:
                outputs[last] = x
            x, last = self._input(layer, x, outputs), layer.name
            if layer.op == "add":
                continue
            weight, bias = self._params(layer)
            is_cuba = layer.neuron is not None and layer.neuron.kind == "cuba"
            x = self._op(layer, x, weight, None if is_cuba else bias)
            if layer.name in self.gain_maps:
                x = x * self.gain_maps[layer.name].to(x)
            if layer.neuron is None:
                continue
            neuron = self.neurons[layer.name]
            if is_cuba:
                neuron.bias = 0.0 if bias is None else bias.reshape(-1, *([1] * (x.ndim - 2)))
            s = neuron(x.unflatten(0, (steps, batch)))
            spikes[layer.name] = s.sum(0).flatten(2).sum(2) if s.ndim > 3 else s.sum(0)
            if record:
                trains[layer.name] = s
            x = s.flatten(0, 1)
        return self._finish(x.unflatten(0, (steps, batch)), spikes, trains)

    def _finish(
        self, out: Tensor, spikes: dict[str, Tensor], trains: dict[str, Tensor], steps: int | None = None
    ) -> GraphRun:
        """Scores from output spikes [T', B, ...]: spikes / ``steps`` (None: T'), voted."""
        rate = out.flatten(2).sum(0) / (steps or out.shape[0])
        scores = rate.unflatten(1, (-1, self.graph.vote)).mean(2)
        return GraphRun(scores, spikes, trains)

    def _run_chip(self, frames: Tensor, record: bool) -> GraphRun:
        """:meth:`run` with the chip's dynamics: input, delay and integer neurons."""
        dynamics = self.dynamics
        recorded = frames.shape[0]
        drain = frames.new_zeros(drain_steps(dynamics, self.graph), *frames.shape[1:])
        frames = torch.cat([frames, drain])
        steps, batch = frames.shape[:2]
        x = dynamics.input(frames)
        spikes: dict[str, Tensor] = {}
        trains: dict[str, Tensor] = {}
        outputs: dict[str, Tensor] = {}
        last = ""
        for layer in self.graph.layers:
            if last in self.named:
                outputs[last] = x
            x, last = self._input(layer, x, outputs), layer.name
            if layer.op == "add":
                continue
            weight, bias, spec = self._chip_params(layer)
            if weight is not None:
                x = delayed(x, dynamics.delay)
            current = self._op(layer, x.flatten(0, 1), weight, bias if dynamics.bias_in_current else None)
            x = current.unflatten(0, (steps, batch))
            if spec is None:
                continue
            x = dynamics.neuron(spec, layer.name, x, None if dynamics.bias_in_current else bias)
            spikes[layer.name] = x.sum(0).flatten(2).sum(2) if x.ndim > 3 else x.sum(0)
            if record:
                trains[layer.name] = x
        return self._finish(x, spikes, trains, recorded)

    def forward(self, frames: Tensor) -> Tensor:
        """Scores [B, K] for frames [T, B, C, H, W]."""
        return self.run(frames).scores

    def to_graph(self) -> FoldedGraph:
        """A copy of the graph holding the current parameters (float32 -> float64 arrays)."""
        graph = copy.deepcopy(self.graph)
        for layer in graph.layers:
            for key, store in (("weight", self.weights), ("bias", self.biases)):
                if layer.name in store:
                    layer.tensors[key] = store[layer.name].detach().cpu().double().numpy().copy()
        return graph
