"""The plain-data summary of a simulation that ``asa-snn simulate`` prints and writes.

Beside the per-layer counts, energy and accuracy, a summary holds the network's NASFR
(:func:`graph_nasfr`) and NeuroBench's metrics under their names (``neurobench``:
:func:`~asa_snn.energy.neurobench.neurobench_metrics` of the same operation counts, the definitions
and their differences from the ``neurobench`` package in :mod:`asa_snn.energy.neurobench`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from asa_snn.convert.graph import FoldedGraph
from asa_snn.energy.model import EnergyModel, LayerOps, energy, mac_ops, neuron_updates, synaptic_ops
from asa_snn.energy.neurobench import merge_batches, neurobench_metrics
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
    updates and energy per preset (joules per inference), NASFR and NeuroBench's metrics, accuracy
    where labels are known, notes."""
    ops = graph_layer_ops(graph, result, batch.frames)
    samples = len(batch.frames)
    spikes = {name: float(c.sum()) / samples for name, c in result.spike_counts.items()}
    duration_us = graph.input.duration_us
    duration_s = None if duration_us is None else duration_us * 1e-6
    predictions = result.predictions(graph.vote)
    confusion = confusion_matrix(batch.labels, predictions, graph.num_classes)
    return {
        "backend": result.backend,
        "samples": samples,
        "timesteps": int(batch.frames.shape[1]),
        **label_figures(confusion),
        "predictions": predictions.tolist(),
        "spikes_per_sample": spikes,
        "nasfr": graph_nasfr(graph, spikes, int(batch.frames.shape[1])),
        "neurobench": graph_neurobench(graph, ops),
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
        "notes": list(result.notes),
    }


def graph_nasfr(graph: FoldedGraph, spikes_per_sample: Mapping[str, float], steps: int) -> float | None:
    """NASFR = spikes / (neurons x T) per sample over every spiking layer of ``graph``, output
    included: the released code's form, equal to the paper's Definition 1 (mean over steps of the
    fraction of neurons that fire) for binary spikes; None without a spiking layer."""
    layers = graph.spiking_layers()
    neurons = sum(int(np.prod(layer.output_shape)) for layer in layers)
    if not neurons:
        return None
    return float(sum(spikes_per_sample.get(layer.name, 0.0) for layer in layers) / (neurons * steps))


def graph_neurobench(graph: FoldedGraph, ops: list[LayerOps]) -> dict[str, Any]:
    """NeuroBench's metrics (:func:`~asa_snn.energy.neurobench.neurobench_metrics`) of ``graph``'s
    operation counts ``ops``: footprint over every array of the graph in its stored dtype (neuron
    parameters held as numbers in graph.json are not arrays and not counted), connection sparsity
    over the conv / linear weights."""
    weights = [layer.tensors["weight"] for layer in graph.layers if layer.op in ("conv2d", "linear")]
    arrays = [array for layer in graph.layers for array in layer.tensors.values()]
    return neurobench_metrics(ops, weights, arrays)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of the labelled samples (label >= 0; -1 is unknown), int64 [K, K]: entry [i, j] is the
    number of samples of class i predicted as class j (rows true, columns predicted).

    Raises:
        ValueError: a label or prediction outside ``0 .. num_classes - 1`` (other than label -1).
    """
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    known = labels >= 0
    for name, values in (("label", labels[known]), ("prediction", predictions[known])):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name}s must lie in 0..{num_classes - 1}, found {values.min()}..{values.max()}"
            )
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels[known], predictions[known]), 1)
    return matrix


def label_figures(confusion: np.ndarray) -> dict[str, Any]:
    """What a confusion matrix [K, K] (rows true, columns predicted) says, as plain data.

    ``labelled`` = n = sum of all entries; ``accuracy`` = trace / n; ``per_class_accuracy`` =
    {str(k): C[k, k] / sum_j C[k, j]}, None for a class with no labelled sample; ``confusion`` the
    counts as lists. With no labelled sample the three figures are None (labels unknown).
    Integer counts in, so figures merged from batches (:func:`merge_summaries`) equal those of one
    batch exactly.
    """
    confusion = np.asarray(confusion, np.int64)
    labelled = int(confusion.sum())
    if not labelled:
        return {"accuracy": None, "per_class_accuracy": None, "confusion": None, "labelled": 0}
    rows = confusion.sum(axis=1)
    return {
        "accuracy": float(np.trace(confusion) / labelled),
        "per_class_accuracy": {
            str(k): float(confusion[k, k] / rows[k]) if rows[k] else None for k in range(len(confusion))
        },
        "confusion": confusion.tolist(),
        "labelled": labelled,
    }


def per_class_text(per_class: Mapping[str, float | None], classes: list[str] | None = None) -> str:
    """One line of per-class accuracy: ``<class> <accuracy>`` pairs, ``-`` for a class with no
    labelled recording; ``classes`` names class k where given."""
    names = classes or list(per_class)
    return ", ".join(
        f"{names[k]} {'-' if value is None else f'{value:.3f}'}" for k, value in enumerate(per_class.values())
    )


def summary_confusion(summary: Mapping[str, Any], num_classes: int) -> np.ndarray:
    """The confusion counts int64 [K, K] of a summary (zeros where its labels are unknown)."""
    if summary.get("confusion") is None:
        return np.zeros((num_classes, num_classes), np.int64)
    return np.asarray(summary["confusion"], np.int64)


def _weighted(values: list[float], weights: list[int]) -> float:
    return float(np.dot(values, weights) / max(sum(weights), 1))


def _network_figures(parts: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """NASFR and NeuroBench's metrics of several batches (weighted by batch size; only the keys the
    summaries hold, so hand-made summaries without them merge too)."""
    first, found = parts[0], {}
    if "nasfr" in first:
        rates = [part["nasfr"] for part in parts]
        found["nasfr"] = None if None in rates else _weighted(rates, sizes)
    if "neurobench" in first:
        found["neurobench"] = merge_batches([part["neurobench"] for part in parts], sizes)
    return found


def merge_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several batches' summaries: per-sample figures averaged by batch size
    (spikes, operations and energy are sums over samples, so this is exact), the confusion counts
    summed and accuracy, per-class accuracy and ``labelled`` computed from them (exact), NASFR and
    NeuroBench's workload metrics averaged by batch size (exact, per-sample figures), predictions
    concatenated, notes united."""
    first, sizes = parts[0], [part["samples"] for part in parts]
    classes = max((len(part["confusion"]) for part in parts if part.get("confusion") is not None), default=0)
    confusion = sum(
        (summary_confusion(part, classes) for part in parts), np.zeros((classes, classes), np.int64)
    )
    return {
        **first,
        "samples": sum(sizes),
        **label_figures(confusion),
        "predictions": [p for part in parts for p in part["predictions"]],
        **_network_figures(parts, sizes),
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
