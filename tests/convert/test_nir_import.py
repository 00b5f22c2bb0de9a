"""NIR import: files written by sinabs (and Norse / snnTorch where installed) reproduce the library's
own spikes; our own export comes back exactly; dt, sensor and steps complete the contract; every
node or structure a target cannot hold is refused with the node named and why."""

import itertools
from dataclasses import replace

import nir
import numpy as np
import pytest
import torch
from graph_builders import chain_graph, loihi_graph, speck_graph
from torch import nn

from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.graph import NEURON_KINDS, InputSpec, NeuronSpec
from asa_snn.convert.graph_model import GraphModel
from asa_snn.convert.nir_export import to_nir, write_nir
from asa_snn.convert.nir_import import CubaLI, ImportOptions, input_spec_for, nir_to_graph, read_nir
from asa_snn.errors import AsaSnnError, InputFormatError

sinabs = pytest.importorskip("sinabs", reason="sinabs is not installed")
sl = pytest.importorskip("sinabs.layers")

SPECK = ImportOptions(target="speck", neuron_kinds=("iaf",), quant_bits=(8, 16))
LOIHI = ImportOptions(target="loihi", neuron_kinds=("cuba",))
GENERIC = ImportOptions()
BATCH, STEPS = 3, 10


# ---------------------------------------------------------------- sinabs


def sinabs_net(batch: int = BATCH, multi: bool = False) -> nn.Sequential:
    """Conv2d / IAFSqueeze / SumPool2d / Conv2d / IAFSqueeze / Flatten / Linear / IAFSqueeze with
    weights on a 1/8 grid, so float32 (sinabs, GraphModel) and float64 (Speck simulator) agree.
    ``multi``: sinabs' default MultiSpike; else SingleSpike (NIR's equation, Speck's chip)."""
    from sinabs.activation import MultiSpike, SingleSpike

    torch.manual_seed(0)
    fire = {"spike_fn": MultiSpike if multi else SingleSpike}
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        sl.IAFSqueeze(batch_size=batch, **fire),
        sl.SumPool2d(2),
        nn.Conv2d(4, 8, 3, stride=2, bias=True),
        sl.IAFSqueeze(batch_size=batch, spike_threshold=2.0, **fire),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),
        sl.IAFSqueeze(batch_size=batch, **fire),
    )
    with torch.no_grad():
        for module in net:
            for parameter in module.parameters() if isinstance(module, (nn.Conv2d, nn.Linear)) else ():
                parameter.copy_(torch.round(parameter * 8 + 1) / 8)
    return net


def sinabs_file(tmp_path, net: nn.Module | None = None):
    """``sinabs.to_nir`` of the net, written by ``nir.write`` (after NIR's own type inference: sinabs
    3.1 leaves conv input shapes None, which nir 1.0 cannot write)."""
    graph = sinabs.to_nir(net or sinabs_net(1), torch.zeros(1, 2, 16, 16))
    graph.infer_types()
    path = tmp_path / "sinabs.nir"
    nir.write(path, graph)
    return path


def frames(batch=BATCH, steps=STEPS, shape=(2, 16, 16), rate=0.4, seed=3):
    return np.random.default_rng(seed).poisson(rate, (batch, steps, *shape)).astype(np.float64)


def sinabs_spikes(net: nn.Sequential, x: np.ndarray) -> dict[int, np.ndarray]:
    """Module index -> spikes [T, B, ...] of each IAFSqueeze of ``net`` on frames [B, T, ...]."""
    batch, steps = x.shape[:2]
    recorded = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, k=k: recorded.__setitem__(k, o.detach()))
        for k, module in enumerate(net)
        if isinstance(module, sl.IAFSqueeze)
    ]
    with torch.no_grad():
        net(torch.as_tensor(x, dtype=torch.float32).flatten(0, 1))
    for hook in hooks:
        hook.remove()
    return {k: v.unflatten(0, (batch, steps)).transpose(0, 1).numpy() for k, v in recorded.items()}


