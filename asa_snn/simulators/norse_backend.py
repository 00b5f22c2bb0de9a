"""Norse as a simulator backend, through the NIR export (optional extra ``asa-snn[norse]``).

The graph goes through :func:`asa_snn.convert.nir_export.to_nir` and ``norse.torch.from_nir``
(Norse 1.1.0) and runs one sample and one step at a time (Norse's import of NIR ``Flatten`` keeps
the dims as written, so a batch dimension would be flattened too). What Norse runs per neuron
kind, per step (see ``norse/torch/utils/import_nir.py``):

* iaf -> ``IAFCell``: ``v <- v + I``, spike when ``v > theta`` (strict), reset to 0, no lower
  bound, one spike at most. This is our iaf exactly when the layer resets to zero, has no
  ``min_v`` and no multi-spike, and no membrane lands exactly on theta (e.g. integer weights
  with a half-integer threshold); otherwise the result carries a note naming the layer.
* cuba -> ``LIBoxCell`` + ``LIFBoxCell``: the Euler steps of the NIR export (u, then v), strict
  threshold, reset to 0, bias added to the current rather than to v.
* lif -> ``LIFBoxCell``: Euler step ``v <- v + (dt / tau)(-v + I)``; Norse ignores NIR's ``r``,
  so the input arrives scaled by ``1 - decay``: spikes differ from our lif.

Norse is imported only when the backend runs; without it the backend says how to install it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from asa_snn.convert.graph import FoldedGraph, Layer
from asa_snn.convert.nir_export import dt_seconds, neuron_node_name, to_nir
from asa_snn.errors import MissingDependencyError
from asa_snn.simulators.base import SimulationResult, check_frames
from asa_snn.simulators.onnx_backend import layer_result

INSTALL = (
    "norse is not installed; install the optional extra with "
    '`pip install -c constraints.txt "asa-snn[norse]"` '
    "(norse 1.1.0 with torchvision 0.28.0, the release that pairs with torch 2.13 without pulling CUDA)"
)


def norse_differences(layer: Layer) -> list[str]:
    """Where Norse's model of ``layer``'s neuron differs from the graph's (empty: the same update)."""
    neuron = layer.neuron
    where = f"layer {layer.name!r}"
    if neuron.kind == "lif":
        return [f"{where}: Norse's LIF ignores NIR's r, so its input is scaled by 1 - decay"]
    found = []
    if neuron.kind == "iaf":
        found.append(f"{where}: Norse spikes on v > theta (strict); a membrane exactly at theta differs")
    if neuron.reset != "zero":
        found.append(f"{where}: reset {neuron.reset!r}, Norse resets to 0")
    if neuron.min_v is not None:
        found.append(f"{where}: min_v {neuron.min_v} ignored, Norse has no lower bound")
    if neuron.multi_spike:
        found.append(f"{where}: multi-spike, Norse emits at most one spike per step")
    return found


@dataclass
class NorseBackend:
    """Backend ``"norse"``: NIR export loaded with ``norse.torch.from_nir``, run on CPU."""

    name: str = "norse"

    def unavailable_reason(self) -> str | None:
        """None when norse is importable, else the install command."""
        return INSTALL if importlib.util.find_spec("norse") is None else None

    def run(self, graph: FoldedGraph, frames: np.ndarray, record: bool = False) -> SimulationResult:
        """Simulate ``graph`` on ``frames`` [B, T, C, H, W] (input events per pixel and step).

        Returns:
            spike counts per spiking layer int64 [B, T], spike maps float64 [B, *output_shape]
            (summed over T), outputs [B, T, K] (last spiking layer), with ``record`` spike trains
            int64 [T, B, *output_shape], and a note per neuron difference (:func:`norse_differences`).
        """
        reason = self.unavailable_reason()
        if reason:
            raise MissingDependencyError(reason)
        import norse.torch
        import torch

        frames = check_frames(graph, np.asarray(frames))
        B, T = frames.shape[:2]
        model = norse.torch.from_nir(to_nir(graph), dt=dt_seconds(graph))
        layers = graph.spiking_layers()
        trains = {layer.name: np.zeros((T, B, *layer.output_shape), np.int64) for layer in layers}
        captured: dict[str, torch.Tensor] = {}
        for layer in layers:
            module = model.get_submodule(neuron_node_name(layer.name))
            module.register_forward_hook(_capture(captured, layer.name))
        with torch.no_grad():
            for b in range(B):
                state = None
                for t in range(T):
                    _, state = model(torch.from_numpy(np.asarray(frames[b, t], dtype=np.float32)), state)
                    for layer in layers:
                        trains[layer.name][t, b] = captured[layer.name].numpy().reshape(layer.output_shape)
        notes = [f"norse via NIR, dt = {dt_seconds(graph)} s, float32 state"]
        notes += [note for layer in layers for note in norse_differences(layer)]
        return layer_result(self.name, layers, trains, record, notes)


def _capture(store: dict, name: str):
    """Forward hook keeping the spikes of a Norse cell (its output is ``(spikes, state)``)."""

    def hook(module, inputs, output) -> None:
        store[name] = output[0].detach()

    return hook
