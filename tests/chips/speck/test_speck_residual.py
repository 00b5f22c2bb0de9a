"""Residual graphs on Speck: the graph's typed ``add`` (saved, loaded, validated), the built-in
simulator against sinabs spike for spike, and the export sinabs' own ``DynapcnnNetwork`` builds
(two destinations, a merge).

The DynapcnnNetwork test runs offline through :mod:`offline_sinabs_network` (see there).
"""

import json
from dataclasses import replace

import numpy as np
import pytest
from offline_sinabs_network import dynapcnn_run

from asa_snn.chips.speck.event_driven import EventDriven
from asa_snn.chips.speck.mapping import check_speck
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.chips.speck.sinabs_backend import SinabsBackend
from asa_snn.chips.speck.sinabs_export import SinabsGraph, to_sinabs
from asa_snn.convert.graph import (
    FoldedGraph,
    InputSpec,
    Layer,
    LayerQuant,
    NeuronSpec,
    load_graph,
    save_graph,
)
from asa_snn.convert.graph_check import check_graph
from asa_snn.convert.layer_attrs import NoAttrs
from asa_snn.errors import AsaSnnError, InputFormatError

QUANT = LayerQuant(scale=1.0, weight_bits=8, state_bits=16)


def _conv(name, c_in, c_out, hw, rng, threshold, inputs=(), kernel=3, padding=1, bias=False):
    tensors = {"weight": rng.integers(-40, 50, (c_out, c_in, kernel, kernel)).astype(np.int8)}
    if bias:
        tensors["bias"] = rng.integers(-5, 6, c_out).astype(np.int16)
    attrs = {"kernel_size": [kernel, kernel], "stride": [1, 1], "padding": [padding, padding]}
    neuron = NeuronSpec("iaf", float(threshold), "subtract", -float(threshold))
    return Layer(name, "conv2d", attrs, (c_out, *hw), tensors, neuron, inputs, QUANT)


def residual_graph(seed=0, n_steps=6) -> FoldedGraph:
    """stem (2->4, 16x16) -> pool 2 -> a -> b; add(b, pool) -> head (conv 4->3 over the 8x8 map).

    The pooled stem sends to ``a`` and, through the add, to ``head``: two destinations and a merge.
    """
    rng = np.random.default_rng(seed)
    layers = [
        _conv("stem", 2, 4, (16, 16), rng, 150, bias=True),
        Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (4, 8, 8)),
        _conv("a", 4, 4, (8, 8), rng, 120),
        _conv("b", 4, 4, (8, 8), rng, 120),
        Layer("join", "add", {}, (4, 8, 8), inputs=("b", "pool")),
        _conv("head", 4, 3, (1, 1), rng, 3000, kernel=8, padding=0),
    ]
    spec = InputSpec((2, 16, 16), (16, 16, 2), n_steps=n_steps)
    return FoldedGraph(layers, spec, 3, "speck", quantized=True)


