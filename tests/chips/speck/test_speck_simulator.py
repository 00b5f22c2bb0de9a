"""Built-in Speck simulator: hand-computed traces, event-driven semantics, agreement with sinabs."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from graph_builders import QUANT, chain_graph

from asa_snn.chips.speck.event_driven import EventDriven, event_carrier, event_layers
from asa_snn.chips.speck.mapping import speck_chain
from asa_snn.chips.speck.simulator import FloatState, IntegerState, SpeckSimulator
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


def test_event_driven_emits_one_events_spikes_by_address_channel_major():
    """One event fires (f=0, x=1) and (f=1, x=0) of a 2-channel map; the next layer gets them by flat
    (C, H, W) address, 1 before 2, not by position. Order 1, 2: +120 fires (zero reset), then
    -100; order 2, 1 would give -100 + 120 = 20 and no spike."""
    weight = np.zeros((2, 1, 3, 3), np.int8)
    weight[0, 0, 1, 0] = 100  # input x=0 -> output x=1 through tap kx=0, channel 0
    weight[1, 0, 1, 1] = 100  # input x=0 -> output x=0 through tap kx=1, channel 1
    conv = {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]}
    layers = [
        Layer("a", "conv2d", conv, (2, 1, 2), {"weight": weight}, NeuronSpec("iaf", 100.0), quant=QUANT),
        Layer("flat", "flatten", {}, (4,)),
        Layer(
            "b",
            "linear",
            {},
            (1,),
            {"weight": np.array([[0, 120, -100, 0]], np.int8)},
            NeuronSpec("iaf", 100.0, "zero"),
            quant=QUANT,
        ),
    ]
    graph = FoldedGraph(layers, InputSpec((1, 1, 2), (2, 1, 1)), 1, "speck", True)
    x = np.zeros((1, 1, 1, 1, 2))
    x[0, 0, 0, 0, 0] = 1
    result = SpeckSimulator(mode=EventDriven()).run(graph, x, record=True)
    assert result.spike_trains["a"].reshape(-1).tolist() == [0, 1, 1, 0]
    assert result.spike_counts["b"].tolist() == [[1]]
    assert reference_event_driven(graph, x)["b"].reshape(-1).tolist() == [1]


def test_event_driven_saturates_at_each_event_within_a_step():
    # step 1: 300 events of w = -128 (raster order first), then 300 of w = +127, theta = 5000.
    # Saturating per event: -32768 after event 256, then -32768 + 127 k >= 5000 at k = 298 -> spike,
    # 78, + 2 * 127 = 332. Step 2, 38 events of +127: 332 + 127 * 37 = 5031 -> spike, 31 + 127 = 158.
    # Without saturation (float graph) and time-stepped: -300 after step 1, no spike in either step.
    counts = [[300, 300], [0, 38]]
    quantized = one_neuron([-128, 127], NeuronSpec("iaf", 5000.0, "subtract"))
    floating = one_neuron([-128.0, 127.0], NeuronSpec("iaf", 5000.0, "subtract"), quantized=False)
    assert trace(quantized, counts, EventDriven()) == [1, 1]
    assert trace(floating, counts, EventDriven()) == [0, 0]
    assert trace(quantized, counts) == [0, 0]  # time-stepped: sat(-38400 + 38100) = -300


def test_event_driven_kernel_number_types():
    """float32 only where every integer stays exact (below 2^24); int64 beyond; float64 for a float graph."""
    assert event_carrier(IntegerState(), [127.0, 32767.0, 30000.0]) is np.float32
    assert event_carrier(IntegerState(), [2.0**24 - 2**15]) is np.float32
    assert event_carrier(IntegerState(), [2.0**24 - 2**15 + 1]) is np.int64
    assert event_carrier(FloatState(), [1.0]) is np.float64
    # a weight of 2^24 runs in int64: v = sat(2^24) = 32767 >= 30000 -> spike, 2767; then 2767 - 5
    layers = [
        Layer("flat", "flatten", {}, (2,)),
        Layer(
            "out",
            "linear",
            {},
            (1,),
            {"weight": np.array([[2**24, -1]], np.int32)},
            NeuronSpec("iaf", 30000.0, min_v=2762.0),
            quant=QUANT,
        ),
    ]
    graph = FoldedGraph(layers, InputSpec((1, 1, 2), (2, 1, 1), n_steps=3), 1, "speck", True)
    (table,) = event_layers(speck_chain(graph), IntegerState())
    assert table.weight.dtype == np.int64
    # v: 32767 -> spike -> 2767; 2767 - 10 = 2757 -> floor 2762; 2762 + 2^24 -> 32767 -> spike
    assert trace(graph, [[1, 0], [0, 10], [1, 0]], EventDriven()) == [1, 0, 1]


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
    """Each input neuron of the event-driven simulator's tables reaches exactly the synapses that
    :func:`asa_snn.energy.synapses.fanout_map` counts (strided, padded conv and linear)."""
    conv = {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]}
    iaf, ones = NeuronSpec("iaf", 10.0), np.ones((3, 2, 3, 3), np.int8)
    layers = [
        Layer("c", "conv2d", conv, (3, 4, 4), {"weight": ones}, iaf, quant=QUANT),
        Layer("flat", "flatten", {}, (48,)),
        Layer("fc", "linear", {}, (5,), {"weight": np.ones((5, 48), np.int8)}, iaf, quant=QUANT),
    ]
    graph = FoldedGraph(layers, InputSpec((2, 7, 7), (7, 7, 2)), 5, "speck", True)
    geometries = [layer_geometry(layers[0], (2, 7, 7)), layer_geometry(layers[2], (48,))]
    for table, geometry in zip(event_layers(speck_chain(graph), IntegerState()), geometries, strict=True):
        reached = table.reach * table.f_out
        np.testing.assert_array_equal(reached, fanout_map(geometry).reshape(-1), err_msg=table.name)


@pytest.mark.parametrize(
    "attrs",
    [
        {"stride": [1, 1], "padding": [1, 1]},
        {"stride": [2, 2], "padding": [1, 1]},
        {"stride": [2, 1], "padding": [0, 2]},
    ],
)
def test_event_tables_are_the_convolution(attrs):
    """Rows and taps rebuild the conv as a dense matrix: input one-hot e_a through the conv equals
    the weights the tables give address a (output channel f at row r: weight[taps, f])."""
    rng = np.random.default_rng(1)
    weight = rng.integers(-9, 10, (3, 2, 3, 3)).astype(np.int8)
    conv = {"kernel_size": [3, 3], **attrs}
    in_map = (2, 5, 6)
    (sh, sw), (ph, pw) = attrs["stride"], attrs["padding"]
    out_map = (3, (5 + 2 * ph - 3) // sh + 1, (6 + 2 * pw - 3) // sw + 1)
    layer = Layer("c", "conv2d", conv, out_map, {"weight": weight}, NeuronSpec("iaf", 10.0), quant=QUANT)
    graph = FoldedGraph([layer], InputSpec(in_map, (6, 5, 2)), 3, "speck", True)
    (table,) = event_layers(speck_chain(graph), IntegerState())
    n_in = int(np.prod(in_map))
    dense = np.zeros((n_in, table.f_out * table.plane))
    for a in range(n_in):
        for row, tap in zip(table.rows[a, : table.reach[a]], table.taps[a, : table.reach[a]], strict=True):
            dense[a, np.arange(table.f_out) * table.plane + row] = table.weight[tap, : table.f_out]
    for a in range(n_in):  # the kernel emits one event's spikes by address on this order
        assert np.all(np.diff(table.rows[a, : table.reach[a]]) > 0)
    one_hot = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_map)
    expected = F.conv2d(
        one_hot, torch.from_numpy(weight.astype(np.float64)), stride=attrs["stride"], padding=attrs["padding"]
    )
    np.testing.assert_array_equal(dense, expected.reshape(n_in, -1).numpy())


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


# ---------------------------------------------------------------- event-driven against a plain reference


def reference_event_driven(graph: FoldedGraph, frames: np.ndarray) -> dict[str, np.ndarray]:
    """The module doc's event-driven model written out one event and one neuron at a time in plain
    Python numbers (ints on a quantized graph), independent of the simulator's tables and kernel:
    spike counts [T, B, n_out] per spiking layer."""
    B, T = frames.shape[:2]
    trains: dict[str, np.ndarray] = {}
    for b in range(B):
        stream = [
            [a for a, k in enumerate(frames[b, t].reshape(-1).astype(int)) for _ in range(k)]
            for t in range(T)
        ]
        for step in speck_chain(graph):
            c, h, w = step.in_map
            if step.layer.op == "sumpool2d":
                kh, kw = step.layer.attrs.kernel_size
                oh, ow = h // kh, w // kw
                pooled = [(a // (h * w), a // w % h // kh, a % w // kw) for a in range(c * h * w)]
                stream = [
                    [(ch * oh + y) * ow + x for ch, y, x in (pooled[a] for a in events) if y < oh and x < ow]
                    for events in stream
                ]
            elif step.layer.op != "flatten":
                stream = _reference_layer(step, stream, graph.quantized, trains, b, B)
    return trains


def _reference_layer(step, stream, quantized, trains, b, B):
    layer, (c, h, w), neuron = step.layer, step.in_map, step.neuron
    weight = np.asarray(layer.tensors["weight"])
    if layer.op == "linear":
        weight, (sh, sw), (ph, pw) = weight.reshape(len(weight), c, h, w), (1, 1), (0, 0)
    else:
        (sh, sw), (ph, pw) = layer.attrs.stride, layer.attrs.padding
    f_out, _, kh, kw = weight.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    number = int if quantized else float
    theta = number(neuron.threshold)
    min_v = None if neuron.min_v is None else number(neuron.min_v)
    bias = layer.tensors.get("bias")
    v = [number(0)] * (f_out * oh * ow)
    counts = trains.setdefault(layer.name, np.zeros((len(stream), B, len(v)), np.int64))

    def touch(j, x, spikes):  # v <- sat(v + x); fire; reset; floor
        u = v[j] + x
        if quantized:
            u = min(max(u, -(2**15)), 2**15 - 1)
        if u >= theta:
            spikes.append(j)
            u = u - theta if neuron.reset == "subtract" else number(0)
        v[j] = u if min_v is None else max(u, min_v)

    out = []
    for t, events in enumerate(stream):
        spikes = []
        if bias is not None:  # one event at the start of the step reaching every neuron
            for j in range(len(v)):
                touch(j, number(bias[j // (oh * ow)]), spikes)
        for a in events:
            ch, y, x = a // (h * w), a // w % h, a % w
            targets = []
            for ky in range(kh):
                for kx in range(kw):
                    ny, nx = y + ph - ky, x + pw - kx
                    oy, ox = ny // sh, nx // sw
                    if ny % sh == 0 and nx % sw == 0 and 0 <= oy < oh and 0 <= ox < ow:
                        targets += [((f * oh + oy) * ow + ox, weight[f, ch, ky, kx]) for f in range(f_out)]
            for j, x in sorted(targets):  # ascending neuron index
                touch(j, number(x), spikes)
        for j in spikes:
            counts[t, b, j] += 1
        out.append(spikes)
    return out


def odd_graph(
    neurons: list[NeuronSpec],
    quantized: bool = True,
    weight_mean: float | tuple[float, float] = 0.0,
    seed: int = 5,
) -> FoldedGraph:
    """conv a (2->3, 3x3, pad 1, bias) on 2x7x7 -> sumpool 2 (7 -> 3: the last row and column drop)
    -> conv b (3->4, 3x3, stride 2, pad 1) -> 4x2x2 -> flatten -> linear c (16->3, bias).

    Integer weights N(weight_mean, 60) clipped to int8 (float64 copies when not ``quantized``);
    a tuple gives a's two input channels their own means (b and c: 0).
    """
    rng = np.random.default_rng(seed)
    dtype, quant = (np.int8, QUANT) if quantized else (np.float64, None)
    a_means = np.broadcast_to(np.asarray(weight_mean, dtype=float), (2,)).reshape(1, 2, 1, 1)
    mean = float(weight_mean) if np.ndim(weight_mean) == 0 else 0.0

    def weights(shape, mean):
        return np.clip(rng.normal(mean, 60, shape).round(), -128, 127).astype(dtype)

    def bias(n):
        return rng.integers(-40, 41, n).astype(np.int16 if quantized else np.float64)

    conv = {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]}
    strided = {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]}
    na, nb, nc = neurons
    layers = [
        Layer(
            "a",
            "conv2d",
            conv,
            (3, 7, 7),
            {"weight": weights((3, 2, 3, 3), a_means), "bias": bias(3)},
            na,
            quant=quant,
        ),
        Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (3, 3, 3)),
        Layer("b", "conv2d", strided, (4, 2, 2), {"weight": weights((4, 3, 3, 3), mean)}, nb, quant=quant),
        Layer("flat", "flatten", {}, (16,)),
        Layer("c", "linear", {}, (3,), {"weight": weights((3, 16), mean), "bias": bias(3)}, nc, quant=quant),
    ]
    return FoldedGraph(layers, InputSpec((2, 7, 7), (7, 7, 2), n_steps=6), 3, "speck", quantized)


REFERENCE_CASES = {
    # (thresholds, resets, min_v per layer, weight mean, input rate)
    "subtract-minv": ((200.0, 150.0, 120.0), ("subtract",) * 3, (-60.0, None, -100.0), 0.0, 1.0),
    "zero-nominv": ((200.0, 150.0, 120.0), ("zero",) * 3, (None, None, None), 5.0, 1.0),
    "mixed": ((150.0, 300.0, 100.0), ("zero", "subtract", "zero"), (None, -30.0, -50.0), 10.0, 2.0),
    # a: input channel 1 (weights around -70) drives membranes to -2^15 in steps 0-1, then channel 0
    # (around +70) up past +2^15 - 1 (threshold within 127 of it): see reference_case
    "saturating": ((32700.0, 150.0, 100.0), ("subtract",) * 3, (None, None, None), (70.0, -70.0), 40.0),
}


def reference_case(name: str, quantized: bool = True) -> tuple[FoldedGraph, np.ndarray]:
    thresholds, resets, min_vs, mean, rate = REFERENCE_CASES[name]
    neuron_specs = [NeuronSpec("iaf", th, r, m) for th, r, m in zip(thresholds, resets, min_vs, strict=True)]
    x = np.random.default_rng(11).poisson(rate, (2, 6, 2, 7, 7)).astype(np.float64)
    if name == "saturating":  # input channel 1 in steps 0-1, channel 0 in steps 2-5
        x[:, :2, 0] = 0
        x[:, 2:, 1] = 0
    return odd_graph(neuron_specs, quantized, mean), x


@pytest.mark.parametrize("name", list(REFERENCE_CASES))
@pytest.mark.parametrize("quantized", [True, False], ids=["int16", "float64"])
def test_event_driven_equals_the_plain_reference(name, quantized):
    graph, x = reference_case(name, quantized)
    if not quantized:  # non-integer weights and thresholds: float64 rounding must match too
        layers = [
            replace(
                layer,
                tensors={k: t * 1.37 for k, t in layer.tensors.items()},
                neuron=layer.neuron and replace(layer.neuron, threshold=layer.neuron.threshold * 1.29),
            )
            for layer in graph.layers
        ]
        graph = replace(graph, layers=layers)
    expected = reference_event_driven(graph, x)
    for threads in (1, 2):
        trains = SpeckSimulator(mode=EventDriven(threads=threads)).run(graph, x, record=True).spike_trains
        for layer, counts in expected.items():
            np.testing.assert_array_equal(trains[layer].reshape(counts.shape), counts, err_msg=layer)
            assert counts.sum() > 0, f"{layer} silent: the case tests nothing"


@pytest.mark.parametrize("min_v", [None, -50.0, 100.0], ids=["no-floor", "floor", "floor-at-threshold"])
def test_event_driven_more_than_64_channels_equals_the_reference(min_v):
    """70 output channels (padded to 80: two 64-channel words of spike bits). A floor at the
    threshold makes every touched neuron fire at every touch, padded channels included: those must
    never be emitted."""
    rng = np.random.default_rng(4)
    conv = {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]}
    weight = rng.integers(-60, 80, (70, 2, 3, 3)).astype(np.int8)
    layers = [
        Layer(
            "a",
            "conv2d",
            conv,
            (70, 4, 4),
            {"weight": weight},
            NeuronSpec("iaf", 100.0, min_v=min_v),
            quant=QUANT,
        ),
        Layer("flat", "flatten", {}, (1120,)),
        Layer(
            "c",
            "linear",
            {},
            (3,),
            {"weight": rng.integers(-20, 30, (3, 1120)).astype(np.int8)},
            NeuronSpec("iaf", 500.0, "zero"),
            quant=QUANT,
        ),
    ]
    graph = FoldedGraph(layers, InputSpec((2, 4, 4), (4, 4, 2), n_steps=4), 3, "speck", True)
    x = rng.poisson(0.8, (2, 4, 2, 4, 4)).astype(np.float64)
    trains = SpeckSimulator(mode=EventDriven()).run(graph, x, record=True).spike_trains
    for layer, counts in reference_event_driven(graph, x).items():
        np.testing.assert_array_equal(trains[layer].reshape(counts.shape), counts, err_msg=layer)
        assert counts.sum() > 0
    assert trains["a"][:, :, 64:].sum() > 0  # the second word emitted


def test_reference_cases_saturate_and_drop_pooled_events():
    """The saturating case's spikes depend on the int16 limits (the float graph differs), and the
    input reaches row and column 6 of a's map, which pooling drops."""
    graph, x = reference_case("saturating")
    floats = replace(graph, quantized=False)
    ours = SpeckSimulator(mode=EventDriven()).run(graph, x, record=True).spike_trains
    unsaturated = SpeckSimulator(mode=EventDriven()).run(floats, x, record=True).spike_trains
    assert any(not np.array_equal(ours[k], unsaturated[k]) for k in ours)
    assert ours["a"][:, :, :, 6, :].sum() > 0 and ours["a"][:, :, :, :, 6].sum() > 0


