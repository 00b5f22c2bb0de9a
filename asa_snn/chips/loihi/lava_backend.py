"""Lava backend: the netx export of a folded graph run by Lava itself (``--backend lava``).

Lava (lava-nc 0.10.0, lava-dl 0.6.0) declares Python >=3.10,<3.11 and fails to import its
processes on 3.11 (FACTS.md section 4), so it is an optional runtime for a Python 3.10
environment. Availability is probed without risking a crash: ``importlib.util.find_spec`` first,
then an import inside ``try/except Exception``.

Run path (per sample; Lava's fixed-point CPU models, ``Loihi2SimCfg(select_tag="fixed_pt")``):
the graph is written with :func:`~asa_snn.chips.loihi.netx_export.write_netx` and loaded with
``lava.lib.dl.netx.hdf5.Network``. netx's input block takes its data through its neurons' bias
(its ``inp`` port is not wired to them), so each step sets ``bias_mant`` of the input layer to 1
where the frame has events and runs one step; every other layer's spikes go to a
``lava.proc.io.sink.RingBuffer``. The result should equal
:class:`~asa_snn.chips.loihi.simulator.LoihiSimulator` spike for spike.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

from asa_snn.chips.loihi.netx_export import to_netx_layers, write_netx
from asa_snn.chips.loihi.simulator import integer_frames, with_drain
from asa_snn.convert.graph import FoldedGraph
from asa_snn.errors import MissingDependencyError
from asa_snn.simulators.base import SimulationResult, check_frames, spike_maps_of

_MODULES = ("lava.magma.core.run_configs", "lava.proc.io.sink", "lava.lib.dl.netx.hdf5")
_ADVICE = (
    'Lava needs Python 3.10: create a Python 3.10 environment and run `pip install "asa-snn[lava]"`; '
    "the built-in Loihi simulator (`--backend loihi`) is the bit-accurate substitute"
)


def lava_unavailable_reason() -> str | None:
    """None when Lava and lava-dl netx import here, else a sentence saying why and what to do."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        if importlib.util.find_spec("lava") is None or importlib.util.find_spec("lava.lib.dl") is None:
            return f"Lava (lava-nc, lava-dl) is not installed (Python {version}). {_ADVICE}."
    except (ImportError, ValueError) as exc:
        return f"Lava is not importable here ({exc}). {_ADVICE}."
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
            return (
                f"Lava is installed but {module} fails to import on Python {version} ({failure}). {_ADVICE}."
            )
    return None


def _to_chw(data: np.ndarray) -> np.ndarray:
    """Lava (x, y, c, T) or (n, T) sink data -> [T, C, H, W] or [T, N]."""
    return np.moveaxis(data, -1, 0).transpose(0, 3, 2, 1) if data.ndim == 4 else np.moveaxis(data, -1, 0)


def _run_config(hardware: bool) -> object:
    """Lava's run configuration: Loihi 2 hardware, or the bit-accurate CPU models."""
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg

    return Loihi2HwCfg() if hardware else Loihi2SimCfg(select_tag="fixed_pt")


def _run_sample(path: Path, binary: np.ndarray, hardware: bool) -> list[np.ndarray]:
    """One sample through Lava: binary [T, C, H, W] -> per layer after the input, spikes [T, ...]."""
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.sink import RingBuffer

    steps = binary.shape[0]
    net = Network(net_config=str(path))
    sinks = []
    for layer in net.layers[1:]:
        sink = RingBuffer(shape=layer.out.shape, buffer=steps)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    bias = net.in_layer.neuron.bias_mant
    config = _run_config(hardware)
    try:
        for t in range(steps):
            frame = binary[t].transpose(2, 1, 0).astype(np.int32)
            if t == 0:
                bias.init = frame
            else:
                bias.set(frame)
            net.run(condition=RunSteps(num_steps=1), run_cfg=config)
        return [_to_chw(sink.data.get()) for sink in sinks]
    finally:
        net.stop()


class LavaBackend:
    """Runs the netx export of a folded graph with Lava (backend ``lava``).

    Args:
        hardware: run on Loihi 2 (``Loihi2HwCfg``; needs Intel's Loihi extension) instead of
            Lava's bit-accurate CPU models (``Loihi2SimCfg(select_tag="fixed_pt")``, default).
    """

    name = "lava"

    def __init__(self, hardware: bool = False) -> None:
        self.hardware = hardware

    def unavailable_reason(self) -> str | None:
        """See :func:`lava_unavailable_reason`."""
        return lava_unavailable_reason()

    def run(self, graph: FoldedGraph, frames: np.ndarray, record: bool = False) -> SimulationResult:
        """Simulate ``graph`` on frames [B, T, C, H, W] of event counts with Lava, for the same
        ``T + n`` steps as the built-in simulator (n drain steps without input, :func:`with_drain`).

        Returns:
            spike counts per layer after the input int64 [B, T + n], spike maps float64 [B, *shape]
            (summed over the steps), outputs [B, T + n, K], and with ``record`` spike trains uint8
            [T + n, B, *shape].

        Raises:
            MissingDependencyError: Lava is not importable here (message says how to get it).
        """
        reason = self.unavailable_reason()
        if reason is not None:
            raise MissingDependencyError(reason)
        frames = with_drain(integer_frames(check_frames(graph, np.asarray(frames))), to_netx_layers(graph))
        binary = (frames > 0).astype(np.int64)
        names = [layer.name for layer in graph.spiking_layers()]
        with tempfile.TemporaryDirectory() as folder:
            path = write_netx(graph, Path(folder) / "network.net")
            per_sample = [_run_sample(path, sample, self.hardware) for sample in binary]
        batch, steps = frames.shape[:2]
        trains = {
            name: np.stack([sample[i] for sample in per_sample], axis=1) for i, name in enumerate(names)
        }
        counts = {
            name: train.reshape(steps, batch, -1).sum(axis=2).T.astype(np.int64)
            for name, train in trains.items()
        }
        outputs = trains[names[-1]].reshape(steps, batch, -1).transpose(1, 0, 2).astype(np.int64)
        return SimulationResult(
            backend=self.name,
            spike_counts=counts,
            outputs=outputs,
            spike_trains={k: v.astype(np.uint8) for k, v in trains.items()} if record else {},
            spike_maps=spike_maps_of(trains),
        )
