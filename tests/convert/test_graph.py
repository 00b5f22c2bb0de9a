"""The folded graph on disk: round trip, no pickle, versioning, clear errors."""

import json

import numpy as np
import pytest

from asa_snn.convert.graph import (
    GRAPH_VERSION,
    FoldedGraph,
    InputSpec,
    Layer,
    LayerQuant,
    NeuronSpec,
    load_graph,
    save_graph,
)
from asa_snn.errors import AsaSnnError, InputFormatError


def small_graph() -> FoldedGraph:
    rng = np.random.default_rng(0)
    conv = Layer(
        "conv0",
        "conv2d",
        {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1], "in_channels": 2, "out_channels": 4},
        (4, 8, 8),
        {"weight": rng.integers(-127, 128, (4, 2, 3, 3)).astype(np.int8)},
        NeuronSpec("iaf", threshold=300.0, reset="subtract", min_v=-300.0),
        quant=LayerQuant(scale=100.0, weight_bits=8, state_bits=16),
        source="blocks.0",
    )
    pool = Layer("pool0", "sumpool2d", {"kernel_size": [2, 2]}, (4, 4, 4))
    flat = Layer("flat", "flatten", {}, (64,))
    fc = Layer(
        "fc",
        "linear",
        {"in_features": 64, "out_features": 3},
        (3,),
        {"weight": rng.integers(-127, 128, (3, 64)).astype(np.int8), "bias": np.array([1, -2, 3], np.int16)},
        NeuronSpec("iaf", threshold=200.0, reset="zero"),
        quant=LayerQuant(scale=50.0, weight_bits=8, state_bits=16),
    )
    return FoldedGraph(
        [conv, pool, flat, fc],
        InputSpec((2, 8, 8), (32, 32, 2), downsample=4, dt_us=20_000, n_steps=16),
        num_classes=3,
        target="speck",
        quantized=True,
        provenance={"checkpoint_sha256": "ab" * 32},
    )


def test_round_trip_keeps_every_value(tmp_path):
    graph = small_graph()
    save_graph(graph, tmp_path / "g")
    loaded = load_graph(tmp_path / "g")
    assert loaded.input == graph.input
    assert [layer.name for layer in loaded.layers] == ["conv0", "pool0", "flat", "fc"]
    for before, after in zip(graph.layers, loaded.layers, strict=True):
        assert after.op == before.op and after.attrs == before.attrs and after.neuron == before.neuron
        assert after.quant == before.quant and after.output_shape == before.output_shape
        assert set(after.tensors) == set(before.tensors)
        for key, value in before.tensors.items():
            assert after.tensors[key].dtype == value.dtype
            np.testing.assert_array_equal(after.tensors[key], value)
    assert loaded.provenance == graph.provenance and loaded.quantized and loaded.target == "speck"


def test_json_is_readable_and_holds_no_arrays(tmp_path):
    save_graph(small_graph(), tmp_path / "g")
    document = json.loads((tmp_path / "g" / "graph.json").read_text())
    assert document["layers"][0]["tensors"]["weight"] == {"shape": [4, 2, 3, 3], "dtype": "int8"}
    assert document["layers"][0]["neuron"]["threshold"] == 300.0
    assert (tmp_path / "g" / "graph.json").stat().st_size < 5000


def test_other_version_is_refused_with_both_versions_named(tmp_path):
    save_graph(small_graph(), tmp_path / "g")
    path = tmp_path / "g" / "graph.json"
    document = json.loads(path.read_text())
    document["version"] = GRAPH_VERSION + 1
    path.write_text(json.dumps(document))
    with pytest.raises(
        InputFormatError, match=f"version {GRAPH_VERSION + 1} but this asa-snn reads version {GRAPH_VERSION}"
    ):
        load_graph(tmp_path / "g")


def test_missing_tensor_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    save_graph(small_graph(), tmp_path / "g")
    tensors = load_file(tmp_path / "g" / "tensors.safetensors")
    del tensors["fc.bias"]
    save_file(tensors, tmp_path / "g" / "tensors.safetensors")
    with pytest.raises(InputFormatError, match=r"tensor 'fc\.bias' listed in graph\.json is missing"):
        load_graph(tmp_path / "g")


