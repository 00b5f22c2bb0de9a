"""The plain-data summary of a simulation that ``asa-snn simulate`` prints and writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from asa_snn.convert.graph import FoldedGraph
from asa_snn.energy.model import EnergyModel, energy, mac_ops, neuron_updates, synaptic_ops
from asa_snn.simulators.base import SimulationResult
from asa_snn.simulators.inputs import SimulationInput
from asa_snn.simulators.operations import graph_layer_ops


def summarize(
    graph: FoldedGraph,
    result: SimulationResult,
    batch: SimulationInput,
    presets: Mapping[str, EnergyModel],
) -> dict[str, Any]:
    """Plain-data summary of one batch: per-layer spikes (per sample), synaptic ops, MACs, neuron
    updates and energy per preset (joules per inference), accuracy where labels are known, notes."""
    ops = graph_layer_ops(graph, result, batch.frames)
    samples = len(batch.frames)
    duration_us = graph.input.duration_us
    duration_s = None if duration_us is None else duration_us * 1e-6
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
        "energy_j": {name: energy(ops, model, duration_s).total_j for name, model in presets.items()},
        "labelled": int(known.sum()),
        "notes": list(result.notes),
    }




def _weighted(values: list[float], weights: list[int]) -> float:
    return float(np.dot(values, weights) / max(sum(weights), 1))


def merge_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several batches' summaries: per-sample figures averaged by batch size
    (spikes, operations and energy are sums over samples, so this is exact), accuracy over the
    labelled samples, predictions concatenated, notes united."""
    first, sizes = parts[0], [part["samples"] for part in parts]
    labelled = [part["labelled"] for part in parts]
    accuracies = [part["accuracy"] or 0.0 for part in parts]
    return {
        **first,
        "samples": sum(sizes),
        "labelled": sum(labelled),
        "accuracy": _weighted(accuracies, labelled) if sum(labelled) else None,
        "predictions": [p for part in parts for p in part["predictions"]],
        "spikes_per_sample": {
            name: _weighted([part["spikes_per_sample"][name] for part in parts], sizes)
            for name in first["spikes_per_sample"]
        },
        "layers": [
            {
                key: value if key == "name" else _weighted([part["layers"][i][key] for part in parts], sizes)
                for key, value in layer.items()
            }
            for i, layer in enumerate(first["layers"])
        ],
        "energy_j": {
            name: _weighted([part["energy_j"][name] for part in parts], sizes) for name in first["energy_j"]
        },
        "notes": sorted({note for part in parts for note in part["notes"]}),
    }
