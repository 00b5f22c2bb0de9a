"""NeuroBench's metrics from operation counts, on hand-computed examples (the cross-check against the
neurobench package itself is tests/analysis/test_neurobench_crosscheck.py)."""

import numpy as np
import pytest

from asa_snn.energy.model import LayerOps
from asa_snn.energy.neurobench import (
    activation_sparsity,
    connection_sparsity,
    footprint,
    membrane_updates,
    merge_batches,
    neurobench_metrics,
    synaptic_operations,
)
from asa_snn.errors import AsaSnnError

# the first layer sees real-valued frames (MACs), the second spikes (ACs); T = 2
FIRST = LayerOps(
    "conv",
    "conv",
    flops=100,
    input_size=10,
    input_events=5,
    input_is_spiking=False,
    timesteps=2,
    neurons=3,
    active_neuron_steps=2,
)
SECOND = LayerOps(
    "fc",
    "linear",
    flops=50,
    input_size=10,
    input_events=4,
    timesteps=2,
    neurons=5,
    event_fanout_sum=17,
    active_neuron_steps=1,
)
ATTENTION = LayerOps("att", "attention", timesteps=2, attention_macs=30)


def test_synaptic_operations_by_hand():
    ops = synaptic_operations([FIRST, SECOND, ATTENTION])
    # MACs: T * FLOPs of the real-valued layer + attention; ACs: the boundary-exact count;
    # Dense: every synapse at every step, + attention
    assert ops == {"Effective_MACs": 2 * 100 + 30, "Effective_ACs": 17, "Dense": 2 * 100 + 2 * 50 + 30}
    assert list(ops) == ["Effective_MACs", "Effective_ACs", "Dense"]  # NeuroBench's keys and order
    without_map = LayerOps("fc", "linear", flops=50, input_size=10, input_events=4, timesteps=2)
    assert synaptic_operations([without_map])["Effective_ACs"] == 4 * 50 / 10  # mean fan-out


def test_neuron_metrics_by_hand():
    # neuron-steps: 3 x 2 + 5 x 2 = 16, of which 2 + 1 carry a spike
    assert activation_sparsity([FIRST, SECOND, ATTENTION]) == pytest.approx(1 - 3 / 16)
    assert membrane_updates([FIRST, SECOND, ATTENTION]) == 16
    assert activation_sparsity([ATTENTION]) is None and membrane_updates([ATTENTION]) == 0
    # a multi-spike layer whose spike count (what the simulators know) exceeds its neuron-steps
    # counts every neuron-step as active: 4 of 4, sparsity 0 there
    busy = LayerOps("x", "linear", timesteps=2, neurons=2, active_neuron_steps=7)
    assert activation_sparsity([busy]) == 0.0
    assert activation_sparsity([busy, SECOND]) == pytest.approx(1 - (4 + 1) / (4 + 10))


def test_static_metrics_by_hand():
    weights = [np.array([[0, 1], [2, 0]], np.int8), np.array([0.5, 0.0, 0.0, 1.0], np.float32)]
    assert connection_sparsity(weights) == 4 / 8
    assert connection_sparsity([]) is None
    # bytes as stored: 4 x 1 (int8) + 4 x 4 (float32) + 3 x 8 (float64)
    assert footprint([*weights, np.zeros(3)]) == 4 + 16 + 24
    torch = pytest.importorskip("torch")
    assert footprint([torch.zeros(3, dtype=torch.float16), torch.zeros(2, dtype=torch.int64)]) == 6 + 16


def test_one_document_with_neurobench_names():
    document = neurobench_metrics([FIRST, SECOND], [np.ones(4)], [np.ones(4, np.float32)])
    assert list(document) == [
        "footprint",
        "connection_sparsity",
        "activation_sparsity",
        "synaptic_operations",
        "membrane_updates",
    ]
    assert document["footprint"] == 16 and document["connection_sparsity"] == 0.0


def test_batches_merge_exactly():
    """Per-sample metrics of batches of 2 and 1 samples merge to those of the 3 samples together."""
    per_sample = [
        LayerOps(
            "l",
            "linear",
            flops=6,
            input_size=3,
            timesteps=2,
            neurons=2,
            event_fanout_sum=s,
            active_neuron_steps=a,
        )
        for s, a in ((6.0, 1.0), (12.0, 3.0), (0.0, 0.0))
    ]

    def batch(samples):  # LayerOps of a batch: means over its samples
        return LayerOps(
            "l",
            "linear",
            flops=6,
            input_size=3,
            timesteps=2,
            neurons=2,
            event_fanout_sum=float(np.mean([x.event_fanout_sum for x in samples])),
            active_neuron_steps=float(np.mean([x.active_neuron_steps for x in samples])),
        )

    def document(samples):
        return neurobench_metrics([batch(samples)], [np.ones(2)], [np.ones(2)])

    merged = merge_batches([document(per_sample[:2]), document(per_sample[2:])], [2, 1])
    whole = document(per_sample)
    assert merged.keys() == whole.keys()
    assert merged["activation_sparsity"] == pytest.approx(whole["activation_sparsity"]) == 1 - 4 / 12
    assert merged["synaptic_operations"] == pytest.approx(whole["synaptic_operations"])
    assert merged["membrane_updates"] == whole["membrane_updates"] == 4
    assert merged["footprint"] == whole["footprint"]
    with pytest.raises(AsaSnnError, match="merge_batches: need one or more batches"):
        merge_batches([whole], [0])
