"""The one simulator interface: ``backend.run(graph, frames) -> SimulationResult``.

Every backend (built-in Speck and Loihi simulators, sinabs, Norse via NIR, Lava, onnxruntime)
takes the same folded graph and the same input and returns the same result type, so their spike
counts can be compared layer by layer, and their spike maps priced with the same synaptic-op
counts (:mod:`asa_snn.simulators.operations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from asa_snn.convert.graph import FoldedGraph
from asa_snn.errors import InputFormatError


@dataclass
class SimulationResult:
    """What a backend measured on a batch of B inputs over T steps.

    Attributes:
        backend: the backend's name.
        spike_counts: layer name -> int64 [B, T]: spikes the layer emitted per sample and step
            (every layer with a neuron).
        outputs: [B, T, K_out]: the output layer's spikes per step (before any vote grouping).
        spike_trains: layer name -> [T, B, ...] full spike tensors, only when the run was asked
            to record them (for spike-exact comparisons); empty otherwise.
        notes: backend remarks (approximations, unavailable features).
        spike_maps: layer name -> float64 [B, *output_shape]: spikes per sample and neuron summed
            over the T steps (same layers as ``spike_counts``; every backend fills it). Where the
            spikes landed is what the exact synaptic-op count needs; empty only in a result built
            without it (the op count then falls back to the mean fan-out).
    """

    backend: str
    spike_counts: dict[str, np.ndarray]
    outputs: np.ndarray
    spike_trains: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    spike_maps: dict[str, np.ndarray] = field(default_factory=dict)

    def scores(self, vote: int = 1) -> np.ndarray:
        """Mean output spikes over time, averaged over groups of ``vote`` units: [B, K]."""
        rate = self.outputs.mean(axis=1)
        return rate.reshape(rate.shape[0], -1, vote).mean(axis=2)

    def predictions(self, vote: int = 1) -> np.ndarray:
        """Predicted class per sample, int64 [B] (ties go to the lowest index)."""
        return self.scores(vote).argmax(axis=1)


def spike_maps_of(trains: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Spike maps (float64 [B, ...], summed over steps) of spike trains [T, B, ...] per layer."""
    return {name: np.asarray(train, dtype=np.float64).sum(axis=0) for name, train in trains.items()}


class Backend(Protocol):
    """A simulator backend."""

    name: str

    def unavailable_reason(self) -> str | None:
        """None when the backend can run here, else a sentence saying why not and how to fix it."""

    def run(self, graph: FoldedGraph, frames: np.ndarray, record: bool = False) -> SimulationResult:
        """Simulate ``graph`` on ``frames`` [B, T, C, H, W] (input events per pixel and step)."""


def check_frames(graph: FoldedGraph, frames: np.ndarray) -> np.ndarray:
    """Raise :class:`InputFormatError` unless ``frames`` is [B, T, C, H, W] matching the graph's input."""
    expected = tuple(graph.input.shape)
    if frames.ndim != 5 or tuple(frames.shape[2:]) != expected:
        raise InputFormatError(
            f"simulator input must be frames [B, T, C, H, W] with C,H,W = {expected}, "
            f"got shape {frames.shape}"
        )
    if not np.all(np.isfinite(frames)) or np.any(frames < 0):
        raise InputFormatError("simulator input frames must hold non-negative event counts")
    return frames
