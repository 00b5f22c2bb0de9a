"""Running a folded graph by backend name: inputs, op counts, summary, CLI simulate / check."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from asa_snn.chips.registry import get_backend
from asa_snn.cli import main
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec, save_graph
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.formats import write_numpy
from asa_snn.data.model_input import frames_for
from asa_snn.energy.model import synaptic_ops
from asa_snn.energy.synapses import dense_flops
from asa_snn.errors import AsaSnnError, InputFormatError, MissingDependencyError
from asa_snn.simulators.base import SimulationResult
from asa_snn.simulators.inputs import (
    BuiltinDataDeprecation,
    builtin_count,
    load_input,
    recordings,
    synthetic_for_graph,
)
from asa_snn.simulators.operations import graph_layer_ops, layer_geometry
from asa_snn.workflows.simulate import simulate, simulate_summary


def speck_graph(kernel: int = 3) -> FoldedGraph:
    """conv 2->4 (iaf) -> sumpool 2 -> flatten -> linear 64->3 (iaf), int8, 8x8 frames of a 32x32 sensor."""
    rng = np.random.default_rng(1)
    conv = Layer(
        "conv",
        "conv2d",
        {
            "kernel_size": [kernel, kernel],
            "stride": [1, 1],
            "padding": [kernel // 2] * 2,
            "in_channels": 2,
            "out_channels": 4,
        },
        (4, 8, 8),
        {"weight": rng.integers(-20, 60, (4, 2, kernel, kernel)).astype(np.int8)},
        NeuronSpec("iaf", threshold=100.0, reset="subtract", min_v=-100.0),
        quant=LayerQuant(1.0, 8, 16),
    )
    pool = Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (4, 4, 4))
    flat = Layer("flat", "flatten", {}, (64,))
    fc = Layer(
        "fc",
        "linear",
        {"in_features": 64, "out_features": 3},
        (3,),
        {"weight": rng.integers(-30, 80, (3, 64)).astype(np.int8)},
        NeuronSpec("iaf", threshold=120.0, reset="subtract", min_v=-120.0),
        quant=LayerQuant(1.0, 8, 16),
    )
    spec = InputSpec((2, 8, 8), (32, 32, 2), downsample=4, dt_us=20_000, n_steps=8)
    return FoldedGraph([conv, pool, flat, fc], spec, num_classes=3, target="speck", quantized=True)


def test_dense_flops_and_layer_ops_by_hand():
    graph = speck_graph()
    assert dense_flops(layer_geometry(graph.layers[0], (2, 8, 8))) == 3 * 3 * 8 * 8 * 2 * 4
    assert dense_flops(layer_geometry(graph.layers[3], (64,))) == 64 * 3
    frames = np.zeros((2, 3, 2, 8, 8))
    frames[0, 0, 0, 0, 0] = 5  # 5 input events in sample 0 (a corner), none in sample 1
    counts = {"conv": np.array([[2, 1, 0], [0, 0, 0]]), "fc": np.array([[0, 1, 0], [0, 0, 1]])}
    maps = {"conv": np.zeros((2, 4, 8, 8)), "fc": np.array([[1.0, 0, 0], [0, 0, 1]])}
    maps["conv"][0, 0, 0, 0], maps["conv"][0, 3, 7, 6] = 2, 1  # sum pooling keeps both
    result = SimulationResult("test", counts, np.zeros((2, 3, 3)), spike_maps=maps)
    conv_ops, fc_ops = graph_layer_ops(graph, result, frames)
    assert conv_ops.input_events == 2.5 and conv_ops.input_size == 128 and conv_ops.neurons == 256
    assert conv_ops.output_spikes == 1.5 and conv_ops.timesteps == 3
    assert fc_ops.input_events == 1.5 and fc_ops.input_size == 64 and fc_ops.neurons == 3
    # corner of a padded 3x3 conv: 4 output channels x 2 x 2 positions = 16 synapses per event
    assert conv_ops.event_fanout_sum == 5 * 16 / 2 and fc_ops.event_fanout_sum == 3 * 3 / 2
    # without spike maps the positions are unknown: spike counts and the mean fan-out
    blind = graph_layer_ops(graph, SimulationResult("test", counts, np.zeros((2, 3, 3))), frames)
    assert blind[0].event_fanout_sum == 40 and blind[1].event_fanout_sum is None
    assert blind[1].input_events == 1.5 and synaptic_ops(blind[1]) == 1.5 * 3


def test_speck_and_sinabs_summaries_agree():
    graph = speck_graph()
    _, speck = simulate(graph, "builtin:synthetic:6", "speck")
    _, sinabs = simulate(graph, "builtin:synthetic:6", "sinabs")
    assert speck["spikes_per_sample"] == sinabs["spikes_per_sample"]
    assert speck["energy_j"] == sinabs["energy_j"]
    assert speck["samples"] == 6 and speck["accuracy"] is not None
    assert sum(speck["spikes_per_sample"].values()) > 0


def test_summary_reports_neurobench_metrics_beside_nasfr():
    graph = speck_graph()
    _, whole = simulate(graph, "builtin:synthetic:5", "speck")
    _, batched = simulate(graph, "builtin:synthetic:5", "speck", batch_size=2)
    bench, steps = whole["neurobench"], whole["timesteps"]
    weights = [layer.tensors["weight"] for layer in (graph.layers[0], graph.layers[3])]
    assert bench["footprint"] == 4 * 2 * 3 * 3 + 3 * 64  # int8 weights, one byte each, no bias
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert bench["connection_sparsity"] == zeros / (72 + 192)
    neurons = 4 * 8 * 8 + 3
    spikes = sum(whole["spikes_per_sample"].values())
    assert whole["nasfr"] == pytest.approx(spikes / (neurons * steps)) and whole["nasfr"] > 0
    # the simulators count spikes, so activation sparsity is exactly 1 - NASFR here
    assert bench["activation_sparsity"] == pytest.approx(1 - whole["nasfr"])
    assert bench["membrane_updates"] == neurons * steps
    synops = bench["synaptic_operations"]
    # a chip receives every input as events: no MACs, every layer's synaptic ops are ACs
    assert synops["Effective_MACs"] == 0
    assert synops["Effective_ACs"] == pytest.approx(sum(layer["synaptic_ops"] for layer in whole["layers"]))
    assert synops["Dense"] == steps * (3 * 3 * 8 * 8 * 2 * 4 + 64 * 3)
    # batches of 2, 2 and 1 recordings merge to the same figures (per-sample means)
    assert batched["nasfr"] == pytest.approx(whole["nasfr"])
    assert batched["neurobench"]["activation_sparsity"] == pytest.approx(bench["activation_sparsity"])
    assert batched["neurobench"]["synaptic_operations"] == pytest.approx(synops)
    assert {
        k: batched["neurobench"][k] for k in ("footprint", "connection_sparsity", "membrane_updates")
    } == {k: bench[k] for k in ("footprint", "connection_sparsity", "membrane_updates")}


def test_recording_becomes_the_graph_input(tmp_path):
    graph = speck_graph()
    events = make_events(
        np.array([0, 10, 25_000]), np.array([0, 5, 31]), np.array([0, 4, 31]), np.array([1, 1, 0])
    )
    frames = frames_for(graph.input, EventStream(events, (32, 32, 2)))
    assert frames.shape == (8, 2, 8, 8)
    assert frames[0, 1, 0, 0] == 1 and frames[0, 1, 1, 1] == 1 and frames[1, 0, 7, 7] == 1
    write_numpy(EventStream(events, (32, 32, 2)), tmp_path / "rec.npz")
    batch = load_input(graph, str(tmp_path / "rec.npz"))
    assert batch.frames.shape == (1, 8, 2, 8, 8) and batch.labels.tolist() == [-1]


def test_wrong_sensor_is_named():
    graph = speck_graph()
    stream = EventStream(make_events(np.array([0]), np.array([1]), np.array([1]), np.array([0])), (64, 64, 2))
    with pytest.raises(InputFormatError, match="sensor 64x64 but the model expects recordings of a 32x32"):
        frames_for(graph.input, stream)


def test_backend_errors_are_clear():
    with pytest.raises(AsaSnnError, match=r"unknown backend 'truenorth'; expected one of"):
        get_backend("truenorth")
    with pytest.raises(MissingDependencyError, match=r"Python 3\.10"):
        get_backend("lava")
    with pytest.raises(AsaSnnError, match="no such event file or folder"):
        load_input(speck_graph(), "/nonexistent/recording.aedat4")


def test_builtin_data_spelling():
    assert builtin_count("builtin:synthetic") == 32
    assert builtin_count("builtin:synthetic:5") == 5
    for bad in ("builtin:other", "builtin:synthetic:abc", "builtin:synthetic:0", "builtin:synthetic:2000000"):
        with pytest.raises(AsaSnnError, match=r"'builtin:synthetic' or 'builtin:synthetic:N'") as info:
            builtin_count(bad)
        assert bad in str(info.value) and "\n" not in str(info.value)
    assert builtin_count("synthetic_recordings/") is None
    assert builtin_count("./builtin:synthetic") is None


def test_bare_synthetic_is_deprecated_and_a_folder_of_that_name_wins(tmp_path, monkeypatch):
    graph = speck_graph()
    monkeypatch.chdir(tmp_path)
    with pytest.warns(
        BuiltinDataDeprecation, match=r"'synthetic:2' is deprecated: write 'builtin:synthetic:2'"
    ):
        assert load_input(graph, "synthetic:2").labels.tolist() == [0, 1]
    events = make_events(np.array([0, 10]), np.array([0, 5]), np.array([0, 4]), np.array([1, 0]))
    (tmp_path / "synthetic").mkdir()
    write_numpy(EventStream(events, (32, 32, 2)), tmp_path / "synthetic" / "rec.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = load_input(graph, "synthetic")
    assert batch.labels.tolist() == [-1] and batch.names == [str(Path("synthetic") / "rec.npz")]
    assert load_input(graph, "builtin:synthetic:3").labels.tolist() == [0, 1, 2]


def test_builtin_recordings_are_the_datasets_generated_one_at_a_time():
    graph = speck_graph()
    dataset = synthetic_for_graph(graph, 5)
    pairs = list(recordings(graph, "builtin:synthetic:5", max_samples=4))
    assert len(pairs) == 4
    for index, (stream, label) in enumerate(pairs):
        expected = dataset.recording(index)
        np.testing.assert_array_equal(stream.events, expected.events)
        assert (stream.source, stream.sensor_size, label) == (
            expected.source,
            expected.sensor_size,
            dataset.labels[index],
        )
    with pytest.raises(AsaSnnError, match="max_samples must be an integer >= 1, got 0"):
        list(recordings(graph, "builtin:synthetic:5", max_samples=0))


def test_simulate_summary_streams_the_same_summary():
    graph = speck_graph()
    _, whole = simulate(graph, "builtin:synthetic:5", "speck", batch_size=2)
    assert simulate_summary(graph, "builtin:synthetic:5", "speck", batch_size=2) == whole
    assert whole["samples"] == 5 and len(whole["predictions"]) == 5


def test_simulate_command_writes_json(tmp_path, capsys):
    save_graph(speck_graph(), tmp_path / "graph")
    out = tmp_path / "sim.json"
    args = [
        "simulate",
        str(tmp_path / "graph"),
        "--backend",
        "speck",
        "--data",
        "builtin:synthetic:4",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    summary = json.loads(out.read_text())
    assert set(summary["spikes_per_sample"]) == {"conv", "fc"}
    assert set(summary["energy_j"]) == {"fp32_45nm", "int8_45nm", "loihi", "speck"}
    assert set(summary["neurobench"]["synaptic_operations"]) == {"Effective_MACs", "Effective_ACs", "Dense"}
    printed = capsys.readouterr().out
    assert "energy speck" in printed and "NeuroBench metrics" in printed
    for row in ("NASFR", "footprint (bytes)", "activation sparsity", "Effective_ACs", "membrane updates"):
        assert row in printed
    assert f"{summary['neurobench']['footprint']:,}" in printed


def test_check_command_passes_and_fails(tmp_path, capsys):
    save_graph(speck_graph(), tmp_path / "ok")
    assert main(["check", str(tmp_path / "ok"), "--target", "speck"]) == 0
    assert "fits speck" in capsys.readouterr().out
    save_graph(speck_graph(kernel=17), tmp_path / "bad")
    assert main(["check", str(tmp_path / "bad"), "--target", "speck"]) == 1
    captured = capsys.readouterr()
    assert "VIOLATION conv" in captured.out and "does not fit speck" in captured.err
