"""Built-in Speck simulator: hand-computed traces, event-driven semantics, agreement with sinabs."""

from dataclasses import replace

import numpy as np
import pytest
from graph_builders import QUANT, chain_graph

from asa_snn.chips.speck.mapping import speck_chain
from asa_snn.chips.speck.simulator import EventDriven, IntegerState, SpeckSimulator, _fan_out, _tensors
from asa_snn.chips.speck.sinabs_backend import SinabsBackend
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, NeuronSpec
from asa_snn.energy.synapses import fanout_map
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.simulators.operations import layer_geometry


def one_neuron(weights, neuron, bias=None, quantized=True) -> FoldedGraph:
    """Input (1, 1, n) -> linear(n -> 1) with the given weights: one neuron to trace by hand."""
    n_in = len(weights)
    tensors = {"weight": np.array(weights, dtype=np.int8 if quantized else np.float64).reshape(1, n_in)}
    if bias is not None:
        tensors["bias"] = np.array([bias], np.int16)
    layers = [
        Layer("flat", "flatten", {}, (n_in,)),
        Layer("out", "linear", {}, (1,), tensors, neuron, quant=QUANT if quantized else None),
    ]
    return FoldedGraph(layers, InputSpec((1, 1, n_in), (n_in, 1, 1), n_steps=6), 1, "speck", quantized)


def trace(graph, counts, mode=None):
    """Spikes per step of the one output neuron for input counts [T] (or [T, n_in])."""
    frames = np.asarray(counts, dtype=np.float64).reshape(1, len(counts), 1, 1, -1)
    simulator = SpeckSimulator() if mode is None else SpeckSimulator(mode=mode)
    return simulator.run(graph, frames).outputs[0, :, 0].tolist()


def test_subtract_and_zero_reset_by_hand():
    # w = 100, theta = 250: v = 100, 200, 300 -> spike, subtract 50 / zero 0, ...
    subtract = one_neuron([100], NeuronSpec("iaf", 250.0, "subtract"))
    zero = one_neuron([100], NeuronSpec("iaf", 250.0, "zero"))
    assert trace(subtract, [1] * 6) == [0, 0, 1, 0, 1, 0]  # v: 100 200 50 150 0 100
    assert trace(zero, [1] * 6) == [0, 0, 1, 0, 0, 1]  # v: 100 200 0 100 200 0


def test_min_v_clamps_after_reset():
    # w = (-100, +100), min_v = -150, theta = 120
    graph = one_neuron([-100, 100], NeuronSpec("iaf", 120.0, "subtract", min_v=-150.0))
    counts = [[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1]]
    assert trace(graph, counts) == [0, 0, 0, 0, 1, 1]  # v: -100 -150 -50 50 150->30 130->10
    unclamped = one_neuron([-100, 100], NeuronSpec("iaf", 120.0, "subtract"))
    assert trace(unclamped, counts) == [0, 0, 0, 0, 0, 1]  # v: -100 -200 -100 0 100 200->80


def test_multi_spike_by_hand():
    # w = 100, 7 events per step, theta = 200: v = 700 -> 3 spikes; subtract leaves 100, zero leaves 0
    subtract = one_neuron([100], NeuronSpec("iaf", 200.0, "subtract", multi_spike=True))
    zero = one_neuron([100], NeuronSpec("iaf", 200.0, "zero", multi_spike=True))
    assert trace(subtract, [7, 7, 0]) == [3, 4, 0]  # 700 -> 100; 800 -> 0
    assert trace(zero, [7, 7, 0]) == [3, 3, 0]


def test_int16_saturation_by_hand():
    # I = 127 * 200 = 25400 per step, theta = 30000. Saturating: 25400, 50800 -> 32767 spike -> 2767,
    # 28167, 53567 -> 32767 spike -> 2767, ... Unsaturated (float): 25400, 50800 spike -> 20800, 46200 ...
    quantized = one_neuron([127], NeuronSpec("iaf", 30000.0, "subtract"))
    floating = one_neuron([127.0], NeuronSpec("iaf", 30000.0, "subtract"), quantized=False)
    assert trace(quantized, [200] * 6) == [0, 1, 0, 1, 0, 1]
    assert trace(floating, [200] * 6) == [0, 1, 1, 1, 1, 1]
    # lower limit: -128 * 200 = -25600 per step saturates at -32768; then +127 * 255 = +32385 per step
    low = one_neuron([-128, 127], NeuronSpec("iaf", 30000.0, "subtract"))
    counts = [[200, 0], [200, 0], [0, 255], [0, 255], [0, 255], [0, 0]]
    # v: -25600, -32768, -383, 32002 -> spike 2002, 34387 -> 32767 spike -> 2767, 2767
    assert trace(low, counts) == [0, 0, 0, 1, 1, 0]


