"""speck_resnet end to end on the embedded synthetic data: trained briefly with ASA-2, folded for
Speck (one residual add), checked on the cores, exported to sinabs (and sinabs' DynapcnnNetwork)
and simulated spike for spike alike by the built-in simulator and sinabs (seed 0)."""

import numpy as np
import pytest
import torch
from offline_sinabs_network import dynapcnn_run

from asa_snn.chips.speck.mapping import check_speck
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.chips.speck.sinabs_backend import SinabsBackend
from asa_snn.errors import AsaSnnError
from asa_snn.models.attention import AdvancedSpatialAttention
from asa_snn.models.networks import SEWBasicBlock
from asa_snn.models.registry import ModelSpec, build_model
from asa_snn.train.config import load_config, resolve_config_path
from asa_snn.train.run import load_run
from asa_snn.train.trainer import train
from asa_snn.workflows.fold import run_fold
from asa_snn.workflows.fold_steps import stack

# The shipped recipe at a test's size: 3 classes, 16x16 frames, 8 steps, 3 epochs (seconds on 2 cores).
OVERRIDES = [
    "data.n_samples=56",
    "data.n_test_samples=14",
    "data.n_classes=3",
    "data.sensor_size=[16,16]",
    "data.n_steps=8",
    "model.input_shape=[2,16,16]",
    "model.timesteps=8",
    "model.num_classes=3",
    "train.epochs=3",
    "train.batch_size=8",
    "train.seed=0",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speck_resnet")
    config = load_config(resolve_config_path("synthetic_speck_resnet"), OVERRIDES)
    result = train(config, folder / "run", progress=False)
    checkpoint = folder / "run" / "best.safetensors"
    outcome = run_fold(checkpoint, "speck", folder / "folded", finetune_epochs=1, n_calib=8)
    frames, labels = stack(load_run(checkpoint).data.test)
    return result, load_run(checkpoint).model, outcome, frames, labels


def test_trains_with_asa_in_the_residual_block_above_chance(trained):
    result, model, *_ = trained
    block = model.blocks[1]
    assert isinstance(block, SEWBasicBlock) and block.shortcut is None
    assert isinstance(block.first.attention, AdvancedSpatialAttention)
    assert isinstance(block.second.attention, AdvancedSpatialAttention)
    assert result.test_accuracy > 0.5  # 3 classes: chance is 1/3


def test_fold_keeps_the_add_and_folds_attention_into_every_conv(trained):
    _, _, outcome, _, _ = trained
    graph = outcome.graph
    assert graph.quantized and graph.target == "speck"
    assert [(x.name, x.op, x.inputs) for x in graph.layers] == [
        ("conv0", "conv2d", ()),
        ("spool0", "sumpool2d", ()),
        ("conv1_0", "conv2d", ()),
        ("conv1_1", "conv2d", ()),
        ("add1", "add", ("conv1_1", "spool0")),
        ("conv2", "conv2d", ()),
        ("spool2", "sumpool2d", ()),
        ("conv3", "conv2d", ()),
    ]
    attention = {x["layer"]: x["attention"] for x in outcome.fidelity["fold"]["layers"]}
    assert attention == {
        "conv0": "AdvancedSpatialAttention",
        "conv1_0": "AdvancedSpatialAttention",
        "conv1_1": "AdvancedSpatialAttention",
        "conv2": "AdvancedSpatialAttention",
        "conv3": "none",
    }
    assert [s["stage"][:2] for s in outcome.fidelity["stages"]] == ["1 ", "2a", "2b", "3 "]


def test_fits_five_cores_with_two_destinations_and_a_merge(trained):
    report = check_speck(trained[2].graph)
    assert report.ok, report.violations
    assert [(r.layer, r.destinations, r.sources) for r in report.rows] == [
        ("conv0", 2, ()),
        ("conv1_0", 1, ("conv0",)),
        ("conv1_1", 1, ("conv1_0",)),
        ("conv2", 1, ("conv0", "conv1_1")),
        ("conv3", 0, ("conv2",)),
    ]
    assert len({r.core for r in report.rows}) == 5


def test_builtin_simulator_and_sinabs_agree_spike_for_spike(trained):
    _, _, outcome, frames, labels = trained
    ours = SpeckSimulator().run(outcome.graph, frames, record=True)
    theirs = SinabsBackend().run(outcome.graph, frames, record=True)
    assert set(ours.spike_trains) == {"conv0", "conv1_0", "conv1_1", "conv2", "conv3"}
    for name, train_ in ours.spike_trains.items():
        np.testing.assert_array_equal(train_, theirs.spike_trains[name], err_msg=name)
    assert ours.spike_trains["conv0"].sum() > 0 and ours.spike_trains["conv2"].sum() > 0
    assert (ours.predictions() == labels).mean() > 0.5


def test_dynapcnn_network_takes_the_export_and_gives_the_same_output(trained, tmp_path):
    _, _, outcome, frames, _ = trained
    found = dynapcnn_run(outcome.graph, frames[:4], tmp_path)
    assert {layer: sorted(sent) for layer, sent in found["destinations"].items()} == {
        "conv0": ["conv1_0", "conv2"],
        "conv1_0": ["conv1_1"],
        "conv1_1": ["conv2"],
        "conv2": ["conv3"],
        "conv3": ["exit"],
    }
    rows = {r.layer: [r.kernel_words, r.neuron_words] for r in check_speck(outcome.graph).rows}
    assert found["memory"] == rows
    assert found["order"] == list(rows)  # sinabs' layer indices follow the graph's core rows
    ours = SpeckSimulator().run(outcome.graph, frames[:4]).outputs
    np.testing.assert_array_equal(np.asarray(found["output"]), ours)


def test_builder_shapes_and_refusals():
    model = build_model(ModelSpec("speck_resnet", "none", 4, (2, 32, 32), 5)).eval()
    with torch.no_grad():
        assert model(torch.zeros(4, 3, 2, 32, 32)).shape == (3, 5)
    with pytest.raises(AsaSnnError, match=r"speck_resnet.*at most 64 x 64, got 96 x 96"):
        build_model(ModelSpec("speck_resnet", "none", 4, (2, 96, 96), 5))
    with pytest.raises(AsaSnnError, match=r"speck_resnet: input H=30 must be divisible by 4"):
        build_model(ModelSpec("speck_resnet", "none", 4, (2, 30, 32), 5))