@pytest.mark.parametrize("multi", [False, True], ids=["SingleSpike", "MultiSpike (--multi-spike)"])
def test_a_sinabs_file_reproduces_sinabs_spikes_on_the_speck_simulator_and_graph_model(tmp_path, multi):
    imported = nir_to_graph(read_nir(sinabs_file(tmp_path)), replace(SPECK, multi_spike=multi))
    graph = imported.graph
    assert [(layer.name, layer.op) for layer in graph.layers] == [
        ("0", "conv2d"), ("2", "sumpool2d"), ("3", "conv2d"), ("5", "flatten"), ("6", "linear"),
    ]  # fmt: skip
    assert [layer.neuron.threshold for layer in graph.spiking_layers()] == [1.0, 2.0, 1.0]
    assert all(
        layer.neuron == NeuronSpec("iaf", layer.neuron.threshold, multi_spike=multi)
        for layer in graph.spiking_layers()
    )
    assert "bias" not in graph.layer("0").tensors and graph.num_classes == 5
    assert graph.input == InputSpec((2, 16, 16), (16, 16, 2), dt_us=1000, n_steps=16)
    x = frames(rate=1.5 if multi else 0.4)
    reference = sinabs_spikes(sinabs_net(multi=multi), x)
    graph.input = replace(graph.input, n_steps=STEPS)
    run = SpeckSimulator().run(graph, x, record=True)
    for module, layer in ((1, "0"), (4, "3"), (7, "6")):
        np.testing.assert_array_equal(run.spike_trains[layer], reference[module], err_msg=layer)
    assert sum(float(v.sum()) for v in reference.values()) > 50  # the comparison sees spikes
    assert (max(float(v.max()) for v in reference.values()) > 1) == multi
    with torch.no_grad():
        channel = (
            GraphModel(graph).run(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1)).channel_spikes
        )
    for module, layer in ((1, "0"), (4, "3"), (7, "6")):
        expected = reference[module].sum(0).reshape(BATCH, reference[module].shape[2], -1).sum(-1)
        np.testing.assert_array_equal(channel[layer].numpy(), expected, err_msg=layer)


def test_sinabs_in_memory_graph_imports_the_same_as_its_file(tmp_path):
    from_file = nir_to_graph(read_nir(sinabs_file(tmp_path)), SPECK).graph
    in_memory = nir_to_graph(sinabs.to_nir(sinabs_net(1), torch.zeros(1, 2, 16, 16)), SPECK).graph
    for a, b in zip(from_file.layers, in_memory.layers, strict=True):
        assert (a.name, a.op, a.attrs, a.output_shape, a.neuron) == (
            b.name,
            b.op,
            b.attrs,
            b.output_shape,
            b.neuron,
        )
        for key in a.tensors:
            np.testing.assert_array_equal(a.tensors[key], b.tensors[key])


def test_per_neuron_thresholds_are_refused_with_the_spread(tmp_path):
    graph = sinabs.to_nir(sinabs_net(1), torch.zeros(1, 2, 16, 16))
    threshold = np.asarray(graph.nodes["4"].v_threshold, dtype=np.float32).copy()
    threshold[3] = 2.5
    graph.nodes["4"].v_threshold = threshold
    with pytest.raises(AsaSnnError, match=r"node '4': per-neuron threshold from 2 to 2.5 \(spread 0.5\)"):
        nir_to_graph(graph, SPECK)


# ---------------------------------------------------------------- Norse and snnTorch


def first_spikes(trains: np.ndarray) -> np.ndarray:
    """Step of each neuron's first spike in trains [T, ...] (T where it never fires)."""
    fired = trains > 0
    return np.where(fired.any(0), fired.argmax(0), len(trains))