def test_bias_is_added_every_step():
    graph = one_neuron([0], NeuronSpec("iaf", 100.0), bias=60)
    assert trace(graph, [0] * 6) == [0, 1, 0, 1, 1, 0]  # v: 60 120->20 80 140->40 100->0 60
    assert trace(graph, [0] * 6, EventDriven()) == [0, 1, 0, 1, 1, 0]


def test_event_driven_one_spike_per_incoming_event():
    # 3 events of w = 100 at theta = 100 in one step: 3 spikes event-driven, 1 time-stepped (v = 300)
    graph = one_neuron([100], NeuronSpec("iaf", 100.0, "subtract"))
    assert trace(graph, [3, 0]) == [1, 1]  # v: 300 -> 200; 200 -> 100: time-stepped fires every step
    assert trace(graph, [3, 0], EventDriven()) == [3, 0]  # no event in step 2: the neuron is not updated
    # multi-spike is impossible: w = 127, theta = 50
    strong = one_neuron([127], NeuronSpec("iaf", 50.0, "subtract", multi_spike=True))
    assert trace(strong, [1, 0, 1]) == [2, 0, 3]  # time-stepped multi: 127 -> 2, 27; 27; 154 -> 3, 4
    assert trace(strong, [1, 0, 1], EventDriven()) == [1, 0, 1]  # 127 -> 1, 77; -; 204 -> 1, 154


def test_event_driven_order_within_a_step():
    # pixel 0 (w = +120) comes before pixel 1 (w = -100) in raster order: fire, zero reset, then -100
    graph = one_neuron([120, -100], NeuronSpec("iaf", 100.0, "zero"))
    assert trace(graph, [[1, 1], [0, 2]], EventDriven()) == [1, 0]  # v: 120 -> 0, -100; -300
    assert trace(graph, [[1, 1], [0, 2]]) == [0, 0]  # time-stepped: v = 20, then -180


def test_event_driven_passes_spikes_on_within_the_step():
    first = Layer(
        "a",
        "linear",
        {},
        (2,),
        {"weight": np.array([[100], [50]], np.int8)},
        NeuronSpec("iaf", 100.0, "subtract"),
        quant=QUANT,
    )
    second = Layer(
        "b",
        "linear",
        {},
        (1,),
        {"weight": np.array([[60, 60]], np.int8)},
        NeuronSpec("iaf", 100.0),
        quant=QUANT,
    )
    graph = FoldedGraph(
        [Layer("flat", "flatten", {}, (1,)), first, second], InputSpec((1, 1, 1), (1, 1, 1)), 1, "speck", True
    )
    result = SpeckSimulator(mode=EventDriven()).run(graph, np.full((1, 2, 1, 1, 1), 2.0), record=True)
    # step 1: events e1 e2 -> a0 fires twice, a1 once (on e2); b: +60 (a0), +60 -> 120 fire -> 20, +60 -> 80
    np.testing.assert_array_equal(result.spike_trains["a"][:, 0], [[2, 1], [2, 1]])
    assert result.spike_counts["b"].tolist() == [[1, 2]]  # step 2: 80 + 60 -> fire 40, +60 fire 0, +60


# ---------------------------------------------------------------- agreement with sinabs


def frames(batch=3, steps=12):
    return np.random.default_rng(3).poisson(0.6, (batch, steps, 2, 8, 8)).astype(np.float64)


def agree(graph, x):
    """Spike trains of the built-in simulator and sinabs, after checking they are identical."""
    ours = SpeckSimulator().run(graph, x, record=True)
    theirs = SinabsBackend().run(graph, x, record=True)
    as_float = SpeckSimulator().run(replace(graph, quantized=False), x, record=True)
    for layer in ("c0", "c1", "fc"):
        np.testing.assert_array_equal(ours.spike_trains[layer], theirs.spike_trains[layer], err_msg=layer)
        # equal to float64 arithmetic: no membrane reached the int16 limits, so the comparison is fair
        np.testing.assert_array_equal(ours.spike_trains[layer], as_float.spike_trains[layer], err_msg=layer)
        assert ours.spike_counts[layer].sum() > 0, f"{layer} silent: the case tests nothing"
    np.testing.assert_array_equal(ours.outputs, theirs.outputs)
    return ours.spike_trains


