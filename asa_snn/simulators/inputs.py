"""Run a folded graph on any backend: backend lookup, input preparation and the summary that
``asa-snn simulate`` prints and writes.

Backends are looked up by name and imported only when asked for, so a missing optional package
(Norse, Lava) is a clear message, never an ImportError.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asa_snn.energy.model import PRESETS, energy, mac_ops, neuron_updates, synaptic_ops
from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.events import EventStream
from asa_snn.data.formats import read_events
from asa_snn.data.frames import downsample, to_frames
from asa_snn.data.synthetic import SyntheticDVS, SyntheticDVSConfig
from asa_snn.errors import AsaSnnError, InputFormatError, MissingDependencyError
from asa_snn.simulators.base import Backend, SimulationResult
from asa_snn.simulators.operations import graph_layer_ops

BACKENDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "speck": ("asa_snn.chips.speck.simulator", "SpeckSimulator", {}),
    "speck-events": ("asa_snn.chips.speck.simulator", "SpeckSimulator", {"mode": "event"}),
    "loihi": ("asa_snn.chips.loihi.simulator", "LoihiSimulator", {}),
    "sinabs": ("asa_snn.chips.speck.sinabs_backend", "SinabsBackend", {}),
    "lava": ("asa_snn.chips.loihi.lava_backend", "LavaBackend", {}),
    "norse": ("asa_snn.simulators.norse_backend", "NorseBackend", {}),
    "onnx": ("asa_snn.simulators.onnx_backend", "OnnxBackend", {}),
}
"""Backend name -> (module, class, options). ``speck-events`` is the event-driven Speck mode."""


def get_backend(name: str) -> Backend:
    """The backend called ``name``, ready to run.

    Raises:
        AsaSnnError: unknown name (lists the known ones).
        MissingDependencyError: the backend's package is missing (says how to install it).
    """
    if name not in BACKENDS:
        raise AsaSnnError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    module_name, class_name, options = BACKENDS[name]
    module = importlib.import_module(module_name)
    if options.get("mode") == "event":
        backend = module.SpeckSimulator(mode=module.EventDriven())
    else:
        backend = getattr(module, class_name)(**options)
    reason = backend.unavailable_reason()
    if reason:
        raise MissingDependencyError(f"backend {name!r} is unavailable: {reason}")
    return backend


def frames_from_events(graph: FoldedGraph, stream: EventStream) -> np.ndarray:
    """Turn a recording into the graph's input: [T, C, H, W] event counts.

    Events are binned by the graph's ``downsample`` factor and cut into ``n_steps`` windows of
    ``dt_us`` microseconds from the first event; with ``polarity="merged"`` the polarities are
    summed into one channel.

    Raises:
        InputFormatError: the recording's sensor differs from the graph's, or the frames do not
            have the graph's input shape.
    """
    spec = graph.input
    if tuple(stream.sensor_size[:2]) != tuple(spec.sensor_size[:2]):
        raise InputFormatError(
            f"{stream.source}: sensor {stream.sensor_size[0]}x{stream.sensor_size[1]} but the graph expects "
            f"{spec.sensor_size[0]}x{spec.sensor_size[1]} (its input spec)"
        )
    events, sensor = downsample(stream.events, tuple(spec.sensor_size), spec.downsample)
    frames = to_frames(events, sensor, spec.dt_us, spec.n_steps)
    if spec.polarity == "merged":
        frames = frames.sum(axis=1, keepdims=True)
    frames = frames[..., : spec.shape[1], : spec.shape[2]]
    if tuple(frames.shape[1:]) != tuple(spec.shape):
        raise InputFormatError(
            f"{stream.source}: frames of shape {tuple(frames.shape[1:])}, graph input is {tuple(spec.shape)}"
        )
    return frames


@dataclass
class SimulationInput:
    """A batch for a backend: frames [B, T, C, H, W], labels [B] (-1 when unknown) and sample names."""

    frames: np.ndarray
    labels: np.ndarray
    names: list[str]


def synthetic_for_graph(graph: FoldedGraph, count: int) -> SyntheticDVS:
    """``count`` recordings of the embedded synthetic data's test split, made for the graph's
    sensor size, frame length, number of steps and number of classes."""
    spec = graph.input
    config = SyntheticDVSConfig(
        sensor_size=tuple(spec.sensor_size),
        n_steps=spec.n_steps,
        dt_us=spec.dt_us,
        n_classes=graph.num_classes,
    )
    return SyntheticDVS(count, config, split="test")


def load_input(graph: FoldedGraph, data: str, max_samples: int | None = None) -> SimulationInput:
    """Frames for ``graph`` from ``data``: an event file, a folder of event files, or
    ``synthetic`` / ``synthetic:N`` (the embedded data's test split, N samples, default 32).

    Raises:
        AsaSnnError: nothing to read at ``data``.
    """
    if data.startswith("synthetic"):
        count = int(data.split(":", 1)[1]) if ":" in data else 32
        dataset = synthetic_for_graph(graph, count if max_samples is None else min(count, max_samples))
        streams = [dataset.recording(i) for i in range(len(dataset))]
        labels = np.asarray(dataset.labels, dtype=np.int64)
    else:
        path = Path(data)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files = [path]
        else:
            raise AsaSnnError(f"{data}: no such event file or folder (or use 'synthetic[:N]')")
        files = files[:max_samples] if max_samples else files
        if not files:
            raise AsaSnnError(f"{data}: the folder holds no files")
        streams = [read_events(file) for file in files]
        labels = np.full(len(streams), -1, dtype=np.int64)
    frames = np.stack([frames_from_events(graph, stream) for stream in streams])
    return SimulationInput(frames, labels, [stream.source for stream in streams])


def summarize(
    graph: FoldedGraph,
    result: SimulationResult,
    batch: SimulationInput,
    presets: tuple[str, ...] = tuple(PRESETS),
) -> dict[str, Any]:
    """Plain-data summary: per-layer spikes (per sample), synaptic ops, MACs, neuron updates and
    energy per preset (joules per inference), accuracy where labels are known, backend notes."""
    ops = graph_layer_ops(graph, result, batch.frames)
    samples = len(batch.frames)
    duration_s = graph.input.dt_us * graph.input.n_steps * 1e-6
    predictions = result.predictions(graph.vote)
    known = batch.labels >= 0
    return {
        "backend": result.backend,
        "samples": samples,
        "timesteps": int(batch.frames.shape[1]),
        "accuracy": float((predictions[known] == batch.labels[known]).mean()) if known.any() else None,
        "predictions": predictions.tolist(),
        "spikes_per_sample": {name: float(c.sum()) / samples for name, c in result.spike_counts.items()},
        "layers": [
            {
                "name": layer.name,
                "synaptic_ops": synaptic_ops(layer),
                "macs": mac_ops(layer),
                "neuron_updates": neuron_updates(layer),
            }
            for layer in ops
        ],
        "energy_j": {name: energy(ops, PRESETS[name], duration_s).total_j for name in presets},
        "notes": list(result.notes),
    }


def write_json(document: dict[str, Any], path: str | Path) -> Path:
    """Write ``document`` as JSON to ``path`` via a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(document, file, indent=2)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def simulate(
    graph: FoldedGraph,
    data: str,
    backend: str = "speck",
    max_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[SimulationResult, dict[str, Any]]:
    """Run ``graph`` on ``data`` with ``backend``; return the raw result and its summary."""
    runner = get_backend(backend)
    batch = load_input(graph, data, max_samples)
    if progress:
        progress(f"{backend}: {len(batch.frames)} samples x {batch.frames.shape[1]} steps")
    result = runner.run(graph, batch.frames)
    return result, summarize(graph, result, batch)