def _frames(graph, batch=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.poisson(0.6, (batch, graph.input.n_steps, *graph.input.shape)).astype(np.float64)


def test_add_round_trips_typed_with_its_inputs(tmp_path):
    graph = residual_graph()
    loaded = load_graph(save_graph(graph, tmp_path / "g"))
    join = loaded.layer("join")
    assert join.op == "add" and isinstance(join.attrs, NoAttrs)
    assert join.inputs == ("b", "pool") and join.neuron is None and join.tensors == {}
    assert join.output_shape == (4, 8, 8)
    document = json.loads((tmp_path / "g" / "graph.json").read_text())
    entry = next(layer for layer in document["layers"] if layer["name"] == "join")
    assert entry["inputs"] == ["b", "pool"] and entry["attrs"] == {}
    for original, back in zip(graph.layers, loaded.layers, strict=True):
        for key, value in original.tensors.items():
            np.testing.assert_array_equal(value, back.tensors[key])


def test_an_add_with_a_neuron_or_tensors_is_refused_by_name():
    graph = residual_graph()
    graph.layers[4] = replace(graph.layers[4], neuron=graph.layer("a").neuron)
    with pytest.raises(InputFormatError, match=r"'join': an add sums its inputs only"):
        check_graph(graph)
    graph = residual_graph()
    graph.layers[4].tensors["weight"] = np.ones(4)
    with pytest.raises(InputFormatError, match=r"'join': an add sums its inputs only"):
        check_graph(graph)


def test_an_add_of_two_shapes_or_one_input_is_refused_by_name():
    graph = residual_graph()
    graph.layers[4] = replace(graph.layers[4], inputs=("b", "stem"))
    with pytest.raises(InputFormatError, match=r"'join': add needs two inputs of one shape"):
        check_graph(graph)
    graph = residual_graph()
    graph.layers[4] = replace(graph.layers[4], inputs=("b",))
    with pytest.raises(InputFormatError, match=r"'join': add needs two inputs"):
        check_graph(graph)


def test_residual_graph_maps_onto_four_cores():
    report = check_speck(residual_graph())
    assert report.ok, report.violations
    assert [(r.layer, r.destinations, r.sources) for r in report.rows] == [
        ("stem", 2, ()),
        ("a", 1, ("stem",)),
        ("b", 1, ("a",)),
        ("head", 0, ("stem", "b")),
    ]


def test_simulator_equals_sinabs_spike_for_spike_on_a_residual_graph():
    graph = residual_graph()
    frames = _frames(graph)
    ours = SpeckSimulator().run(graph, frames, record=True)
    theirs = SinabsBackend().run(graph, frames, record=True)
    assert set(ours.spike_trains) == {"stem", "a", "b", "head"}
    for name, train in ours.spike_trains.items():
        np.testing.assert_array_equal(train, theirs.spike_trains[name], err_msg=name)
    assert all(ours.spike_counts[name].sum() > 0 for name in ours.spike_counts), {
        k: v.sum() for k, v in ours.spike_counts.items()
    }


def test_the_merge_sums_both_operands():
    """With ``b`` silenced, ``head`` sees only the pooled stem; with the add it sees both: the head
    spikes differ, so the skip path really reaches it."""
    graph = residual_graph()
    frames = _frames(graph)
    full = SpeckSimulator().run(graph, frames, record=True)
    silent = residual_graph()
    silent.layer("b").tensors["weight"] = np.zeros_like(silent.layer("b").tensors["weight"])
    cut = SpeckSimulator().run(silent, frames, record=True)
    assert cut.spike_counts["b"].sum() == 0
    assert not np.array_equal(full.spike_trains["head"], cut.spike_trains["head"])
    np.testing.assert_array_equal(full.spike_trains["stem"], cut.spike_trains["stem"])


def test_export_is_a_graph_module_with_a_merge():
    import sinabs.layers as sl

    model = to_sinabs(residual_graph())
    assert isinstance(model, SinabsGraph)
    assert isinstance(model.join, sl.Merge)
    assert [step[0] for step in model.plan] == ["stem", "pool", "a", "b", "join", "head"]
    assert model.plan[4] == ("join", ("join",), ("b", "pool"))


def test_event_driven_mode_refuses_residual_graphs_by_name():
    graph = residual_graph()
    with pytest.raises(AsaSnnError, match=r"'join'.*time-stepped"):
        SpeckSimulator(mode=EventDriven()).run(graph, _frames(graph))


def test_dynapcnn_network_builds_from_the_export_and_simulates_the_same_spikes(tmp_path):
    graph = residual_graph()
    frames = _frames(graph, batch=2)
    found = dynapcnn_run(graph, frames, tmp_path)
    assert found["destinations"] == {"stem": ["a", "head"], "a": ["b"], "b": ["head"], "head": ["exit"]}
    rows = {r.layer: [r.kernel_words, r.neuron_words] for r in check_speck(graph).rows}
    assert found["memory"] == rows
    assert found["order"] == list(rows)  # sinabs' layer indices follow the graph's core rows
    ours = SpeckSimulator().run(graph, frames).outputs
    np.testing.assert_array_equal(np.asarray(found["output"]), ours)
    assert ours.sum() > 0
