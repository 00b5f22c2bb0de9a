"""ONNX one-step export: signature, checker, hand-computed traces per neuron kind, atomic write."""

import numpy as np
import onnx
import onnxruntime
import pytest

from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec
from asa_snn.convert.onnx_export import state_shapes, to_onnx, to_onnx_model
from asa_snn.errors import AsaSnnError

QUANT = LayerQuant(scale=1.0, weight_bits=8, state_bits=16)
CONV = {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]}


def one_neuron(weights, neuron, bias=None, quantized=False) -> FoldedGraph:
    """Input (1, 1, n) -> flatten -> linear(n -> 1): one neuron to trace by hand."""
    tensors = {"weight": np.array(weights, dtype=np.float64).reshape(1, -1)}
    if bias is not None:
        tensors["bias"] = np.array([bias], np.float64)
    n = len(weights)
    layers = [
        Layer("flat", "flatten", {}, (n,)),
        Layer("out", "linear", {}, (1,), tensors, neuron, quant=QUANT if quantized else None),
    ]
    return FoldedGraph(layers, InputSpec((1, 1, n), (n, 1, 1), n_steps=6), 1, "speck", quantized)


def step_through(graph, counts):
    """Output spikes per step of the ONNX model run in onnxruntime with the states fed back."""
    session = onnxruntime.InferenceSession(to_onnx_model(graph).SerializeToString())
    states = {name: np.zeros((1, *shape), np.float32) for name, shape in state_shapes(graph).items()}
    spikes = []
    for count in counts:
        frame = np.asarray(count, np.float32).reshape(1, *graph.input.shape)
        names = [f"next.{name.removeprefix('state.')}" for name in states] + ["output"]
        values = dict(zip(names, session.run(names, {"frame": frame, **states}), strict=True))
        states = {name: values[f"next.{name.removeprefix('state.')}"] for name in states}
        spikes.append(float(values["output"][0, 0]))
    return spikes


def test_signature_and_checker():
    layers = [
        Layer("c0", "conv2d", CONV, (3, 4, 4), {"weight": np.ones((3, 2, 3, 3))}, NeuronSpec("iaf", 2.0)),
        Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (3, 2, 2)),
        Layer("flat", "flatten", {}, (12,)),
        Layer(
            "fc", "linear", {}, (5,), {"weight": np.ones((5, 12))}, NeuronSpec("cuba", 3.0, du=0.5, dv=0.5)
        ),
    ]
    graph = FoldedGraph(layers, InputSpec((2, 8, 8), (8, 8, 2)), 5)
    model = to_onnx_model(graph)
    onnx.checker.check_model(model, full_check=True)
    inputs = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    assert inputs == {
        "frame": ["batch", 2, 8, 8], "state.c0.v": ["batch", 3, 4, 4],
        "state.fc.u": ["batch", 5], "state.fc.v": ["batch", 5],
    }  # fmt: skip
    outputs = [o.name for o in model.graph.output]
    assert outputs == ["next.c0.v", "next.fc.u", "next.fc.v", "spikes.c0", "spikes.fc", "output"]


def test_iaf_traces_by_hand():
    # w = 100, theta = 250: v = 100, 200, 300 -> spike, subtract 50 / zero 0
    assert step_through(one_neuron([100], NeuronSpec("iaf", 250.0)), [1] * 6) == [0, 0, 1, 0, 1, 0]
    assert step_through(one_neuron([100], NeuronSpec("iaf", 250.0, "zero")), [1] * 6) == [0, 0, 1, 0, 0, 1]
    # multi spike: 700 -> 3 spikes, 100 left; 800 -> 4
    multi = one_neuron([100], NeuronSpec("iaf", 200.0, multi_spike=True))
    assert step_through(multi, [7, 7, 0]) == [3, 4, 0]
    # min_v clamp after reset: w = (-100, 100), min_v = -150: v -100 -150 -50 50 150->30 130->10
    floored = one_neuron([-100, 100], NeuronSpec("iaf", 120.0, min_v=-150.0))
    assert step_through(floored, [[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1]]) == [0, 0, 0, 0, 1, 1]
    # bias every step: v 60 120->20 80 140->40 100->0 60
    assert step_through(one_neuron([0], NeuronSpec("iaf", 100.0), bias=60), [0] * 6) == [0, 1, 0, 1, 1, 0]


