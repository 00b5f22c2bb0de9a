"""Norse backend through NIR: agreement where Norse's IF is our iaf, notes where it is not, install hint."""

import importlib.util

import numpy as np
import pytest

import asa_snn.simulators.norse_backend as norse_backend
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, NeuronSpec
from asa_snn.errors import MissingDependencyError
from asa_snn.simulators.norse_backend import NorseBackend

HAS_NORSE = importlib.util.find_spec("norse") is not None
needs_norse = pytest.mark.skipif(
    not HAS_NORSE, reason='norse not installed: pip install -c constraints.txt "asa-snn[norse]"'
)
CONV = {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]}


def graph_with(neurons) -> FoldedGraph:
    """Float graph, integer weights: conv(2->4) -> sumpool2 -> flatten -> linear(64->3)."""
    rng = np.random.default_rng(5)
    n0, n1 = neurons
    layers = [
        Layer("c0", "conv2d", CONV, (4, 8, 8), {"weight": rng.integers(-20, 40, (4, 2, 3, 3)).astype(float),
              "bias": np.array([2.0, -3, 0, 1])}, n0),
        Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (4, 4, 4)),
        Layer("flat", "flatten", {}, (64,)),
        Layer("fc", "linear", {}, (3,), {"weight": rng.integers(-10, 30, (3, 64)).astype(float)}, n1),
    ]  # fmt: skip
    return FoldedGraph(layers, InputSpec((2, 8, 8), (8, 8, 2), n_steps=10), 3)


def frames():
    return np.random.default_rng(2).poisson(0.7, (2, 10, 2, 8, 8)).astype(np.float64)


@needs_norse
def test_zero_reset_iaf_identical_to_speck_simulator():
    graph = graph_with([NeuronSpec("iaf", 60.5, "zero"), NeuronSpec("iaf", 80.5, "zero")])
    x = frames()
    ours = NorseBackend().run(graph, x, record=True)
    reference = SpeckSimulator().run(graph, x, record=True)
    for layer in ("c0", "fc"):
        np.testing.assert_array_equal(ours.spike_trains[layer], reference.spike_trains[layer], err_msg=layer)
        np.testing.assert_array_equal(ours.spike_maps[layer], reference.spike_maps[layer], err_msg=layer)
        assert reference.spike_counts[layer].sum() > 10
    np.testing.assert_array_equal(ours.outputs, reference.outputs)
    assert ours.backend == "norse" and "dt = 0.001 s" in ours.notes[0]


@needs_norse
def test_differences_are_noted_and_real():
    graph = graph_with([NeuronSpec("iaf", 60.0, "subtract", -60.0, True), NeuronSpec("iaf", 80.5, "zero")])
    x = frames()
    ours = NorseBackend().run(graph, x)
    notes = " | ".join(ours.notes)
    assert "'c0': reset 'subtract'" in notes and "'c0': min_v -60.0" in notes and "'c0': multi-spike" in notes
    assert "'fc': reset" not in notes
    reference = SpeckSimulator().run(graph, x)
    assert not np.array_equal(ours.spike_counts["c0"], reference.spike_counts["c0"])


def test_missing_norse_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        norse_backend.importlib.util, "find_spec", lambda name: None if name == "norse" else real(name)
    )
    backend = NorseBackend()
    reason = backend.unavailable_reason()
    assert 'pip install -c constraints.txt "asa-snn[norse]"' in reason and "torchvision 0.28.0" in reason
    with pytest.raises(MissingDependencyError, match="asa-snn\\[norse\\]"):
        backend.run(graph_with([NeuronSpec("iaf", 1.0), NeuronSpec("iaf", 1.0)]), frames())
