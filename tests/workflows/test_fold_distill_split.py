"""Fold fine-tuning with chip dynamics and distillation; stages on the test split; input report."""

import json

import numpy as np
import pytest
import torch
from graph_builders import chain_graph
from torch.utils.data import TensorDataset

from asa_snn.chips.loihi.netx_export import to_netx_layers
from asa_snn.chips.loihi.simulator import latency_steps
from asa_snn.chips.speck.quantizer import SpeckQuantizer
from asa_snn.convert.chip_dynamics import SpeckDynamics
from asa_snn.convert.finetune import LossWeights, Teacher, finetune
from asa_snn.convert.graph import NeuronSpec
from asa_snn.convert.graph_model import GraphModel
from asa_snn.errors import AsaSnnError
from asa_snn.train.checkpoint import load_model
from asa_snn.train.config import load_config
from asa_snn.train.metrics import to_time_major
from asa_snn.train.trainer import train
from asa_snn.workflows.fidelity_report import input_difference
from asa_snn.workflows.fold import run_fold
from asa_snn.workflows.fold_steps import TuneOptions, finetune_lr


@pytest.fixture(scope="module")
def loihi_checkpoint(tmp_path_factory):
    from tests.conftest import TINY

    folder = tmp_path_factory.mktemp("tiny_loihi")
    text = TINY.replace('network = "speck_net"', 'network = "loihi_net"').replace(
        "channels = [4, 8]", "channels = [4, 8], hidden = 8"
    )
    (folder / "tiny.toml").write_text(text.replace("timesteps = 4", 'timesteps = 4\nattention = "asa2"'))
    train(load_config(folder / "tiny.toml", ["train.epochs=1"]), folder / "run", progress=False)
    return folder / "run" / "best.safetensors"


def test_loihi_fold_reports_on_the_test_split_and_names_the_dropped_input(loihi_checkpoint, tmp_path):
    out = tmp_path / "folded"
    fidelity = TuneOptions(select_by="fidelity")
    outcome = run_fold(loihi_checkpoint, "loihi", out, finetune_epochs=1, n_calib=8, tune_options=fidelity)
    doc = json.loads((out / "fidelity.json").read_text())
    assert doc["splits"]["report"] == "test" and doc["splits"]["selection"] == "validation"
    assert all(stage["samples"] == doc["test_samples"] == 12 for stage in doc["stages"])
    assert doc["validation_samples"] == 12 and doc["splits"]["training_samples"] == 36
    chip_input = doc["input"]
    assert 0 < chip_input["dropped"] < chip_input["events"]
    assert chip_input["received"] + chip_input["dropped"] == chip_input["events"]
    text = (out / "fidelity.md").read_text()
    assert "test split (12 samples), which chose nothing" in text and "validation split (12 samples)" in text
    assert doc["splits"]["selected_by"] == "agreement with the live model on the validation split"
    assert "split (12 samples) by agreement with the live model." in text
    assert all("val_fidelity_loss" in entry for entry in doc["finetune_history"])
    assert f"{chip_input['dropped']:.0f} dropped" in text
    assert len(doc["finetune_history"]) == 2 and outcome.graph.quantized
    # loihi_net: conv, conv, hidden, output: four synaptic delays, four empty steps after each recording
    latency = latency_steps(to_netx_layers(outcome.graph))
    assert chip_input["drain_steps"] == latency == 4
    assert f"runs {latency} steps without input" in text
    run_lr = load_model(loihi_checkpoint)[1]["config"]["optim"]["lr"]
    assert doc["tuning"]["tune"]["lr"] == run_lr
    assert f"Adam at rate {run_lr:g}; device cpu." in text


def test_fine_tuning_runs_at_the_training_rate_unless_given():
    assert finetune_lr(TuneOptions(), 3e-3) == 3e-3
    assert finetune_lr(TuneOptions(lr=5e-2), 3e-3) == 5e-2
    for bad in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(AsaSnnError, match=r"fold --lr: .*expected a finite rate > 0"):
            TuneOptions(lr=bad)


def test_a_device_this_machine_lacks_is_refused_before_anything_runs(loihi_checkpoint, tmp_path):
    with pytest.raises(AsaSnnError, match=r"fold --device.*'cuda:7'"):
        run_fold(loihi_checkpoint, "loihi", tmp_path / "out", tune_options=TuneOptions(device="cuda:7"))
    assert not (tmp_path / "out").exists()


