"""fold end to end on a tiny trained speck_net: files written atomically, keys, bad input."""

import json

import pytest
import torch

from asa_snn.errors import AsaSnnError
from asa_snn.models.registry import ModelSpec, build_model
from asa_snn.train.checkpoint import save_checkpoint
from asa_snn.train.config import load_config
from asa_snn.train.trainer import train
from asa_snn.workflows.fidelity_report import resolution_note
from asa_snn.workflows.fold import run_fold


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from tests.conftest import TINY

    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.toml").write_text(TINY.replace("timesteps = 4", 'timesteps = 4\nattention = "asa2"'))
    config = load_config(folder / "tiny.toml", ["train.epochs=1"])
    train(config, folder / "run", progress=False)
    return folder / "run" / "best.safetensors", folder / "tiny.toml"


def test_fold_writes_graph_and_fidelity_files_with_the_expected_keys(tiny_checkpoint, tmp_path):
    checkpoint, _ = tiny_checkpoint
    out = tmp_path / "folded"
    outcome = run_fold(checkpoint, "speck", out, finetune_epochs=1, n_calib=8)
    assert sorted(p.name for p in out.iterdir()) == [
        ".asa-snn-output",
        "fidelity.json",
        "fidelity.md",
        "graph.json",
        "tensors.safetensors",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["folded"]  # no staging folder left behind
    doc = json.loads((out / "fidelity.json").read_text())
    assert [s["stage"][:2] for s in doc["stages"]] == ["1 ", "2a", "2b", "3 "]
    assert set(doc) >= {"steps", "delta_1_to_3", "goal", "layers", "quantization", "fold", "notes"}
    assert doc["stages"][2]["epochs"] == doc["stages"][0]["epochs"] + 1
    assert set(doc["quantization"]) == {"conv0", "conv1", "conv2"}
    assert outcome.graph.quantized and outcome.goal_met == doc["goal"]["met"]
    markdown = (out / "fidelity.md").read_text()
    assert "(1) -> (3)" in markdown
    one = 100 / doc["test_samples"]
    assert doc["goal"]["one_recording_pp"] == pytest.approx(one) and one > 1
    assert f"On {doc['test_samples']} recordings one recording is {one:.2f} pp" in markdown


@pytest.mark.parametrize(
    ("samples", "expected"), [(70, "1.43 pp"), (99, "1.01 pp"), (100, None), (700, None)]
)
def test_the_report_says_when_one_recording_is_worth_more_than_the_goal(samples, expected):
    goal = {"accuracy_loss_max_pp": 1.0, "one_recording_pp": 100 / samples}
    lines = resolution_note(goal, samples)
    if expected is None:
        assert lines == []
    else:
        assert len(lines) == 1 and expected in lines[0] and "at least 100 recordings" in lines[0]


def test_checkpoint_without_data_config_and_no_calib_is_an_error(tmp_path):
    spec = ModelSpec("speck_net", "asa2", 4, (2, 16, 16), 3, network_options={"channels": [4, 8]})
    path = tmp_path / "bare.safetensors"
    save_checkpoint(path, build_model(spec), spec, {"epoch": 1})
    with pytest.raises(AsaSnnError, match=r"bare\.safetensors.*no data config.*--calib"):
        run_fold(path, "speck", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failing_fold_leaves_an_existing_output_untouched(tiny_checkpoint, tmp_path):
    checkpoint, config = tiny_checkpoint
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    torch.manual_seed(0)
    with pytest.raises(AsaSnnError, match="target 'loihi'"):
        run_fold(checkpoint, "loihi", out, calib=config, finetune_epochs=0, n_calib=4)
    assert (out / "keep.txt").read_text() == "old"


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_checkpoint_with_non_finite_weights_is_refused_naming_the_tensor(tiny_checkpoint, tmp_path, bad):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    checkpoint, _ = tiny_checkpoint
    tensors = load_file(checkpoint)
    with safe_open(checkpoint, framework="pt") as handle:
        metadata = handle.metadata()
    name = next(k for k in sorted(tensors) if k.startswith("model.") and k.endswith("weight"))
    tensors[name].view(-1)[0] = bad
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, broken, metadata)
    with pytest.raises(AsaSnnError, match=rf"broken\.safetensors: tensor '{name.removeprefix('model.')}'"):
        run_fold(broken, "speck", tmp_path / "out", finetune_epochs=0, n_calib=4)
    assert not (tmp_path / "out").exists()
