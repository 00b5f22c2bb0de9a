"""Loihi chip-mapping check: core counts per layer and the limits a graph breaks."""

import numpy as np

from asa_snn.chips.loihi.mapping import LoihiLimits, check_loihi, weight_format
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, NeuronSpec

CUBA = NeuronSpec("cuba", threshold=20, reset="zero", du=0.25, dv=0.125)


def graph_of(layers, input_shape=(2, 9, 9)):
    return FoldedGraph(
        layers,
        InputSpec(input_shape, (input_shape[2], input_shape[1], input_shape[0])),
        3,
        "loihi",
        quantized=True,
    )


def small_net():
    conv = Layer(
        "conv",
        "conv2d",
        {"kernel_size": [3, 3], "stride": [2, 2], "padding": [0, 0]},
        (4, 4, 4),
        {"weight": np.ones((4, 2, 3, 3), np.int64)},
        CUBA,
    )
    fc = Layer("fc", "linear", {}, (8,), {"weight": np.full((8, 64), -3)}, CUBA)
    return graph_of([conv, Layer("flat", "flatten", {}, (64,)), fc])


def test_small_net_fits_one_core_per_layer():
    report = check_loihi(small_net())
    assert report.ok and report.total_cores == 2 and report.chips == 1
    conv, fc = report.layers
    assert (conv.neurons, conv.fan_in, conv.synapses, conv.cores) == (64, 18, 1152, 1)
    assert (fc.neurons, fc.fan_in, fc.weight_bits) == (8, 64, 3)
    assert "conv" in report.table() and "total cores 2" in report.table()


def test_weight_format_shares_an_exponent():
    assert weight_format(np.array([4, 8, -12])) == (3, 2)  # mantissa 1, 2, -3: 2 bits + sign
    assert weight_format(np.array([255, 1])) == (8, 0)
    assert weight_format(np.zeros(3, np.int64)) == (1, 0)


def test_large_dense_needs_many_cores_and_breaks_axons():
    fc = Layer("big", "linear", {}, (2000,), {"weight": np.full((2000, 5000), 30)}, CUBA)
    report = check_loihi(graph_of([Layer("flat", "flatten", {}, (5000,)), fc], (5000, 1, 1)))
    # 10M synapses / 65,536 per core (16 bits each in 128 KB); 5000 * 30 << 6 > 2^23
    assert report.layers[0].cores == 153 and report.chips == 2
    limits = {v.limit for v in report.violations}
    assert "input axons per core" in limits and "24-bit current u" in limits


def test_wide_weights_and_thresholds_are_flagged():
    graph = small_net()
    graph.layers[2].tensors["weight"] = np.full((8, 64), 601)
    graph.layers[0].neuron = NeuronSpec("cuba", threshold=200_000, reset="zero", du=0.0, dv=0.125)
    report = check_loihi(graph)
    found = {(v.layer, v.limit) for v in report.violations}
    assert ("fc", "weight bits") in found
    assert ("conv", "vThMant (17 bit unsigned)") in found and ("conv", "iDecay (1..4096)") in found
    assert "VIOLATION fc: weight bits = 10 > 9" in report.table()


def test_more_cores_when_conv_slices_need_fewer_axons():
    conv = Layer(
        "conv",
        "conv2d",
        {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]},
        (16, 32, 32),
        {"weight": np.ones((16, 8, 3, 3), np.int64)},
        CUBA,
    )
    report = check_loihi(graph_of([conv], (8, 32, 32)))
    # 8192 inputs > 4096 axons: slices of 4096 // 72 = 56 neurons -> ceil(16384 / 56) cores
    assert report.layers[0].cores == 293 and report.ok


def test_unsupported_ops_and_neurons_are_violations_not_crashes():
    graph = small_net()
    graph.layers.insert(1, Layer("res", "add", {}, (4, 4, 4), inputs=("conv", "conv")))
    graph.layers[0].neuron = NeuronSpec("iaf", threshold=1.0)
    report = check_loihi(graph, LoihiLimits())
    assert not report.ok and report.layers == []
    assert {(v.layer, v.limit) for v in report.violations} == {
        ("res", "supported netx layer types"),
        ("conv", "neuron kind"),
    }