def test_int16_saturation_in_quantized_graph_only():
    # I = 127 * 200 = 25400: saturating 25400, 32767 -> spike 2767, 28167, 32767 -> spike, ...
    saturating = one_neuron([127], NeuronSpec("iaf", 30000.0), quantized=True)
    assert step_through(saturating, [200] * 6) == [0, 1, 0, 1, 0, 1]
    assert step_through(one_neuron([127], NeuronSpec("iaf", 30000.0)), [200] * 6) == [0, 1, 1, 1, 1, 1]


def test_lif_and_cuba_traces_by_hand():
    # lif, decay 0.5 after the reset, theta 1, I = 0.75: v 0.75 -> h 0.375; 1.125 spike -> 0; 0.75; ...
    lif = one_neuron([0.75], NeuronSpec("lif", 1.0, "zero", decay=0.5))
    assert step_through(lif, [1] * 6) == [0, 1, 0, 1, 0, 1]
    # cuba du = 0.5, dv = 0.25, theta 2 (strict): u 1, 1.5, 1.75, 1.875;
    # v 1, 2.25 -> spike 0, 1.75, 3.1875 -> spike
    cuba = one_neuron([1.0], NeuronSpec("cuba", 2.0, "zero", du=0.5, dv=0.25))
    assert step_through(cuba, [1] * 4) == [0, 1, 0, 1]
    # strict threshold: v reaches exactly 2 and does not fire (u 2, v 2 with du = dv = 1)
    exact = one_neuron([2.0], NeuronSpec("cuba", 2.0, "zero", du=1.0, dv=1.0))
    assert step_through(exact, [1, 1]) == [0, 0]


def test_agrees_with_speck_simulator_on_a_conv_net():
    rng = np.random.default_rng(1)
    layers = [
        Layer("c0", "conv2d", CONV, (3, 4, 4), {"weight": rng.integers(-3, 6, (3, 2, 3, 3)).astype(float),
              "bias": np.array([1.0, -1, 0])}, NeuronSpec("iaf", 7.0, min_v=-7.0)),
        Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (3, 2, 2)),
        Layer("flat", "flatten", {}, (12,)),
        Layer("fc", "linear", {}, (4,), {"weight": rng.integers(-2, 5, (4, 12)).astype(float)},
              NeuronSpec("iaf", 5.0, "zero", multi_spike=True)),
    ]  # fmt: skip
    graph = FoldedGraph(layers, InputSpec((2, 8, 8), (8, 8, 2), n_steps=10), 4)
    x = rng.poisson(0.5, (2, 10, 2, 8, 8)).astype(float)
    reference = SpeckSimulator().run(graph, x)
    session = onnxruntime.InferenceSession(to_onnx_model(graph).SerializeToString())
    states = {name: np.zeros((2, *shape), np.float32) for name, shape in state_shapes(graph).items()}
    for t in range(10):
        out = session.run(None, {"frame": x[:, t].astype(np.float32), **states})
        states = dict(zip(states, out[: len(states)], strict=True))
        np.testing.assert_array_equal(out[-1], reference.outputs[:, t])
    assert reference.outputs.sum() > 10


def test_atomic_write_and_refusals(tmp_path):
    path = tmp_path / "step.onnx"
    graph = one_neuron([1.0], NeuronSpec("iaf", 1.0))
    assert to_onnx(graph, path) == path and onnx.load(path).graph.output[-1].name == "output"
    graph.layers.append(Layer("join", "add", {}, (1,), inputs=("out", "out")))
    with pytest.raises(AsaSnnError, match="'join'"):
        to_onnx(graph, tmp_path / "bad.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.onnx"]
    silent = one_neuron([1.0], None)
    with pytest.raises(AsaSnnError, match="'out': linear without a neuron"):
        to_onnx_model(silent)
