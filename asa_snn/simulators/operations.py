"""Operation counts of a simulated folded graph, in the one energy model's terms.

:func:`graph_layer_ops` turns a :class:`~asa_snn.simulators.base.SimulationResult` into one
:class:`~asa_snn.energy.model.LayerOps` per conv / linear layer, so the simulators and the
training-side analysis price work with the same rules (:mod:`asa_snn.energy.model`) and the same
fan-out model (:mod:`asa_snn.energy.synapses`).

The input map of a weight layer (events per position, summed over samples and steps) is derived
from the graph: the network input map is the frames summed over B and T (a neuromorphic chip
receives the event counts as events, so they count as spiking input); a layer with a neuron
emits its spike map (``result.spike_maps``); sum pooling and flatten are linear, so they are
applied to the summed map; an ``add`` sums its operands' maps. The synaptic ops are then the
boundary-exact count ``sum(input map * fan-out)`` (``event_fanout_sum``), so the same spikes
give the same counts as :func:`asa_snn.analysis.operations.model_layer_ops`.

A result without spike maps (built by hand, or cut to single samples without them) leaves the
input position unknown: such a layer falls back to the spike counts of the spiking layer before
it and the mean fan-out ``events * FLOPs / input size`` (``event_fanout_sum`` None). Active
neuron-steps are taken as the spike count (exact for binary spikes; a multi-spike step of n
spikes counts n). Conv attrs ``dilation`` and ``groups`` are read when present (default 1).
"""

from __future__ import annotations

import numpy as np

from asa_snn.convert.graph import FoldedGraph, Layer
from asa_snn.energy.model import LayerOps
from asa_snn.energy.synapses import ConvGeometry, Geometry, LinearGeometry, dense_flops, synaptic_ops
from asa_snn.simulators.base import SimulationResult


def layer_geometry(layer: Layer, input_shape: tuple[int, ...]) -> Geometry:
    """The geometry of a conv2d (input (C, H, W)) or linear layer, from its weight and attrs."""
    weight = layer.tensors["weight"]
    if layer.op == "conv2d":
        attrs = layer.attrs
        return ConvGeometry(
            in_channels=input_shape[0],
            out_channels=weight.shape[0],
            kernel_size=weight.shape[2:],
            input_hw=input_shape[1:],
            stride=attrs.stride,
            padding=attrs.padding,
            dilation=attrs.dilation,
            groups=attrs.groups,
            name=layer.name,
        )
    return LinearGeometry(int(weight.shape[1]), int(weight.shape[0]), layer.name)


def sum_pool(events: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
    """Sum pooling of a map [C, H, W] over non-overlapping windows; rows / columns left over drop."""
    c, h, w = events.shape
    kh, kw = kernel
    cropped = events[:, : h // kh * kh, : w // kw * kw]
    return cropped.reshape(c, h // kh, kh, w // kw, kw).sum(axis=(2, 4))


def _passed_on(layer: Layer, inputs: list[np.ndarray | None], result: SimulationResult) -> np.ndarray | None:
    """What ``layer`` passes to the next one as events: its spike map (summed over B), or its
    inputs moved by pooling / flatten / add; None when unknown (no spike map, or a weight layer
    without neuron, whose output is a current)."""
    if layer.neuron is not None:
        spikes = result.spike_maps.get(layer.name)
        if spikes is None:
            return None
        return np.asarray(spikes, np.float64).sum(axis=0).reshape(layer.output_shape)
    if any(x is None for x in inputs) or layer.op in ("conv2d", "linear"):
        return None
    if layer.op == "sumpool2d":
        return sum_pool(inputs[0], layer.attrs.kernel_size)
    if layer.op == "flatten":
        return inputs[0].reshape(-1)
    return np.sum(inputs, axis=0)


def graph_layer_ops(graph: FoldedGraph, result: SimulationResult, frames: np.ndarray) -> list[LayerOps]:
    """Per-sample operation counts of every conv / linear layer of ``graph`` in ``result``.

    Args:
        graph: the simulated graph.
        result: what a backend measured on ``frames``.
        frames: the input, [B, T, C, H, W] event counts.

    Returns:
        One LayerOps per weight layer, in graph order; spikes, events and synaptic ops are means
        per sample (over T steps).
    """
    batch, steps = frames.shape[:2]
    previous = ""  # the graph input
    shapes: dict[str, tuple[int, ...]] = {previous: tuple(graph.input.shape)}
    maps: dict[str, np.ndarray | None] = {previous: np.asarray(frames, np.float64).sum(axis=(0, 1))}
    counted: dict[str, float] = {previous: float(np.sum(frames)) / batch}
    ops = []
    for index, layer in enumerate(graph.layers):
        sources = list(layer.inputs) or [previous]
        if layer.op in ("conv2d", "linear"):
            geometry = layer_geometry(layer, shapes[sources[0]])
            events = maps[sources[0]]
            if events is not None and isinstance(geometry, LinearGeometry):
                events = events.reshape(-1)
            driven = next((x for x in graph.layers[index:] if x.neuron is not None), None)
            spikes = float(result.spike_counts[driven.name].sum()) / batch if driven else 0.0
            ops.append(
                LayerOps(
                    name=layer.name,
                    kind="conv" if layer.op == "conv2d" else "linear",
                    flops=float(dense_flops(geometry)),
                    input_size=int(np.prod(geometry.input_shape)),
                    input_events=counted[sources[0]] if events is None else float(events.sum()) / batch,
                    input_is_spiking=True,
                    timesteps=steps,
                    neurons=int(np.prod(driven.output_shape)) if driven else 0,
                    event_fanout_sum=None if events is None else synaptic_ops(events, geometry) / batch,
                    active_neuron_steps=spikes,
                    output_spikes=spikes,
                )
            )
        shapes[layer.name] = layer.output_shape
        maps[layer.name] = _passed_on(layer, [maps[name] for name in sources], result)
        counted[layer.name] = (
            float(result.spike_counts[layer.name].sum()) / batch
            if layer.neuron is not None
            else sum(counted[name] for name in sources)
        )
        previous = layer.name
    return ops
