"""Speck chip-mapping check: memory numbers against sinabs' own, every limit, core matching."""

import warnings

import numpy as np
import pytest
from sinabs.validate_memory_speck import ValidateMapping

from asa_snn.chips.speck.mapping import (
    CORE_MEMORY,
    KI,
    assign_cores,
    check_speck,
    core_layers,
    destinations,
    kernel_memory,
    max_bipartite_matching,
    neuron_memory,
    speck_chain,
)
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec
from asa_snn.errors import AsaSnnError

QUANT = LayerQuant(scale=1.0, weight_bits=8, state_bits=16)


def conv(name, c_in, c_out, out_hw, k=3, stride=1, padding=1, neuron=None, weight=None, **extra):
    """A quantized conv2d layer with an iaf neuron (threshold 100) unless given."""
    kh, kw = (k, k) if isinstance(k, int) else k
    if weight is None:
        weight = np.ones((c_out, c_in, kh, kw), np.int8)
    return Layer(
        name,
        "conv2d",
        {"kernel_size": [kh, kw], "stride": [stride, stride], "padding": [padding, padding]},
        (c_out, *out_hw),
        {"weight": weight, **extra},
        neuron or NeuronSpec("iaf", 100.0, min_v=-100.0),
        quant=QUANT,
    )


def graph(layers, in_shape=(2, 16, 16), quantized=True):
    return FoldedGraph(
        layers, InputSpec(in_shape, (in_shape[2], in_shape[1], in_shape[0])), 3, "speck", quantized
    )


def small():
    return graph(
        [
            conv("c0", 2, 4, (16, 16)),
            Layer("p0", "sumpool2d", {"kernel_size": [2, 2]}, (4, 8, 8)),
            conv("c1", 4, 8, (8, 8)),
            Layer("p1", "sumpool2d", {"kernel_size": [2, 2]}, (8, 4, 4)),
            Layer("flat", "flatten", {}, (128,)),
            Layer(
                "fc",
                "linear",
                {},
                (3,),
                {"weight": np.ones((3, 128), np.int8)},
                NeuronSpec("iaf", 50.0),
                quant=QUANT,
            ),
        ]
    )


# sinabs path used: sinabs.validate_memory_speck.ValidateMapping, a top-level sinabs module that imports
# only numpy (sinabs.backend.dynapcnn.dynapcnn_layer.memory_summary holds the same formula but its package
# __init__ imports samna). Cases: (c_in, c_out, kernel, stride, padding, input map).
SINABS_CASES = [
    (2, 16, (3, 3), (1, 1), (1, 1), (64, 64)),
    (16, 32, (3, 3), (2, 2), (1, 1), (33, 33)),
    (64, 128, (3, 3), (1, 1), (1, 1), (32, 32)),  # paper arch A second layer: 128 ch at 32x32
    (128, 128, (5, 5), (1, 1), (2, 2), (16, 16)),
    (32, 11, (4, 4), (1, 1), (0, 0), (4, 4)),  # linear 32*4*4 -> 11 as a conv over its input map
    (3, 1, (1, 1), (1, 1), (0, 0), (7, 5)),
]


@pytest.mark.parametrize("case", SINABS_CASES, ids=str)
def test_memory_matches_sinabs(case):
    c_in, c_out, k, s, p, hw = case
    reference = ValidateMapping(c_in, c_out, k, s, p, list(hw))
    out_h = (hw[0] - k[0] + 2 * p[0]) // s[0] + 1
    out_w = (hw[1] - k[1] + 2 * p[1]) // s[1] + 1
    assert kernel_memory(c_in, c_out, *k) == reference.calculate_kernel_memory()
    assert neuron_memory(c_out, out_h, out_w) == reference.calculate_neuron_memory()


def test_memory_by_hand():
    assert neuron_memory(128, 32, 32) == 128 * 2**10 == 131072 > 64 * 1024
    assert kernel_memory(64, 128, 3, 3) == 64 * 2 ** (4 + 7) == 131072
    assert kernel_memory(2, 16, 3, 3) == 2 * 2 ** (4 + 4) == 512
    assert neuron_memory(10, 1, 1) == 10
    assert neuron_memory(3, 5, 7) == 3 * 2 ** (3 + 3)


