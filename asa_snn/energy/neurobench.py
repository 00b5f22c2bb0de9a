"""NeuroBench's metrics (neurobench 2.3, ``neurobench.metrics``) from our operation counts (NumPy only).

One definition for both sides: the training-side analysis (:mod:`asa_snn.analysis.report`, from
:func:`asa_snn.analysis.operations.model_layer_ops`) and the chip-side simulation summary
(:mod:`asa_snn.simulators.summary`, from :func:`asa_snn.simulators.operations.graph_layer_ops`)
call :func:`neurobench_metrics` on their :class:`~asa_snn.energy.model.LayerOps` and weights.
Keys are NeuroBench's metric names (its classes ``Footprint``, ``ConnectionSparsity``,
``ActivationSparsity``, ``SynapticOperations``, ``MembraneUpdates``)::

    footprint            = sum over parameter (and buffer) arrays of elements * bytes per element  [bytes]
    connection_sparsity  = zero weights / weights, over every conv and linear weight (biases not counted)
    activation_sparsity  = 1 - sum_l A_l / sum_l N_l T,   A_l = neuron-steps with a spike (per sample),
                           over every spiking layer l of N_l neurons, T steps
    synaptic_operations  = per sample, over the T steps:
        Effective_ACs    = sum over spiking-input layers of SOP_l      (events * fan-out, model.py)
        Effective_MACs   = sum over real-valued-input layers of T * FLOPs_l, + attention MACs
        Dense            = sum over conv / linear layers of T * FLOPs_l, + attention MACs
    membrane_updates     = sum_l N_l T   (per sample)

NeuroBench evaluates the same quantities by hooks on a torch model (``Effective_*``: the layer run
again on its binarized input with binarized weights; ``Dense``: on all-ones input and weights).
Where its numbers differ from ours, and why (``tests/analysis/test_neurobench_crosscheck.py`` runs
the ``neurobench`` package on the same model and data: equal where none of these applies, apart by
the stated amount under 1, 4, 6 and 8; 2, 3, 5 and 7 are read from neurobench's code):

1. Zero weights: NeuroBench's effective operations skip a synapse whose weight is 0; ours count
   every synapse (a chip that stores the zero does the work). Equal for a dense network
   (``connection_sparsity`` = 0); otherwise NeuroBench's are lower.
2. Spiking or not: NeuroBench calls a layer's input spikes (ACs) when every value lies in
   {-1, 0, 1}, counts each non-zero input once and otherwise counts MACs. We call an input spikes
   when it is a count of events (:mod:`asa_snn.energy.model`, difference 1): a sum-pooled or
   multi-spike input of n counts n ACs, where NeuroBench counts MACs. The network's first layer is
   a MAC layer in the analysis (real-valued frames) and an AC layer on a chip (it receives the
   events); NeuroBench decides from the values (binary event frames: ACs).
3. Effective_MACs: NeuroBench counts the MACs of non-zero inputs only; ours are dense, T * FLOPs
   (a real-valued input has few zeros).
4. Dense and padding: ``FLOPs`` counts the synapses of a conv's zero padding; NeuroBench's dense
   count (all-ones input) does not. Equal for unpadded convs; per padded conv NeuroBench's Dense is
   lower by T * (FLOPs - sum of the fan-out map, :func:`asa_snn.energy.synapses.fanout_map`). Our
   Effective_ACs are boundary-exact and agree with NeuroBench's on padded convs too.
5. Attention: ours follow the attention modules' ``extra_macs`` rule; NeuroBench counts the conv /
   linear layers inside an attention module as any other layer and not its element-wise products.
6. Membrane updates: NeuroBench counts, per snnTorch neuron and step after the first, only the
   membranes whose value changed (and every membrane at the first step); ours are every neuron at
   every step, the work of a time-stepped chip. Equal when every membrane moves at every step
   (leaky neurons); NeuroBench counts no neuron that is not an snnTorch layer.
7. Activation sparsity: ``A_l`` is the neuron-steps with at least one spike, as NeuroBench's
   non-zero outputs (exact in the analysis). The simulators know only spike counts, so there a step
   of n spikes counts n, capped at the layer's N_l T neuron-steps: exact for binary spikes (then
   activation sparsity = 1 - NASFR), an upper bound on A_l, so a lower bound on the sparsity, for
   multi-spike neurons (Speck's IAF fires several spikes in one step when its input allows).
8. Rounding: NeuroBench rounds connection sparsity to 4 decimals; we do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from asa_snn.energy.model import LayerOps, mac_ops, neuron_updates, synaptic_ops
from asa_snn.errors import AsaSnnError

NEUROBENCH_VERSION = "2.3.0"
"""The ``neurobench`` release whose definitions this module follows (and its test checks against)."""

STATIC = ("footprint", "connection_sparsity")
"""Metrics of the model alone (the same for every batch)."""

WORKLOAD = ("activation_sparsity", "membrane_updates")
"""Scalar metrics of a run, per sample (``synaptic_operations`` is a workload metric too, a dict)."""

SYNOPS_KEYS = ("Effective_MACs", "Effective_ACs", "Dense")
"""The three counts of NeuroBench's ``synaptic_operations``, in NeuroBench's order."""


class Sized(Protocol):
    """An array with its size in bytes (NumPy arrays and torch tensors both have ``nbytes``)."""

    @property
    def nbytes(self) -> int: ...


def footprint(arrays: Iterable[Sized]) -> int:
    """Bytes of ``arrays`` (elements * bytes per element, summed): NeuroBench's ``footprint``."""
    return int(sum(int(array.nbytes) for array in arrays))