def test_input_difference_by_hand():
    frames = np.array([0, 1, 3, 2], np.float32).reshape(1, 1, 1, 2, 2)
    loihi = input_difference("loihi", frames)
    assert (loihi["events"], loihi["received"], loihi["dropped"]) == (6.0, 3.0, 3.0)
    assert input_difference("speck", frames)["dropped"] == 0.0
    assert input_difference("generic", frames)["dropped"] == 0.0
    drained = input_difference("loihi", frames, drain=4)
    assert drained["drain_steps"] == 4 and "runs 4 steps without input" in drained["description"]
    assert input_difference("loihi", frames)["drain_steps"] == 0


def _float_speck_graph():
    neurons = [NeuronSpec("iaf", 1.0), NeuronSpec("iaf", 1.0), NeuronSpec("iaf", 1.0, "zero")]
    graph = chain_graph(neurons, quantized=False, weight_mean=3.0)
    for layer in graph.layers:
        if "weight" in layer.tensors:
            layer.tensors["weight"] = layer.tensors["weight"] / 80.0
    return graph


def test_distillation_alone_pulls_the_chip_model_toward_the_teacher_rates():
    graph = _float_speck_graph()
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 3, (24, 12, 2, 8, 8), generator=generator).float()
    labels = torch.randint(0, 3, (24,), generator=generator)
    data = TensorDataset(frames, labels)
    teacher = Teacher(torch.full((24, 3), 0.25))
    quantizer = SpeckQuantizer()
    result = finetune(
        graph,
        data,
        data,
        4,
        lr=3e-2,
        batch_size=8,
        dynamics=SpeckDynamics(),
        quantizer=quantizer,
        teacher=teacher,
        weights=LossWeights(label=0.0, teacher=1.0),
    )
    losses = [h["train_loss"] for h in result.history[1:]]
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3, 4]
    assert losses[-1] < 0.8 * losses[0]


def test_tune_options_turn_distillation_off():
    assert TuneOptions().select_by == "fidelity"
    assert TuneOptions().distils and TuneOptions(teacher_weight=0.0).distils
    assert not TuneOptions(teacher_weight=0.0, layer_weight=0.0).distils


def test_the_epoch_is_chosen_by_agreement_with_the_live_model_on_validation():
    """Fine-tuning on labels alone pulls the model away from a teacher it never sees in training;
    selecting by fidelity keeps the epoch closest to the validation teacher, by accuracy not."""
    graph = _float_speck_graph()
    generator = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 3, (24, 12, 2, 8, 8), generator=generator).float()
    labels = torch.randint(0, 3, (24,), generator=generator)
    data = TensorDataset(frames, labels)
    options = {"lr": 3e-2, "batch_size": 8, "dynamics": SpeckDynamics(), "quantizer": SpeckQuantizer()}
    labels_only = LossWeights(label=1.0, teacher=0.0)
    plain = finetune(graph, data, data, 4, weights=labels_only, **options)
    assert plain.selected_by == "validation accuracy"
    assert all("val_fidelity_loss" not in h for h in plain.history)
    # the teacher: the starting graph's own rates, so epoch 0 reproduces it exactly
    start = GraphModel(graph, None, SpeckDynamics(), SpeckQuantizer()).eval()
    with torch.no_grad():
        rates = torch.cat([start(to_time_major(frames[i : i + 8])) for i in range(0, 24, 8)])
    teacher = Teacher(rates)
    weights = LossWeights(1.0, 1.0)
    chosen = finetune(
        graph, data, data, 4, weights=weights, val_teacher=teacher, selection="fidelity", **options
    )
    fidelity = [h["val_fidelity_loss"] for h in chosen.history]
    assert fidelity[0] == pytest.approx(0.0, abs=1e-12) and max(fidelity[1:]) > 0
    assert chosen.best_epoch == 0 and chosen.selected_by.startswith("agreement with the live model")
    # by accuracy (the default), the teacher only breaks ties: the best accuracy, then the most faithful
    tied = finetune(graph, data, data, 4, weights=weights, val_teacher=teacher, **options)
    best = max(tied.history, key=lambda h: (h["val_accuracy"], -h["val_fidelity_loss"]))
    assert tied.best_epoch == best["epoch"] and tied.selected_by.endswith(
        "ties broken by agreement with the live model"
    )
    with pytest.raises(AsaSnnError, match="selection='fidelity' without a validation teacher"):
        finetune(graph, data, data, 1, weights=weights, selection="fidelity", **options)


def test_an_unknown_selection_is_refused():
    with pytest.raises(AsaSnnError, match=r"fold --select-by: 'loss', expected one of fidelity, accuracy"):
        TuneOptions(select_by="loss")
