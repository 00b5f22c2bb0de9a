"""Operation counts of a simulated folded graph, in the one energy model's terms.

:func:`graph_layer_ops` turns a :class:`~asa_snn.simulators.base.SimulationResult` into one
:class:`~asa_snn.energy.model.LayerOps` per conv / linear layer, so the simulators and the
training-side analysis price work with the same rules (:mod:`asa_snn.energy.model`).

Input events of a layer are the spikes of the spiking layer before it (sum pooling and flatten
move spikes without changing their number); the first layer's input events are the frames' event
counts, which a neuromorphic chip receives as events, so they count as spiking input. The
mean-fan-out form ``events * FLOPs / input size`` is used (the simulators do not record which
positions the events came from), so events on the border of a padded conv are over-counted
slightly; see :mod:`asa_snn.energy.model`. Active neuron-steps are taken as the spike count
(exact for binary spikes; a multi-spike step of n spikes counts n).
"""

from __future__ import annotations

import numpy as np

from asa_snn.convert.graph import FoldedGraph, Layer
from asa_snn.energy.model import LayerOps
from asa_snn.simulators.base import SimulationResult


def dense_flops(layer: Layer) -> int:
    """Dense operations per step: k^2 * H_out * W_out * C_in * C_out (conv), in * out (linear)."""
    if layer.op == "conv2d":
        out_channels, height, width = layer.output_shape
        kernel_h, kernel_w = layer.attrs.kernel_size
        return int(kernel_h * kernel_w * height * width * layer.attrs.in_channels * out_channels)
    return int(layer.attrs.in_features * layer.attrs.out_features)


def graph_layer_ops(graph: FoldedGraph, result: SimulationResult, frames: np.ndarray) -> list[LayerOps]:
    """Per-sample operation counts of every conv / linear layer of ``graph`` in ``result``.

    Args:
        graph: the simulated graph.
        result: what a backend measured on ``frames``.
        frames: the input, [B, T, C, H, W] event counts.

    Returns:
        One LayerOps per weight layer, in graph order; spikes and events are means per sample.
    """
    batch, steps = frames.shape[:2]
    input_events = float(frames.sum()) / batch
    input_size = int(np.prod(graph.input.shape))
    ops = []
    for index, layer in enumerate(graph.layers):
        if layer.op in ("conv2d", "linear"):
            driven = next((x for x in graph.layers[index:] if x.neuron is not None), None)
            spikes = float(result.spike_counts[driven.name].sum()) / batch if driven else 0.0
            ops.append(
                LayerOps(
                    name=layer.name,
                    kind="conv" if layer.op == "conv2d" else "linear",
                    flops=float(dense_flops(layer)),
                    input_size=input_size,
                    input_events=input_events,
                    input_is_spiking=True,
                    timesteps=steps,
                    neurons=int(np.prod(driven.output_shape)) if driven else 0,
                    active_neuron_steps=spikes,
                    output_spikes=spikes,
                )
            )
        if layer.neuron is not None:
            input_events = float(result.spike_counts[layer.name].sum()) / batch
        input_size = int(np.prod(layer.output_shape))
    return ops