def test_not_a_graph_folder(tmp_path):
    with pytest.raises(InputFormatError, match=r"missing graph\.json"):
        load_graph(tmp_path)
    (tmp_path / "graph.json").write_text("{not json")
    (tmp_path / "tensors.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(InputFormatError, match="not valid JSON"):
        load_graph(tmp_path)


def test_failed_save_keeps_the_previous_graph(tmp_path, monkeypatch):
    graph = small_graph()
    save_graph(graph, tmp_path / "g")
    graph.layers[0].tensors["weight"] = np.zeros((4, 2, 3, 3), np.int8)

    def broken_save(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.numpy.save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_graph(graph, tmp_path / "g")
    assert np.any(load_graph(tmp_path / "g").layers[0].tensors["weight"] != 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_unknown_op_and_neuron_are_rejected():
    with pytest.raises(AsaSnnError, match="op 'maxpool' unknown"):
        Layer("x", "maxpool", {}, (1,))
    with pytest.raises(AsaSnnError, match="neuron kind 'hh' unknown"):
        NeuronSpec("hh", 1.0)
    with pytest.raises(AsaSnnError, match="graph has no layer 'nope'"):
        small_graph().layer("nope")


def _saved_document(tmp_path):
    save_graph(small_graph(), tmp_path / "g")
    return json.loads((tmp_path / "g" / "graph.json").read_text())


def _load_edited(tmp_path, document):
    (tmp_path / "g" / "graph.json").write_text(json.dumps(document))
    return load_graph(tmp_path / "g")


@pytest.mark.parametrize("depth", [100_000, 70])
def test_deep_json_is_refused_naming_the_file(tmp_path, depth):
    """Past the interpreter's recursion limit (RecursionError inside json) and just past
    MAX_JSON_DEPTH (parsed, then refused before anything walks it)."""
    save_graph(small_graph(), tmp_path / "g")
    (tmp_path / "g" / "graph.json").write_text("[" * depth + "]" * depth)
    with pytest.raises(InputFormatError, match=r"graph\.json: JSON nested") as info:
        load_graph(tmp_path / "g")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["layers"][0].update(output_shape=[4.5, 8, 8]), r"output_shape\[0\] is 4\.5"),
        (lambda d: d["layers"][0].update(output_shape=[4.0, 8, 8]), r"output_shape\[0\] is 4\.0"),
        (lambda d: d["layers"][0].update(output_shape=[True, 8, 8]), r"output_shape\[0\] is True"),
        (lambda d: d["layers"][0].update(inputs=[3]), "inputs .* a list of layer names"),
        (lambda d: d.update(num_classes=3.0), "num_classes must be an integer"),
        (lambda d: d.update(vote=1.5), "vote must be an integer"),
        (lambda d: d["input"].update(n_steps=16.0), r"input\.n_steps is 16\.0"),
        (lambda d: d["input"].update(shape=[2, 8.5, 8]), r"input\.shape\[1\] is 8\.5"),
        (lambda d: d["input"].update(downsample="4"), r"input\.downsample is '4'"),
        (lambda d: d["layers"][0]["attrs"].update(groups=1.0), "attribute groups must be an integer"),
        (lambda d: d["layers"][0]["attrs"].update(stride=[1.5, 1]), "attribute stride must be"),
        (lambda d: d["layers"][3]["attrs"].update(in_features=64.0), "attribute in_features must be"),
    ],
)
def test_integer_fields_take_integers_only(tmp_path, edit, message):
    """Every integer field of graph.json: a float (even a whole one) or a boolean is an error naming
    the file and field, never rounded."""
    document = _saved_document(tmp_path)
    edit(document)
    with pytest.raises(InputFormatError, match=message) as info:
        _load_edited(tmp_path, document)
    assert "graph.json" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("target", ["Speck", "speck loihi", "", "7up", 7, None, "x" * 65])
def test_target_must_be_a_lowercase_identifier(tmp_path, target):
    document = _saved_document(tmp_path)
    document["target"] = target
    with pytest.raises(InputFormatError, match="is not a chip name; expected a lowercase identifier"):
        _load_edited(tmp_path, document)


def test_any_identifier_target_loads(tmp_path):
    """Whether the target names a known chip is the chip registry's question, not the graph's."""
    document = _saved_document(tmp_path)
    document["target"] = "toaster_2"
    assert _load_edited(tmp_path, document).target == "toaster_2"


@pytest.mark.parametrize(
    ("quant", "message"),
    [
        ({"scale": float("nan")}, "quant scale is nan; expected a finite number > 0"),
        ({"scale": float("inf")}, "quant scale is inf"),
        ({"scale": 0.0}, "quant scale is 0.0"),
        ({"scale": -2.0}, "quant scale is -2.0"),
        ({"scale": "100"}, "quant scale is '100'"),
        ({"weight_bits": "eight"}, "quant weight_bits is 'eight'; expected an integer 2..32"),
        ({"weight_bits": 8.0}, "quant weight_bits is 8.0"),
        ({"weight_bits": True}, "quant weight_bits is True"),
        ({"weight_bits": 1}, "quant weight_bits is 1"),
        ({"state_bits": 33}, "quant state_bits is 33"),
        ({"weight_exponent": 1000}, "quant weight_exponent is 1000"),
    ],
)
def test_quantization_metadata_is_checked(tmp_path, quant, message):
    document = _saved_document(tmp_path)
    document["layers"][0]["quant"].update(quant)
    with pytest.raises(InputFormatError, match=message) as info:
        _load_edited(tmp_path, document)
    assert "graph.json" in str(info.value) and "conv0" in str(info.value)


def test_multi_spike_must_be_a_boolean(tmp_path):
    document = _saved_document(tmp_path)
    document["layers"][0]["neuron"]["multi_spike"] = "yes"
    with pytest.raises(InputFormatError, match="multi_spike is 'yes'; expected true or false"):
        _load_edited(tmp_path, document)


def test_numpy_integers_are_integers():
    """Graphs built in code (the fold) may carry NumPy integers; they are taken as ints."""
    layer = Layer("flat", "flatten", {}, (np.int64(64),))
    assert layer.output_shape == (64,) and type(layer.output_shape[0]) is int