def test_a_snntorch_file_reproduces_snntorch_until_the_first_reset(tmp_path):
    """snnTorch writes Leaky as LIF with tau = dt / (1 - beta) at its own dt = 1e-4 s and no dt metadata
    (the dt pitfall: import with --dt-us 100). Its reset subtracts the threshold one step late and
    undecayed, NIR's (and ours) at once: spikes agree up to each neuron's first spike."""
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(12, 6), snn.Leaky(beta=0.75, init_hidden=True, output=True))
    try:
        graph = export_to_nir(net, torch.zeros(1, 12))
    except TypeError as exc:  # snnTorch 1.0 passes v_reset, which nir 1.0.4 lacks
        pytest.skip(f"snnTorch {snn.__version__} cannot export with nir {nir.version}: {exc}")
    imported = nir_to_graph(graph, replace(GENERIC, dt_us=100, n_steps=STEPS)).graph
    assert imported.spiking_layers()[0].neuron.decay == pytest.approx(0.75)
    x = np.random.default_rng(0).uniform(0, 0.6, (STEPS, 1, 12)).astype(np.float32)
    snn.utils.reset(net)
    with torch.no_grad():
        ours = [net(torch.as_tensor(x_t))[0].numpy() for x_t in x]
    trains = GraphModel(imported).neurons["0"](
        torch.as_tensor(x) @ torch.as_tensor(imported.layers[0].tensors["weight"]).T
        + torch.as_tensor(imported.layers[0].tensors["bias"])
    )
    np.testing.assert_array_equal(first_spikes(trains.numpy()), first_spikes(np.stack(ours)))


def test_a_norse_file_reproduces_norse_until_the_first_reset(tmp_path):
    """Norse's LIFBoxCell is the Euler step of NIR's LIF at Norse's dt = 1 ms (the default here); it
    resets to v_reset = 0 where NIR subtracts: spikes agree up to each neuron's first spike."""
    norse = pytest.importorskip("norse.torch", reason="Norse is not installed")
    torch.manual_seed(2)
    model = norse.SequentialState(nn.Linear(12, 6), norse.LIFBoxCell())
    try:
        graph = norse.to_nir(model, torch.zeros(1, 12))
    except Exception as exc:  # Norse's exporter and this nir may disagree
        pytest.skip(f"Norse cannot export with nir {nir.version}: {type(exc).__name__}: {exc}")
    imported = nir_to_graph(graph, replace(GENERIC, n_steps=STEPS)).graph
    x = np.random.default_rng(0).uniform(0, 30, (STEPS, 1, 12)).astype(np.float32)
    state, spikes = None, []
    with torch.no_grad():
        for x_t in x:
            out, state = model(torch.as_tensor(x_t), state)
            spikes.append(out.numpy())
    layer = imported.spiking_layers()[0]
    current = torch.as_tensor(x) @ torch.as_tensor(layer.tensors["weight"]).T
    if "bias" in layer.tensors:
        current = current + torch.as_tensor(layer.tensors["bias"])
    trains = GraphModel(imported).neurons[layer.name](current)
    np.testing.assert_array_equal(first_spikes(trains.numpy()), first_spikes(np.stack(spikes)))


# ---------------------------------------------------------------- our own export, back


def assert_same_graph(original, imported):
    assert [layer.name for layer in imported.layers] == [layer.name for layer in original.layers]
    for a, b in zip(original.layers, imported.layers, strict=True):
        assert (a.op, a.attrs, a.output_shape, a.neuron, a.inputs, a.quant) == (
            b.op, b.attrs, b.output_shape, b.neuron, b.inputs, b.quant
        ), a.name  # fmt: skip
        assert set(a.tensors) == set(b.tensors), a.name
        for key, value in a.tensors.items():
            assert np.array_equal(value, b.tensors[key]), (a.name, key)
            assert np.issubdtype(b.tensors[key].dtype, np.integer) == np.issubdtype(value.dtype, np.integer)
    assert imported.input == original.input
    same = ("num_classes", "vote", "quantized", "target", "readout")
    assert [getattr(imported, k) for k in same] == [getattr(original, k) for k in same]


def iaf(*thresholds, **kw):
    return [NeuronSpec("iaf", t, **kw) for t in thresholds]


