"""onnxruntime backend: spike-for-spike agreement with the built-in Speck simulator, result layout."""

from dataclasses import replace

import numpy as np
import pytest
from graph_builders import chain_graph

from asa_snn.chips.registry import get_backend
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.graph import NeuronSpec
from asa_snn.errors import InputFormatError
from asa_snn.simulators.onnx_backend import OnnxBackend


def frames(rate=0.6):
    return np.random.default_rng(3).poisson(rate, (3, 12, 2, 8, 8)).astype(np.float64)


CASES = {
    "subtract-single-minv": [NeuronSpec("iaf", th, "subtract", -th / 2) for th in (150.0, 120.0, 100.0)],
    "zero-single": [NeuronSpec("iaf", th, "zero") for th in (150.0, 120.0, 100.0)],
    "subtract-multi": [NeuronSpec("iaf", th, "subtract", None, True) for th in (150.0, 120.0, 100.0)],
    "zero-multi-minv": [NeuronSpec("iaf", th, "zero", -30.0, True) for th in (150.0, 120.0, 100.0)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_identical_spike_trains_to_speck_simulator(case):
    graph = chain_graph(CASES[case])
    x = frames()
    ours = OnnxBackend().run(graph, x, record=True)
    reference = SpeckSimulator().run(graph, x, record=True)
    for layer in ("c0", "c1", "fc"):
        assert ours.spike_trains[layer].shape == reference.spike_trains[layer].shape
        np.testing.assert_array_equal(ours.spike_trains[layer], reference.spike_trains[layer], err_msg=layer)
        np.testing.assert_array_equal(ours.spike_counts[layer], reference.spike_counts[layer])
        np.testing.assert_array_equal(ours.spike_maps[layer], ours.spike_trains[layer].sum(axis=0))
        np.testing.assert_array_equal(ours.spike_maps[layer], reference.spike_maps[layer])
        assert reference.spike_counts[layer].sum() > 0, f"{layer} silent: the case tests nothing"
    np.testing.assert_array_equal(ours.outputs, reference.outputs)


def test_saturation_matches_speck_simulator():
    # dense input drives membranes into the int16 limit: the ONNX model clips like the chip
    graph = chain_graph([NeuronSpec("iaf", 30000.0), NeuronSpec("iaf", 120.0), NeuronSpec("iaf", 100.0)])
    graph.layers[0].tensors["weight"][:] = 127
    x = frames(rate=4.0)
    ours = OnnxBackend().run(graph, x, record=True)
    reference = SpeckSimulator().run(graph, x, record=True)
    np.testing.assert_array_equal(ours.spike_trains["c0"], reference.spike_trains["c0"])
    unsaturated = SpeckSimulator().run(replace(graph, quantized=False), x, record=True)
    assert not np.array_equal(unsaturated.spike_trains["c0"], reference.spike_trains["c0"])


def test_result_layout_and_lookup():
    backend = get_backend("onnx")
    assert isinstance(backend, OnnxBackend) and backend.unavailable_reason() is None
    result = backend.run(chain_graph(CASES["zero-single"]), frames())
    assert result.backend == "onnx" and result.spike_trains == {}
    assert result.spike_counts["c0"].shape == (3, 12) and result.spike_counts["c0"].dtype == np.int64
    assert result.outputs.shape == (3, 12, 3)
    np.testing.assert_array_equal(result.outputs.sum(axis=2), result.spike_counts["fc"])
    with pytest.raises(InputFormatError, match="C,H,W"):
        backend.run(chain_graph(CASES["zero-single"]), np.zeros((1, 2, 2, 4, 4)))