def test_event_driven_equals_time_stepped_where_the_models_coincide():
    """Weights and bias in [0, theta], subtract reset, no saturation: a neuron's v stays in
    [0, theta) between arrivals and each arrival crosses theta at most once, so a step's crossings
    number floor((v + all its input) / theta) in any order: the event-driven spikes equal the
    time-stepped multi-spike spikes, step by step and layer by layer."""
    rng = np.random.default_rng(2)
    graph = odd_graph([NeuronSpec("iaf", 120.0, "subtract", multi_spike=True)] * 3)
    layers = []
    for layer in graph.layers:  # weights and bias in [0, 40), below theta
        tensors = {k: rng.integers(0, 40, t.shape).astype(t.dtype) for k, t in layer.tensors.items()}
        layers.append(replace(layer, tensors=tensors))
    graph = replace(graph, layers=layers)
    x = rng.poisson(1.0, (3, 6, 2, 7, 7)).astype(np.float64)
    stepped = SpeckSimulator().run(graph, x, record=True).spike_trains
    unsaturated = SpeckSimulator().run(replace(graph, quantized=False), x, record=True).spike_trains
    events = SpeckSimulator(mode=EventDriven()).run(graph, x, record=True).spike_trains
    for layer in ("a", "b", "c"):
        # the time-stepped sums stayed inside int16 (the float graph gives the same spikes)
        np.testing.assert_array_equal(stepped[layer], unsaturated[layer], err_msg=layer)
        np.testing.assert_array_equal(events[layer], stepped[layer], err_msg=layer)
        assert stepped[layer].max() > 1, f"{layer}: no neuron fired twice in a step; the case tests little"