CASES = {
    "subtract-single-minv": (
        ("subtract", False, -80.0),
        ("subtract", False, -50.0),
        ("subtract", False, -40.0),
    ),
    "zero-single-nominv": (("zero", False, None), ("zero", False, None), ("zero", False, None)),
    "subtract-multi": (("subtract", True, -80.0), ("subtract", True, None), ("subtract", True, -40.0)),
    "zero-multi-minv": (("zero", True, -30.0), ("zero", True, -50.0), ("zero", False, -10.0)),
}


def neurons(case, thresholds=(150.0, 120.0, 100.0)):
    return [
        NeuronSpec("iaf", th, reset, min_v, multi)
        for th, (reset, multi, min_v) in zip(thresholds, case, strict=True)
    ]


@pytest.mark.parametrize("name", list(CASES))
def test_speck_and_sinabs_identical_layer_by_layer(name):
    trains = agree(chain_graph(neurons(CASES[name])), frames())
    assert trains["c0"].shape == (12, 3, 4, 8, 8) and trains["fc"].shape == (12, 3, 3)
    if "multi" in name:
        assert trains["c1"].max() > 1  # the multi-spike path was taken


@pytest.mark.parametrize(
    "change",
    [
        ("min_v", lambda n: replace(n, min_v=None)),
        ("reset", lambda n: replace(n, reset="zero" if n.reset == "subtract" else "subtract")),
        ("multi_spike", lambda n: replace(n, multi_spike=not n.multi_spike)),
    ],
    ids=lambda c: c[0],
)
def test_agreement_cases_exercise_each_feature(change):
    """Each feature changes the spikes on this input, so the agreement tests would catch a mismatch."""
    base = neurons(CASES["subtract-multi"] if change[0] == "multi_spike" else CASES["subtract-single-minv"])
    x = frames()
    original = agree(chain_graph(base), x)
    changed = agree(chain_graph([change[1](n) for n in base]), x)
    assert any(not np.array_equal(original[k], changed[k]) for k in original)


def test_float_graph_agrees_on_dyadic_values():
    graph = chain_graph(neurons(CASES["subtract-single-minv"]))
    layers = []
    for layer in graph.layers:
        tensors = {k: v.astype(np.float64) / 64.0 for k, v in layer.tensors.items()}
        neuron = layer.neuron and replace(
            layer.neuron,
            threshold=layer.neuron.threshold / 64.0,
            min_v=None if layer.neuron.min_v is None else layer.neuron.min_v / 64.0,
        )
        layers.append(replace(layer, tensors=tensors, neuron=neuron, quant=None))
    floats = replace(graph, layers=layers, quantized=False)
    x = frames()
    ours = SpeckSimulator().run(floats, x, record=True)
    theirs = SinabsBackend().run(floats, x, record=True)
    quantized = SpeckSimulator().run(graph, x, record=True)
    for layer in ("c0", "c1", "fc"):
        np.testing.assert_array_equal(ours.spike_trains[layer], theirs.spike_trains[layer])
        np.testing.assert_array_equal(ours.spike_trains[layer], quantized.spike_trains[layer])


def test_batch_is_vectorised_not_mixed():
    graph = chain_graph(neurons(CASES["zero-multi-minv"]))
    x = frames()
    for mode in (None, EventDriven()):
        sim = SpeckSimulator() if mode is None else SpeckSimulator(mode=mode)
        together = sim.run(graph, x, record=True)
        for b in range(3):
            alone = sim.run(graph, x[b : b + 1], record=True)
            for layer, train in alone.spike_trains.items():
                np.testing.assert_array_equal(together.spike_trains[layer][:, b], train[:, 0])


