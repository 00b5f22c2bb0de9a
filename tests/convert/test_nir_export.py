"""NIR export: node layout, parameters and dt convention, file round trip, sinabs and Norse imports."""

import importlib.util
import itertools
from dataclasses import replace

import nir
import numpy as np
import pytest
import torch
from graph_builders import chain_graph

from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.graph import InputSpec, Layer, NeuronSpec
from asa_snn.convert.nir_export import to_nir, write_nir
from asa_snn.errors import AsaSnnError

HAS_NORSE = importlib.util.find_spec("norse") is not None


def nir_chain_graph(thresholds=(150.0, 120.0, 100.0), reset="subtract", min_v=True, multi=True):
    """The shared float chain graph (``graph_builders.chain_graph``), iaf neurons of one kind, 2 ms steps."""
    neurons = [NeuronSpec("iaf", theta, reset, -theta if min_v else None, multi) for theta in thresholds]
    spec = InputSpec((2, 8, 8), (8, 8, 2), dt_us=2000, n_steps=12)
    return chain_graph(neurons, quantized=False, input_spec=spec)


def frames(batch=3, steps=12):
    return np.random.default_rng(3).poisson(0.6, (batch, steps, 2, 8, 8)).astype(np.float64)


def test_nodes_edges_and_parameters():
    graph = nir_chain_graph()
    ng = to_nir(graph)
    names = ["input", "c0", "c0_neuron", "pool", "c1", "c1_neuron", "flat", "fc", "fc_neuron", "output"]
    assert ng.edges == list(itertools.pairwise(names))
    kinds = {name: type(node).__name__ for name, node in ng.nodes.items()}
    assert kinds == {
        "input": "Input", "c0": "Conv2d", "c0_neuron": "IF", "pool": "SumPool2d", "c1": "Conv2d",
        "c1_neuron": "IF", "flat": "Flatten", "fc": "Affine", "fc_neuron": "IF", "output": "Output",
    }  # fmt: skip
    # thresholds per neuron, of the layer's output shape; r = 1
    assert ng.nodes["c0_neuron"].v_threshold.shape == (4, 8, 8)
    assert np.all(ng.nodes["c0_neuron"].v_threshold == 150.0) and np.all(ng.nodes["c0_neuron"].r == 1.0)
    assert ng.nodes["fc_neuron"].v_threshold.shape == (3,)
    # missing biases become zeros (sinabs imports Affine / Conv2d with a bias only)
    np.testing.assert_array_equal(ng.nodes["c1"].bias, np.zeros(4))
    np.testing.assert_array_equal(ng.nodes["fc"].bias, np.zeros(3))
    np.testing.assert_array_equal(ng.nodes["c0"].bias, [3, -4, 0, 5])
    assert tuple(ng.nodes["c0"].padding) == (1, 1) and list(ng.nodes["pool"].stride) == [2, 2]
    assert list(ng.nodes["c0"].output_type["output"]) == [4, 8, 8]
    assert ng.nodes["flat"].start_dim == 0 and list(ng.nodes["flat"].output_type["output"]) == [64]
    # dt in seconds and what NIR cannot express, in metadata
    assert ng.metadata["dt"] == pytest.approx(2e-3) and ng.metadata["n_steps"] == 12
    assert ng.nodes["c1_neuron"].metadata == {
        "kind": "iaf", "reset": "subtract", "multi_spike": 1, "threshold": 120.0, "min_v": -120.0,
    }  # fmt: skip


def test_time_constants_follow_the_euler_convention():
    graph = nir_chain_graph()
    fc = graph.layers[-1]
    cuba = replace(
        graph,
        layers=[*graph.layers[:-1], replace(fc, neuron=NeuronSpec("cuba", 9.0, "zero", du=0.25, dv=0.5))],
    )
    node = to_nir(cuba).nodes["fc_neuron"]
    assert isinstance(node, nir.CubaLIF)
    # dt / tau_syn = du, w_in = 1 / du; dt / tau_mem = dv, r = 1 / dv (dt = 2 ms)
    np.testing.assert_allclose(node.tau_syn, 2e-3 / 0.25)
    np.testing.assert_allclose(node.tau_mem, 2e-3 / 0.5)
    np.testing.assert_allclose(node.w_in, 4.0)
    np.testing.assert_allclose(node.r, 2.0)
    lif = replace(
        graph, layers=[*graph.layers[:-1], replace(fc, neuron=NeuronSpec("lif", 1.0, "zero", decay=0.75))]
    )
    node = to_nir(lif).nodes["fc_neuron"]
    # Euler: v + dt / tau (-v + r I) = 0.75 v + I
    np.testing.assert_allclose(node.tau, 2e-3 / 0.25)
    np.testing.assert_allclose(node.r, 4.0)
    bad = replace(
        graph, layers=[*graph.layers[:-1], replace(fc, neuron=NeuronSpec("cuba", 9.0, du=None, dv=0.5))]
    )
    with pytest.raises(AsaSnnError, match="'fc': neuron du is None"):
        to_nir(bad)


