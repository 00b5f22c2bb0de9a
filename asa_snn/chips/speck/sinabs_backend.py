"""sinabs as a simulator backend: runs :func:`asa_snn.chips.speck.sinabs_export.to_sinabs` time-stepped.

sinabs simulates Speck in time steps (``v <- v + conv(x_t) + bias``, fire, reset, clamp to
min_v_mem) in float32 without int16 saturation; on a quantized graph whose membranes stay inside
int16 (and whose sums stay below 2^24, where float32 is exact) it gives the same spikes as
:class:`asa_snn.chips.speck.simulator.SpeckSimulator` in :class:`~asa_snn.chips.speck.simulator.TimeStepped`
mode. sinabs is imported only when the backend runs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from asa_snn.chips.speck.mapping import speck_chain
from asa_snn.chips.speck.simulator import speck_result
from asa_snn.convert.graph import FoldedGraph
from asa_snn.errors import MissingDependencyError
from asa_snn.simulators.base import SimulationResult, check_frames


@dataclass
class SinabsBackend:
    """Backend ``"sinabs"``: the graph exported to sinabs layers, run on CPU with torch.

    Args:
        approximate: run lif neurons as iaf (with a warning) instead of refusing the graph.
    """

    approximate: bool = False
    name: str = "sinabs"

    def unavailable_reason(self) -> str | None:
        """None when sinabs is importable, else how to install it."""
        if importlib.util.find_spec("sinabs") is None:
            return "sinabs is not installed; install it with `pip install 'sinabs>=3.1,<4'`"
        return None

    def run(self, graph: FoldedGraph, frames: np.ndarray, record: bool = False) -> SimulationResult:
        """Simulate ``graph`` on ``frames`` [B, T, C, H, W] (input events per pixel and step).

        Returns:
            spike counts per spiking layer int64 [B, T], spike maps float64 [B, *output_shape]
            (summed over T), outputs [B, T, K], and with ``record`` spike trains int64
            [T, B, *output_shape].
        """
        reason = self.unavailable_reason()
        if reason:
            raise MissingDependencyError(reason)
        import torch

        from asa_snn.chips.speck.sinabs_export import neuron_module_name, to_sinabs

        frames = check_frames(graph, np.asarray(frames))
        B, T = frames.shape[:2]
        chain = speck_chain(graph, approximate=self.approximate)
        model = to_sinabs(graph, num_timesteps=T, approximate=self.approximate)
        captured: dict[str, torch.Tensor] = {}
        for step in chain:
            if step.neuron is not None:
                module = model.get_submodule(neuron_module_name(step.layer.name))
                module.register_forward_hook(_capture(captured, step.layer.name))
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).flatten(0, 1)
        with torch.no_grad():
            model(x)
        trains = {
            name: np.swapaxes(out.reshape(B, T, *out.shape[1:]).numpy(), 0, 1).astype(np.int64)
            for name, out in captured.items()
        }
        return speck_result(self.name, graph, chain, trains, record, ["float32 state, no int16 saturation"])


def _capture(store: dict, name: str):
    """Forward hook keeping a module's output [B*T, ...] under ``name``."""

    def hook(module, inputs, output) -> None:
        store[name] = output.detach()

    return hook