def connection_sparsity(weights: Iterable[Any]) -> float | None:
    """Zero weights / weights over every array of ``weights`` (array-likes); None without a weight."""
    zeros = total = 0
    for weight in weights:
        values = np.asarray(weight)
        total += values.size
        zeros += values.size - int(np.count_nonzero(values))
    return zeros / total if total else None


def activation_sparsity(layers: Sequence[LayerOps]) -> float | None:
    """1 - sum(active neuron-steps) / sum(neurons * T) over the layers that drive neurons, a layer's
    active neuron-steps capped at its neuron-steps (module docstring, difference 7); None without
    a neuron."""
    driving = [layer for layer in layers if layer.neurons]
    slots = sum(neuron_updates(layer) for layer in driving)
    if not slots:
        return None
    active = sum(min(layer.active_neuron_steps, neuron_updates(layer)) for layer in driving)
    return 1.0 - active / slots


def dense_ops(layer: LayerOps) -> float:
    """Every synapse at every step, and attention MACs: ``T * FLOPs + attention_macs``."""
    return float(layer.timesteps * layer.flops + layer.attention_macs)


def synaptic_operations(layers: Sequence[LayerOps]) -> dict[str, float]:
    """NeuroBench's ``synaptic_operations`` per sample: ``Effective_MACs`` (:func:`mac_ops`),
    ``Effective_ACs`` (:func:`synaptic_ops`) and ``Dense`` (:func:`dense_ops`), summed over ``layers``."""
    return {
        "Effective_MACs": float(sum(mac_ops(layer) for layer in layers)),
        "Effective_ACs": float(sum(synaptic_ops(layer) for layer in layers)),
        "Dense": float(sum(dense_ops(layer) for layer in layers)),
    }


def membrane_updates(layers: Sequence[LayerOps]) -> float:
    """Membrane updates per sample: sum of ``neurons * T`` (:func:`neuron_updates`)."""
    return float(sum(neuron_updates(layer) for layer in layers))


def neurobench_metrics(
    layers: Sequence[LayerOps], weights: Iterable[Any], parameters: Iterable[Sized]
) -> dict[str, Any]:
    """Every NeuroBench metric under its name (module docstring), plain JSON-safe data.

    Args:
        layers: the model's operation counts, per sample.
        weights: every conv / linear weight (for ``connection_sparsity``).
        parameters: every parameter and buffer array (for ``footprint``).
    """
    return {
        "footprint": footprint(parameters),
        "connection_sparsity": connection_sparsity(weights),
        "activation_sparsity": activation_sparsity(layers),
        "synaptic_operations": synaptic_operations(layers),
        "membrane_updates": membrane_updates(layers),
    }


def merge_batches(parts: Sequence[dict[str, Any]], samples: Sequence[int]) -> dict[str, Any]:
    """One :func:`neurobench_metrics` document of several batches' documents of the same model:
    static metrics from the first, workload metrics averaged weighted by the batches' ``samples``
    (exact: every workload metric is a per-sample mean, and activation sparsity's denominator
    ``neurons * T`` is the same per sample in every batch).

    Raises:
        AsaSnnError: no parts, or ``samples`` of another length or summing to 0.
    """
    if not parts or len(parts) != len(samples) or sum(samples) <= 0:
        raise AsaSnnError(
            f"merge_batches: need one or more batches with samples, got {len(parts)} documents and "
            f"samples {list(samples)}"
        )
    weights = np.asarray(samples, np.float64) / float(sum(samples))

    def mean(values: list[Any]) -> float | None:
        return None if any(v is None for v in values) else float(np.dot(values, weights))

    merged = {key: parts[0][key] for key in STATIC}
    merged |= {key: mean([part[key] for part in parts]) for key in WORKLOAD}
    merged["synaptic_operations"] = {
        key: mean([part["synaptic_operations"][key] for part in parts]) for key in SYNOPS_KEYS
    }
    return {key: merged[key] for key in parts[0]}