def test_spike_maps_are_the_trains_summed_over_steps_in_every_mode():
    graph = chain_graph(neurons(CASES["subtract-multi"]))
    x = frames()
    runs = [SpeckSimulator(), SpeckSimulator(mode=EventDriven()), SinabsBackend()]
    results = [backend.run(graph, x, record=True) for backend in runs]
    for result in results:
        assert set(result.spike_maps) == set(result.spike_counts)
        for layer, train in result.spike_trains.items():
            assert result.spike_maps[layer].dtype == np.float64
            np.testing.assert_array_equal(result.spike_maps[layer], train.sum(axis=0), err_msg=layer)
            np.testing.assert_array_equal(
                result.spike_maps[layer].reshape(3, -1).sum(axis=1), result.spike_counts[layer].sum(axis=1)
            )
    time_stepped, event_driven, sinabs = results
    for layer in ("c0", "c1", "fc"):
        np.testing.assert_array_equal(time_stepped.spike_maps[layer], sinabs.spike_maps[layer])
    assert not np.array_equal(time_stepped.spike_maps["c1"], event_driven.spike_maps["c1"])


def test_event_driven_connectivity_reaches_the_shared_fan_out():
    """Each input neuron of the event-driven simulator's target lists reaches exactly the synapses
    that :func:`asa_snn.energy.synapses.fanout_map` counts (strided, padded conv and linear)."""
    conv = {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]}
    iaf, ones = NeuronSpec("iaf", 10.0), np.ones((3, 2, 3, 3), np.int8)
    layers = [
        Layer("c", "conv2d", conv, (3, 4, 4), {"weight": ones}, iaf, quant=QUANT),
        Layer("flat", "flatten", {}, (48,)),
        Layer("fc", "linear", {}, (5,), {"weight": np.ones((5, 48), np.int8)}, iaf, quant=QUANT),
    ]
    graph = FoldedGraph(layers, InputSpec((2, 7, 7), (7, 7, 2)), 5, "speck", True)
    chain = [step for step in speck_chain(graph) if step.neuron is not None]
    geometries = [layer_geometry(layers[0], (2, 7, 7)), layer_geometry(layers[2], (48,))]
    for step, geometry in zip(chain, geometries, strict=True):
        weight = _tensors(step, IntegerState())[0]
        n_out = int(np.prod(step.layer.output_shape))
        targets, _ = _fan_out(step, weight, n_out)
        reached = (targets != n_out).sum(axis=1)
        np.testing.assert_array_equal(reached, fanout_map(geometry).reshape(-1), err_msg=step.layer.name)


def test_result_shapes_counts_and_notes():
    graph = chain_graph(neurons(CASES["subtract-multi"]))
    result = SpeckSimulator(mode=EventDriven()).run(graph, frames(), record=False)
    assert result.backend == "speck" and result.spike_trains == {}
    assert set(result.spike_counts) == {"c0", "c1", "fc"}
    assert result.spike_counts["c0"].shape == (3, 12) and result.outputs.shape == (3, 12, 3)
    np.testing.assert_array_equal(result.outputs.sum(axis=2), result.spike_counts["fc"])
    assert any("one spike per incoming event" in note for note in result.notes)
    assert result.predictions().shape == (3,)


def test_bad_input_is_refused():
    graph = chain_graph(neurons(CASES["subtract-multi"]))
    with pytest.raises(InputFormatError, match="C,H,W"):
        SpeckSimulator().run(graph, np.zeros((1, 2, 2, 4, 4)))
    with pytest.raises(InputFormatError, match="integer"):
        SpeckSimulator().run(graph, np.full((1, 2, 2, 8, 8), 0.5))
    fractional = chain_graph(neurons(CASES["subtract-multi"], thresholds=(150.5, 120.0, 100.0)))
    with pytest.raises(InputFormatError, match="'c0': threshold"):
        SpeckSimulator().run(fractional, frames())
    residual = chain_graph(neurons(CASES["subtract-multi"]))
    residual.layers.append(Layer("join", "add", {}, (3,), inputs=("fc", "fc")))
    with pytest.raises(AsaSnnError, match="'join'"):
        SpeckSimulator().run(residual, frames())


def test_float32_path_only_when_the_integer_sums_are_exact():
    import torch

    from asa_snn.chips.speck.simulator import _exact_in_float32

    weight = np.full((2, 1, 3, 3), 127.0)  # fan-in sum 1143 per output channel
    assert _exact_in_float32(torch.full((1, 1, 4, 4), 100.0), weight)
    assert not _exact_in_float32(torch.full((1, 1, 4, 4), 2.0**24 / 1143), weight)
