"""onnxruntime as a simulator backend: the one-step ONNX export run step by step.

The model of :func:`asa_snn.convert.onnx_export.to_onnx_model` takes the frame of step t and every
spiking layer's state, and returns the new states and the spikes; this backend starts all states
at 0 and feeds them back for T steps. float32 on the CPU execution provider: on an integer-valued
graph it gives the spikes of :class:`asa_snn.chips.speck.simulator.SpeckSimulator` (time-stepped) exactly.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from asa_snn.convert.graph import FoldedGraph, Layer
from asa_snn.convert.onnx_export import (
    FRAME,
    NEURON_STATES,
    next_state_name,
    spikes_name,
    state_name,
    state_shapes,
    to_onnx_model,
)
from asa_snn.errors import AsaSnnError, MissingDependencyError
from asa_snn.simulators.base import SimulationResult, check_frames, spike_maps_of


def layer_result(
    backend: str, layers: list[Layer], trains: dict[str, np.ndarray], record: bool, notes: list[str]
) -> SimulationResult:
    """SimulationResult from spike trains [T, B, *output_shape] of the spiking ``layers`` (in order):
    counts [B, T], spike maps [B, *output_shape] summed over T, outputs and (``record``) the trains."""
    if not layers:
        raise AsaSnnError("graph has no spiking layer to read the output from")
    counts = {
        name: np.swapaxes(train.reshape(*train.shape[:2], -1).sum(axis=2), 0, 1).astype(np.int64)
        for name, train in trains.items()
    }
    last = trains[layers[-1].name]
    outputs = np.swapaxes(last.reshape(*last.shape[:2], -1), 0, 1)
    return SimulationResult(
        backend, counts, outputs, trains if record else {}, notes, spike_maps=spike_maps_of(trains)
    )


@dataclass
class OnnxBackend:
    """Backend ``"onnx"``: the graph exported to one ONNX time step, run with onnxruntime."""

    name: str = "onnx"

    def unavailable_reason(self) -> str | None:
        """None when onnx and onnxruntime are importable, else how to install them."""
        missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
        if missing:
            names = " and ".join(missing)
            return f"{names} not installed; install with `pip install 'onnx>=1.16' 'onnxruntime>=1.18'`"
        return None

    def run(self, graph: FoldedGraph, frames: np.ndarray, record: bool = False) -> SimulationResult:
        """Simulate ``graph`` on ``frames`` [B, T, C, H, W] (input events per pixel and step).

        Returns:
            spike counts per spiking layer int64 [B, T], spike maps float64 [B, *output_shape]
            (summed over T), outputs [B, T, K] (last spiking layer), and with ``record`` spike
            trains int64 [T, B, *output_shape].
        """
        reason = self.unavailable_reason()
        if reason:
            raise MissingDependencyError(reason)
        import onnxruntime

        frames = check_frames(graph, np.asarray(frames))
        B, T = frames.shape[:2]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            to_onnx_model(graph).SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        layers = graph.spiking_layers()
        feeds = {name: np.zeros((B, *shape), np.float32) for name, shape in state_shapes(graph).items()}
        state_outputs = [
            (next_state_name(layer.name, v), state_name(layer.name, v))
            for layer in layers
            for v in NEURON_STATES[layer.neuron.kind]
        ]
        wanted = [out for out, _ in state_outputs] + [spikes_name(layer.name) for layer in layers]
        trains = {layer.name: np.zeros((T, B, *layer.output_shape), np.int64) for layer in layers}
        for t in range(T):
            feeds[FRAME] = np.ascontiguousarray(frames[:, t], dtype=np.float32)
            values = dict(zip(wanted, session.run(wanted, feeds), strict=True))
            for out, state in state_outputs:
                feeds[state] = values[out]
            for layer in layers:
                trains[layer.name][t] = values[spikes_name(layer.name)].astype(np.int64)
        return layer_result(self.name, layers, trains, record, ["onnxruntime CPU, float32 state"])