ROUND_TRIPS = {
    "iaf float": (chain_graph(iaf(150.0, 120.5, 100.0, reset="zero", min_v=-7.25), quantized=False), SPECK),
    "iaf int, multi-spike": (chain_graph(iaf(150.0, 120.0, 99.0, multi_spike=True)), SPECK),
    "lif": (
        replace(
            chain_graph(
                [NeuronSpec("lif", 0.7, "zero", decay=0.3), NeuronSpec("lif", 1.3, decay=0.25),
                 NeuronSpec("lif", 2.0, decay=0.91)],
                quantized=False,
                input_spec=InputSpec((2, 8, 8), (8, 8, 2), dt_us=2000, n_steps=12),
            ),
            target="generic",
        ),
        GENERIC,
    ),
    "cuba with bias": (
        replace(
            chain_graph(
                [NeuronSpec("cuba", 0.7, "zero", du=0.3, dv=0.05),
                 NeuronSpec("cuba", 1.3, du=1229 / 4096, dv=0.25),
                 NeuronSpec("cuba", 2.0, "zero", du=1.0, dv=0.91)],
                quantized=False,
            ),
            target="generic",
        ),
        GENERIC,
    ),
    "speck deploy graph (binned sensor)": (speck_graph(), SPECK),
    "loihi deploy graph": (loihi_graph(), LOIHI),
}  # fmt: skip


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=list(ROUND_TRIPS))
def test_export_then_import_gives_the_same_graph(case, tmp_path):
    original, options = ROUND_TRIPS[case]
    write_nir(original, tmp_path / "g.nir")
    options = replace(options, sensor=original.input.sensor_size)
    imported = nir_to_graph(read_nir(tmp_path / "g.nir"), options)
    assert_same_graph(original, imported.graph)
    assert imported.approximations == []
    # the in-memory graph gives the same
    assert_same_graph(original, nir_to_graph(to_nir(original), options).graph)


# ---------------------------------------------------------------- dt and the input contract


def lif_graph(decay=0.5, dt_us=1000):
    neurons = [NeuronSpec("lif", 1.0, decay=decay)] * 3
    spec = InputSpec((2, 8, 8), (8, 8, 2), dt_us=dt_us, n_steps=12)
    return replace(chain_graph(neurons, quantized=False, input_spec=spec), target="generic")


def test_dt_comes_from_the_option_then_the_metadata_then_the_default():
    ng = to_nir(lif_graph(decay=0.5, dt_us=4000))
    from_file = nir_to_graph(ng, GENERIC)
    assert from_file.dt_us == 4000 and "NIR metadata (dt = 0.004 s)" in from_file.dt_source
    assert from_file.graph.layers[0].neuron.decay == 0.5
    # the same time constants read at 2 ms: dt / tau halves, so the decay changes (stated)
    halved = nir_to_graph(ng, replace(GENERIC, dt_us=2000))
    assert halved.graph.layers[0].neuron.decay == 0.75 and halved.graph.input.dt_us == 2000
    assert halved.notes[0].startswith("dt = 2000 us per step, from --dt-us")
    ng.metadata = {}
    default = nir_to_graph(ng, GENERIC)
    assert default.dt_us == 1000 and "no dt" in default.notes[0]
    assert default.graph.input.n_steps == 16


def test_a_time_constant_shorter_than_dt_is_refused():
    ng = to_nir(lif_graph(decay=0.5, dt_us=1000))
    with pytest.raises(
        AsaSnnError, match=r"node 'c0_neuron': tau 0.002 s is shorter than the step dt = 0.005 s"
    ):
        nir_to_graph(ng, replace(GENERIC, dt_us=5000))


def test_a_leak_far_below_one_step_gets_a_note():
    ng = to_nir(lif_graph(decay=0.5))
    ng.nodes["c0_neuron"].tau = np.full_like(ng.nodes["c0_neuron"].tau, 20.0)  # 20 "steps", sinabs style
    notes = nir_to_graph(ng, GENERIC).notes
    assert any("tau 20 s leaks only 5e-05 per step" in note and "--dt-us 1000000" in note for note in notes)