def test_small_graph_maps_with_table():
    report = check_speck(small())
    assert report.ok, report.violations
    assert [(r.layer, r.kernel_words, r.neuron_words, r.pooling) for r in report.rows] == [
        ("c0", 2 * 2 ** (4 + 2), 4 * 2 ** (4 + 4), 2),
        ("c1", 4 * 2 ** (4 + 3), 8 * 2 ** (3 + 3), 2),
        ("fc", 8 * 2 ** (4 + 2), 3, 1),
    ]
    assert sorted(r.core for r in report.rows) == [0, 1, 2]
    table = report.table()
    assert table.splitlines()[0].split()[:4] == ["layer", "core", "kernel", "words"]
    assert "fc " in table and "16384/65536" in table


def test_arch_a_second_layer_does_not_fit():
    layers = [conv("c0", 2, 64, (32, 32)), conv("c1", 64, 128, (32, 32))]
    report = check_speck(graph(layers, (2, 32, 32)))
    rows = {r.layer: r for r in report.rows}
    assert rows["c1"].neuron_words == 131072 and rows["c1"].core is None
    assert rows["c0"].core in (0, 1, 2)  # 64 * 2^10 = 64Ki neuron words: only cores 0-2
    (violation,) = report.violations
    assert violation.layer == "c1" and "fits no core" in violation.limit
    assert violation.value == {"kernel": 131072, "neuron": 131072}


def test_matching_moves_a_layer_to_free_a_core():
    assert max_bipartite_matching([[0, 1], [0]], 2) == [1, 0]
    assert max_bipartite_matching([[0], [0], [1]], 2) in ([0, None, 1], [None, 0, 1])


def test_assignment_frees_a_big_core_that_greedy_would_give_a_small_layer():
    # first-fit would put "small" on core 0 and leave the third 64Ki-neuron layer (cores 0-2 only) out
    words = [(1, 1), (1, 64 * KI), (1, 64 * KI), (1, 64 * KI)]
    assignment, violations = assign_cores(["small", "b0", "b1", "b2"], words)
    assert violations == []
    assert sorted(assignment[1:]) == [0, 1, 2] and assignment[0] not in (0, 1, 2)


def test_core_layers_take_pools_and_flatten_and_send_from_the_last():
    cores, misplaced = core_layers(small())
    assert misplaced == []
    assert [(c.layer.name, [p.name for p in c.pools], c.last) for c in cores] == [
        ("c0", ["p0"], "p0"),
        ("c1", ["p1"], "flat"),
        ("fc", [], "fc"),
    ]
    assert [(c.in_map, c.kernel, c.neuron_map) for c in cores][2] == ((8, 4, 4), (4, 4), (3, 1, 1))
    assert destinations(small(), cores) == [1, 1, 0]


def test_violations_come_in_graph_order():
    layers = [
        conv("a", 2, 4, (44, 44), stride=3),
        Layer("join", "add", {}, (4, 44, 44), inputs=("a", "a")),
        Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (4, 22, 22)),
        conv("b", 4, 4, (36, 36), padding=8),
    ]
    report = check_speck(graph(layers, (2, 130, 130)))
    assert [(v.layer, v.limit) for v in report.violations] == [
        ("input", "input <= 128x128"),
        ("a", "stride in 1/2/4/8"),
        ("join", "merge destination"),
        ("pool", "pooling position"),
        ("b", "padding 0..7"),
    ]


def test_fourth_big_neuron_layer_finds_every_core_taken():
    layers = [conv(f"c{i}", 2 if i == 0 else 64, 64, (32, 32), k=1, padding=0) for i in range(4)]
    report = check_speck(graph(layers, (2, 32, 32)))
    assert [r.neuron_words for r in report.rows] == [65536] * 4
    assert sorted(r.core for r in report.rows if r.core is not None) == [0, 1, 2]
    (violation,) = report.violations
    assert "every core it fits is taken" in violation.limit


def test_ten_layers_exceed_nine_cores():
    layers = [conv(f"c{i}", 2, 2, (4, 4)) for i in range(10)]
    report = check_speck(graph(layers, (2, 4, 4)))
    limits = {v.limit: v for v in report.violations}
    assert limits["core layers <= 9"].value == 10
    assert sum(r.core is not None for r in report.rows) == len(CORE_MEMORY)


def limits_of(layers, in_shape=(2, 16, 16), quantized=True):
    return {(v.layer, v.limit): v for v in check_speck(graph(layers, in_shape, quantized)).violations}


def test_geometry_limits():
    found = limits_of(
        [
            conv("stride3", 2, 4, (6, 6), k=3, stride=3, padding=1),
            conv("pad8", 4, 4, (20, 20), k=3, padding=8),
            conv("rect", 4, 4, (18, 20), k=(5, 3), padding=1),
        ],
        in_shape=(2, 16, 16),
    )
    assert found[("stride3", "stride in 1/2/4/8")].value == (3, 3)
    assert found[("pad8", "padding 0..7")].value == (8, 8)
    assert found[("rect", "kernel square")].value == (5, 3)