def test_residual_add_is_refused_with_the_layer_name():
    graph = nir_chain_graph()
    graph.layers.append(Layer("join", "add", {}, (3,), inputs=("fc", "fc")))
    with pytest.raises(AsaSnnError, match="'join'"):
        to_nir(graph)


def test_file_round_trip_is_atomic(tmp_path):
    path = tmp_path / "net.nir"
    path.write_text("old")
    assert write_nir(nir_chain_graph(), path) == path
    assert [p.name for p in tmp_path.iterdir()] == ["net.nir"]  # no staging file left over
    loaded = nir.read(path)
    original = to_nir(nir_chain_graph())
    assert set(loaded.nodes) == set(original.nodes) and loaded.edges == original.edges
    np.testing.assert_array_equal(loaded.nodes["c1"].weight, original.nodes["c1"].weight)
    np.testing.assert_array_equal(
        loaded.nodes["fc_neuron"].v_threshold, original.nodes["fc_neuron"].v_threshold
    )
    assert float(loaded.metadata["dt"]) == pytest.approx(2e-3)
    assert loaded.nodes["c0_neuron"].metadata["reset"] == "subtract"


def _sinabs_run(nir_graph, x):
    import sinabs

    B, T = x.shape[:2]
    model = sinabs.from_nir(nir_graph, batch_size=B)
    out, _ = model(torch.from_numpy(x.astype(np.float32)).flatten(0, 1))
    return out.detach().reshape(B, T, -1).numpy()


def test_sinabs_from_nir_reproduces_the_speck_simulator(tmp_path):
    # sinabs imports IF as IAFSqueeze(MultiSpike, MembraneSubtract, min_v_mem = -theta): exact for that neuron
    graph = nir_chain_graph(reset="subtract", min_v=True, multi=True)
    x = frames()
    reference = SpeckSimulator().run(graph, x)
    out = _sinabs_run(nir.read(write_nir(graph, tmp_path / "net.nir")), x)
    np.testing.assert_array_equal(out, reference.outputs)
    assert reference.outputs.sum() > 100 and reference.outputs.max() > 1  # multi-spike output was exercised
    # a single-spike graph is not what sinabs' importer builds: the spikes differ (documented)
    single = SpeckSimulator().run(nir_chain_graph(multi=False), x)
    assert not np.array_equal(_sinabs_run(to_nir(nir_chain_graph(multi=False)), x), single.outputs)


@pytest.mark.skipif(
    not HAS_NORSE, reason='norse not installed: pip install -c constraints.txt "asa-snn[norse]"'
)
def test_norse_from_nir_reproduces_zero_reset_iaf(tmp_path):
    import norse.torch

    # Norse's IF: v += I, spike on v > theta, reset to 0, no floor;
    # half-integer thresholds keep > and >= equal
    graph = nir_chain_graph(thresholds=(150.5, 120.5, 100.5), reset="zero", min_v=False, multi=False)
    x = frames()
    reference = SpeckSimulator().run(graph, x)
    model = norse.torch.from_nir(nir.read(write_nir(graph, tmp_path / "net.nir")))
    out = np.zeros(reference.outputs.shape)
    with torch.no_grad():
        for b in range(x.shape[0]):
            state = None
            for t in range(x.shape[1]):  # one sample at a time: Norse's Flatten keeps NIR's start_dim 0
                spikes, state = model(torch.from_numpy(x[b, t].astype(np.float32)), state)
                out[b, t] = spikes.numpy()
    np.testing.assert_array_equal(out, reference.outputs)
    assert reference.outputs.sum() > 50