def test_sensor_binning_crop_and_polarity():
    spec, how = input_spec_for((2, 32, 32), (128, 128, 2), 5000, 8)
    assert spec.downsample == 4 and "binned by 4" in how and spec.dt_us == 5000 and spec.n_steps == 8
    spec, how = input_spec_for((2, 32, 32), (34, 34, 2), 1000, 8)
    assert spec.crop == (1, 1, 32, 32) and "crop" in how
    spec, _ = input_spec_for((1, 16, 16), (16, 16, 2), 1000, 8)
    assert spec.polarity == "merged"
    with pytest.raises(AsaSnnError, match="3 channels but the sensor 16x16x2"):
        input_spec_for((3, 16, 16), (16, 16, 2), 1000, 8)
    with pytest.raises(AsaSnnError, match="the input is 16x16 but the sensor 8x8 is smaller"):
        input_spec_for((2, 16, 16), (8, 8, 2), 1000, 8)


# ---------------------------------------------------------------- approximations


def test_leaky_neurons_onto_speck_need_approximate_and_name_the_effect():
    ng = to_nir(lif_graph())
    with pytest.raises(
        AsaSnnError, match=r"node 'c0_neuron': LIF neurons cannot run unchanged on speck .* --approximate"
    ):
        nir_to_graph(ng, SPECK)
    result = nir_to_graph(ng, replace(SPECK, approximate=True))
    assert [layer.neuron.kind for layer in result.graph.spiking_layers()] == ["iaf"] * 3
    assert len(result.approximations) == 3
    assert "the leak is dropped" in result.approximations[0] and result.approximations[0] in result.notes


def test_if_onto_loihi_needs_approximate(tmp_path):
    ng = read_nir(sinabs_file(tmp_path))
    with pytest.raises(AsaSnnError, match="node '1': IF neurons cannot run unchanged on loihi"):
        nir_to_graph(ng, LOIHI)
    graph = nir_to_graph(ng, replace(LOIHI, approximate=True)).graph
    assert {(n.neuron.kind, n.neuron.du, n.neuron.dv, n.neuron.reset) for n in graph.spiking_layers()} == {
        ("cuba", 1.0, 0.0, "zero")
    }


def foreign_cuba(reset_zero: bool):
    """Affine (bias 1) -> CubaLIF as another tool writes it (no asa-snn metadata)."""
    node = nir.CubaLIF(
        tau_syn=np.full(3, 4e-3), tau_mem=np.full(3, 2e-3), r=np.full(3, 2.0), v_leak=np.zeros(3),
        v_threshold=np.full(3, 1.5), w_in=np.full(3, 1.0),
    )  # fmt: skip
    if reset_zero:
        node.v_reset = np.zeros(3)  # newer NIR files: reset to v_reset
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 2, 2])}),
        "flat": nir.Flatten(input_type={"input": np.array([1, 2, 2])}, start_dim=0),
        "fc": nir.Affine(weight=np.ones((3, 4), np.float32), bias=np.ones(3, np.float32)),
        "lif": node,
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_a_foreign_cuba_lif_gets_its_gain_folded_and_its_bias_moved_to_the_voltage():
    result = nir_to_graph(foreign_cuba(reset_zero=True), GENERIC)
    layer = result.graph.layer("fc")
    assert layer.neuron == NeuronSpec("cuba", 1.5, "zero", du=0.25, dv=0.5)
    # gain du w_in dv R = 0.25; the current's bias b reaches the voltage as b g / du = 1
    np.testing.assert_allclose(layer.tensors["weight"], 0.25)
    np.testing.assert_allclose(layer.tensors["bias"], 1.0)
    with pytest.raises(AsaSnnError, match="node 'lif': CubaLIF neurons cannot run unchanged on generic"):
        nir_to_graph(foreign_cuba(reset_zero=False), GENERIC)  # NIR 1.0: subtract; cuba resets to 0