def test_map_channel_and_kernel_limits():
    found = limits_of([conv("big", 1, 1, (130, 130), k=1, padding=0)], in_shape=(1, 130, 130))
    assert found[("input", "input <= 128x128")].value == (130, 130)
    assert found[("big", "output map <= 64x64")].value == (130, 130)
    found = limits_of(
        [
            Layer("flat", "flatten", {}, (400,)),
            Layer(
                "fc",
                "linear",
                {},
                (1100,),
                {"weight": np.zeros((1100, 400), np.int8), "bias": np.zeros(1100, np.int16)},
                NeuronSpec("iaf", 1.0),
                quant=QUANT,
            ),
        ],
        in_shape=(1, 20, 20),
    )
    assert found[("fc", "kernel <= 16")].value == (20, 20)
    assert "pool the map further" in found[("fc", "kernel <= 16")].fix
    assert found[("fc", "output channels <= 1024")].value == 1100
    assert found[("fc", "bias <= 1024")].value == 1100
    assert ("input", "input <= 128x128") not in found


def test_pooling_must_be_sum_1_2_4_after_a_weight_layer():
    found = limits_of(
        [
            Layer("lead", "sumpool2d", {"kernel_size": [2, 2]}, (2, 8, 8)),
            conv("c0", 2, 4, (8, 8)),
            Layer("p3", "sumpool2d", {"kernel_size": [3, 3]}, (4, 2, 2)),
        ]
    )
    assert found[("lead", "pooling position")].fix == "fold into input downsample"
    assert found[("p3", "sum pooling 1/2/4")].value == (3, 3)
    two_pools = limits_of(
        [
            conv("c0", 2, 4, (16, 16)),
            Layer("pa", "sumpool2d", {"kernel_size": [2, 2]}, (4, 8, 8)),
            Layer("pb", "sumpool2d", {"kernel_size": [4, 4]}, (4, 2, 2)),
        ]
    )
    assert ("pb", "sum pooling 1/2/4") in two_pools  # 2 then 4 combine to 8


def test_quantized_values_and_neuron_limits():
    found = limits_of(
        [
            conv("wide", 2, 4, (16, 16), weight=np.full((4, 2, 3, 3), 200, np.int16)),
            conv("frac", 4, 4, (16, 16), neuron=NeuronSpec("iaf", 10.5)),
            conv("high", 4, 4, (16, 16), neuron=NeuronSpec("iaf", 40000.0)),
            conv("leaky", 4, 4, (16, 16), neuron=NeuronSpec("lif", 10.0, decay=0.5)),
            conv("pern", 4, 4, (16, 16), threshold=np.ones(4)),
        ]
    )
    assert found[("wide", "weight range")].value == (200, 200)
    assert found[("frac", "threshold")].value == 10.5
    assert found[("high", "threshold")].value == 40000.0
    assert found[("leaky", "neuron kind")].value == "lif"
    assert found[("pern", "one threshold per layer")].value == ["threshold"]
    floats = limits_of([conv("w", 2, 4, (16, 16), weight=np.full((4, 2, 3, 3), 0.3))], quantized=False)
    assert floats == {}


def test_destinations_count_merges_and_fan_out_beyond_two_is_reported():
    c0 = conv("c0", 2, 4, (16, 16))
    readers = [
        Layer(
            f"r{i}",
            "conv2d",
            c0.attrs,
            (4, 16, 16),
            {"weight": np.ones((4, 4, 3, 3), np.int8)},
            NeuronSpec("iaf", 1.0),
            inputs=("c0",),
            quant=QUANT,
        )
        for i in range(3)
    ]
    add = Layer("join", "add", {}, (4, 16, 16), inputs=("r0", "r1"))
    after = conv("after", 4, 4, (16, 16))
    report = check_speck(graph([c0, *readers, add, after]))
    found = {(v.layer, v.limit): v for v in report.violations}
    assert list(found) == [("c0", "destinations <= 2")] and found[("c0", "destinations <= 2")].value == 3
    rows = {r.layer: r for r in report.rows}
    assert (rows["r0"].destinations, rows["r1"].destinations, rows["r2"].destinations) == (1, 1, 0)
    assert rows["after"].sources == ("r0", "r1") and rows["c0"].sources == ()
    assert "r0+r1" in report.table()