def test_a_cuba_li_readout_is_generic_and_approximate_only():
    graph = foreign_cuba(reset_zero=True)
    graph.nodes["lif"] = CubaLI(
        tau_syn=np.full(3, 4e-3), tau_mem=np.full(3, 2e-3), r=np.full(3, 2.0), v_leak=np.zeros(3)
    )
    with pytest.raises(AsaSnnError, match=r"node 'lif': a CubaLI read-out .* cannot be held by speck"):
        nir_to_graph(graph, SPECK)
    with pytest.raises(
        AsaSnnError, match="node 'lif': a CubaLI read-out has no folded form; pass --approximate"
    ):
        nir_to_graph(graph, GENERIC)
    result = nir_to_graph(graph, replace(GENERIC, approximate=True))
    assert result.graph.layer("fc").neuron is None and "read-out is dropped" in result.approximations[0]
    assert GraphModel(result.graph)(torch.ones(4, 2, 1, 2, 2)).shape == (2, 3)


# ---------------------------------------------------------------- folding AvgPool2d and Scale


def conv_chain(*middle, first=None):
    weight = np.arange(1, 4 * 2 * 3 * 3 + 1, dtype=np.float32).reshape(4, 2, 3, 3) / 8
    nodes = {"input": nir.Input(input_type={"input": np.array([2, 8, 8])})}
    if first is not None:
        nodes["pre"] = first
    nodes["conv"] = nir.Conv2d(None, weight, 1, 1, 1, 1, np.zeros(4, np.float32))
    nodes["if"] = nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.full((4, 8, 8), 3.0))
    nodes.update({f"m{i}": node for i, node in enumerate(middle)})
    nodes["fc"] = nir.Affine(np.ones((2, 64), np.float32), np.zeros(2, np.float32))
    nodes["if2"] = nir.IF(r=np.ones(2), v_threshold=np.ones(2))
    nodes["output"] = nir.Output(output_type={"output": np.array([2])})
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(names)))


def test_avg_pool_becomes_sum_pool_with_the_next_weights_divided():
    ng = conv_chain(
        nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
        nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0),
    )
    result = nir_to_graph(ng, SPECK)
    assert [layer.op for layer in result.graph.layers] == ["conv2d", "sumpool2d", "flatten", "linear"]
    np.testing.assert_array_equal(result.graph.layer("fc").tensors["weight"], np.full((2, 64), 0.25))
    assert any("'m0' folded into the input weights of 'fc'" in note for note in result.notes)


def test_scale_before_a_conv_folds_into_its_input_columns_and_after_into_its_rows():
    channel = np.array([2.0, 0.5]).reshape(2, 1, 1) * np.ones((2, 8, 8))
    ng = conv_chain(
        nir.Flatten(input_type={"input": np.array([4, 8, 8])}, start_dim=0), first=nir.Scale(channel)
    )
    ng.nodes["fc"] = nir.Affine(np.ones((2, 256), np.float32), np.zeros(2, np.float32))
    weight = np.asarray(ng.nodes["conv"].weight)
    folded = nir_to_graph(ng, SPECK).graph.layer("conv").tensors["weight"]
    np.testing.assert_allclose(folded[:, 0], weight[:, 0] * 2.0)
    np.testing.assert_allclose(folded[:, 1], weight[:, 1] * 0.5)
    varying = np.arange(128, dtype=np.float64).reshape(2, 8, 8) + 1
    ng.nodes["pre"] = nir.Scale(varying)
    with pytest.raises(AsaSnnError, match=r"node 'conv': an input scale before a conv varies over positions"):
        nir_to_graph(ng, SPECK)


# ---------------------------------------------------------------- refused structures and nodes


def test_refused_structures_name_the_node_and_why():
    pooled_stride = conv_chain(nir.SumPool2d(np.array([2, 2]), np.array([1, 1]), np.array([0, 0])))
    with pytest.raises(AsaSnnError, match=r"node 'm0': SumPool2d kernel \[2, 2\], stride \[1, 1\]"):
        nir_to_graph(pooled_stride, SPECK)
    branch = conv_chain(nir.Flatten(input_type={"input": np.array([4, 8, 8])}, start_dim=0))
    branch.edges.append(("if", "output"))
    with pytest.raises(AsaSnnError, match=r"node 'if' \(IF\) feeds 2 nodes \['m0', 'output'\] \(a branch\)"):
        nir_to_graph(branch, SPECK)
    cycle = conv_chain(nir.Flatten(input_type={"input": np.array([4, 8, 8])}, start_dim=0))
    cycle.edges.append(("if2", "conv"))
    with pytest.raises(AsaSnnError, match=r"node 'conv' \(Conv2d\) has 2 inputs"):
        nir_to_graph(cycle, SPECK)
    delayed = conv_chain(nir.Delay(np.ones((4, 8, 8))))
    with pytest.raises(
        AsaSnnError, match=r"node 'm0': NIR type Delay cannot be imported \(the folded graph has no"
    ):
        nir_to_graph(delayed, SPECK)
    no_neuron = conv_chain(nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])))
    del no_neuron.nodes["if"]
    no_neuron.edges = [e for e in no_neuron.edges if "if" not in e] + [("conv", "m0")]
    with pytest.raises(AsaSnnError, match=r"node 'm0' \(SumPool2d\) follows 'conv' before any neuron"):
        nir_to_graph(no_neuron, SPECK)


def test_a_neuron_with_a_rest_potential_or_a_nonzero_reset_is_refused():
    graph = foreign_cuba(reset_zero=True)
    graph.nodes["lif"].v_leak = np.full(3, 0.5)
    with pytest.raises(AsaSnnError, match=r"node 'lif': v_leak 0.5 \(a resting potential other than 0\)"):
        nir_to_graph(graph, GENERIC)
    graph = foreign_cuba(reset_zero=True)
    graph.nodes["lif"].v_reset = np.full(3, -1.0)
    with pytest.raises(AsaSnnError, match="node 'lif': v_reset -1; the folded graph resets to 0"):
        nir_to_graph(graph, GENERIC)


def test_a_quantized_file_for_another_target_is_refused(tmp_path):
    write_nir(chain_graph(iaf(150.0, 120.0, 99.0)), tmp_path / "q.nir")
    with pytest.raises(AsaSnnError, match=r"integers quantized for 'speck'.* --target speck"):
        nir_to_graph(read_nir(tmp_path / "q.nir"), replace(LOIHI, approximate=True))


def test_read_nir_refuses_missing_foreign_and_unknown_files(tmp_path):
    with pytest.raises(InputFormatError, match="no such NIR file"):
        read_nir(tmp_path / "missing.nir")
    (tmp_path / "text.nir").write_text("not hdf5")
    with pytest.raises(InputFormatError, match=r"text.nir: not a NIR file \(not HDF5"):
        read_nir(tmp_path / "text.nir")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(InputFormatError, match="no 'node' group"):
        read_nir(tmp_path / "other.h5")


def test_a_file_with_a_cuba_li_node_reads_where_nir_lacks_the_type(tmp_path):
    import h5py

    graph = foreign_cuba(reset_zero=False)
    graph.nodes["lif"] = nir.LI(tau=np.full(3, 2e-3), r=np.full(3, 2.0), v_leak=np.zeros(3))
    nir.write(tmp_path / "li.nir", graph)
    with h5py.File(tmp_path / "li.nir", "r+") as handle:  # rewrite LI as a newer NIR's CubaLI
        node = handle["node/nodes/lif"]
        del node["type"]
        node["type"] = "CubaLI"
        node["tau_syn"] = np.full(3, 4e-3)
        node["tau_mem"] = np.full(3, 2e-3)
        node["w_in"] = np.ones(3)
        del node["tau"]
    read = read_nir(tmp_path / "li.nir")
    assert type(read.nodes["lif"]).__name__ == "CubaLI"
    assert nir_to_graph(read, replace(GENERIC, approximate=True)).graph.layer("fc").neuron is None


def test_generic_kinds_are_every_neuron_kind():
    assert GENERIC.neuron_kinds == NEURON_KINDS