def test_a_residual_block_maps_with_two_destinations_and_a_merge():
    """stem -> pool -> (a -> b) + pool -> head: the pooled stem sends to a and, through the add, to head."""
    layers = [
        conv("stem", 2, 4, (16, 16)),
        Layer("p", "sumpool2d", {"kernel_size": [2, 2]}, (4, 8, 8)),
        conv("a", 4, 4, (8, 8)),
        conv("b", 4, 4, (8, 8)),
        Layer("join", "add", {}, (4, 8, 8), inputs=("b", "p")),
        conv("head", 4, 3, (1, 1), k=8, padding=0),
    ]
    g = graph(layers)
    report = check_speck(g)
    assert report.ok, report.violations
    assert [(r.layer, r.destinations, r.sources, r.pooling) for r in report.rows] == [
        ("stem", 2, (), 2),
        ("a", 1, ("stem",), 1),
        ("b", 1, ("a",), 1),
        ("head", 0, ("stem", "b"), 1),
    ]
    assert len({r.core for r in report.rows}) == 4
    steps = speck_chain(g)
    assert [s.sources for s in steps] == [(), ("stem",), ("p",), ("a",), ("b", "p"), ("join",)]
    assert steps[4].in_map == (4, 8, 8) and steps[4].neuron is None


def test_merges_the_chip_cannot_run_are_reported():
    stem, a = conv("stem", 2, 4, (16, 16)), conv("a", 4, 4, (16, 16))
    pooled = [
        stem,
        a,
        Layer("join", "add", {}, (4, 16, 16), inputs=("a", "stem")),
        Layer("p", "sumpool2d", {"kernel_size": [2, 2]}, (4, 8, 8)),
        conv("head", 4, 3, (1, 1), k=8, padding=0),
    ]
    limits = [(v.layer, v.limit) for v in check_speck(graph(pooled)).violations]
    assert limits == [("join", "merge destination"), ("p", "pooling position")]
    with pytest.raises(AsaSnnError, match=r"'join': add read by p"):
        speck_chain(graph(pooled))
    last = graph([stem, a, Layer("join", "add", {}, (4, 16, 16), inputs=("a", "stem"))])
    limits = [(v.layer, v.limit, v.value) for v in check_speck(last).violations]
    assert ("join", "merge destination", "the graph output") in limits
    with pytest.raises(AsaSnnError, match=r"'join': add read by the graph output"):
        speck_chain(last)


def test_chain_refuses_what_speck_cannot_run():
    c0 = conv("c0", 2, 4, (16, 16))
    pool = Layer("p", "sumpool2d", {"kernel_size": [2, 2]}, (4, 8, 8))
    with pytest.raises(AsaSnnError, match=r"'join': add reads \['c0', 'p'\] with maps"):
        speck_chain(graph([c0, pool, Layer("join", "add", {}, (4, 16, 16), inputs=("c0", "p"))]))
    two = Layer("two", "conv2d", c0.attrs, (4, 16, 16), dict(c0.tensors), c0.neuron, ("c0", "c0"), QUANT)
    with pytest.raises(AsaSnnError, match=r"'two': conv2d reads \['c0', 'c0'\]; only an add merges"):
        speck_chain(graph([c0, two]))
    with pytest.raises(AsaSnnError, match=r"'cu'.*cuba"):
        speck_chain(graph([conv("cu", 2, 4, (16, 16), neuron=NeuronSpec("cuba", 1.0, du=0.1, dv=0.1))]))
    with pytest.raises(AsaSnnError, match=r"'bare'.*without a neuron"):
        speck_chain(graph([Layer("bare", "conv2d", c0.attrs, (4, 16, 16), {"weight": c0.tensors["weight"]})]))
    with pytest.raises(AsaSnnError, match=r"'c1': output_shape \(4, 9, 9\)"):
        speck_chain(graph([c0, conv("c1", 4, 4, (9, 9))]))
    leaky = graph([conv("lk", 2, 4, (16, 16), neuron=NeuronSpec("lif", 5.0, decay=0.5))])
    with pytest.raises(AsaSnnError, match=r"'lk'.*approximate=True"):
        speck_chain(leaky)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (step,) = speck_chain(leaky, approximate=True)
    assert step.neuron.kind == "iaf" and step.neuron.threshold == 5.0
    assert "'lk'" in str(caught[0].message)


def test_chain_maps_linear_inputs():
    steps = speck_chain(small())
    assert [(s.layer.name, s.in_map) for s in steps] == [
        ("c0", (2, 16, 16)),
        ("p0", (4, 16, 16)),
        ("c1", (4, 8, 8)),
        ("p1", (8, 8, 8)),
        ("flat", (8, 4, 4)),
        ("fc", (8, 4, 4)),
    ]
