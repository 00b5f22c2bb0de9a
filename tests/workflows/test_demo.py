"""The one-command pipeline end to end on a tiny recipe: report folder contents, numbers that agree
between pipeline.json and report.md, backend agreement, and the strategy contract of train_fn."""

import json
import re
from functools import partial

import numpy as np
import pytest

from asa_snn.errors import AsaSnnError
from asa_snn.simulators.base import SimulationResult
from asa_snn.train.trainer import train_recipe
from asa_snn.workflows.analyze import analyze_checkpoints
from asa_snn.workflows.demo import Settings, generated_data, layers_agree, run_pipeline

TINY_SETTINGS = Settings(epochs=1, finetune_epochs=1, n_calib=8, sim_samples=3, fold_test_samples=24)


train_tiny = partial(train_recipe, progress=False)
analyze_tiny = partial(analyze_checkpoints, labels=("vanilla", "asa2"), max_samples=6, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    config = root / "tiny.toml"
    from tests.conftest import TINY

    config.write_text(TINY)
    steps = []
    result = run_pipeline(
        root / "report",
        train_tiny,
        analyze_tiny,
        config=str(config),
        settings=TINY_SETTINGS,
        progress=lambda step, total, message: steps.append((step, total, message)),
    )
    return root, result, steps


def _md_rows(markdown: str, first_cell: str) -> list[list[str]]:
    """Cells of every Markdown table row whose first cell is ``first_cell``."""
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def test_report_folder_holds_every_output_and_no_staging_left(tiny_run):
    root, result, steps = tiny_run
    out = result.out_dir
    for name in (
        "report.html",
        "report.md",
        "pipeline.json",
        "budget/budget.json",
        "budget/budget_rates.png",
        "budget/core_load.png",
        "fold/speck/graph.json",
        "fold/speck/fidelity.json",
        "fold/loihi/graph.json",
        "exports/speck/network.nir",
        "exports/speck/network.onnx",
        "exports/loihi/network.net",
        "exports/loihi/network.nir",
        "figures/fidelity.png",
        "figures/backends_speck.png",
        "figures/core_load.png",
        "analysis/metrics.json",
        "simulate/speck_sinabs.json",
        "train/vanilla/best.safetensors",
        "train/loihi_asa/best.safetensors",
    ):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in root.iterdir()) == ["report", "tiny.toml"]
    assert [s[0] for s in steps] == list(range(1, 9)) and all(s[1] == 8 for s in steps)


def test_pipeline_json_matches_the_returned_document_and_report_md(tiny_run):
    _, result, _ = tiny_run
    document = json.loads((result.out_dir / "pipeline.json").read_text())
    assert document == json.loads(json.dumps(result.document))
    markdown = (result.out_dir / "report.md").read_text()
    assert set(document["models"]) == {"vanilla", "asa", "loihi_asa"}
    for name, model in document["models"].items():
        (row,) = _md_rows(markdown, name)
        assert row[1] == f"{model['test_accuracy']:.4f}"
        assert row[2] == f"{model['test_nasfr']:.4f}"
        assert (result.out_dir / model["checkpoint"]).is_file()
    analysed = json.loads((result.out_dir / "analysis" / "metrics.json").read_text())
    speck_uj = 1e6 * analysed["models"]["asa2"]["energy"]["speck"]["total_j"]
    assert document["models"]["asa"]["energy_uj"]["speck"] == pytest.approx(speck_uj)
    for target in ("speck", "loihi"):
        stages = document["fidelity"][target]["stages"]
        assert [s["stage"][:2] for s in stages] == ["1 ", "2a", "2b", "3 "]
        fold = json.loads((result.out_dir / "fold" / target / "fidelity.json").read_text())
        assert stages[-1]["accuracy"] == fold["stages"][3]["accuracy"]
        (row,) = _md_rows(markdown, stages[-1]["stage"]) or [None]
        assert row[1] == f"{stages[-1]['accuracy']:.4f}"
        assert document["fidelity"][target]["one_recording_pp"] == pytest.approx(100 / fold["test_samples"])
        # the recipe's synthetic test split (12) grown to fold_test_samples for the folds
        assert fold["test_samples"] == 24 and all(stage["samples"] == 24 for stage in fold["stages"])
    summary = dict(result.summary_rows())
    assert "(one test recording = " in summary["speck fidelity float -> quantized"]


def test_backends_agree_exactly_on_integer_graphs_and_absences_are_explained(tiny_run):
    _, result, _ = tiny_run
    speck = result.document["backends"]["speck"]
    runs = speck["runs"]
    assert speck["reference"] == "speck" and runs["speck"]["agrees"] is True
    assert runs["speck-events"]["samples"] == 1 and runs["speck"]["samples"] == 3
    for backend in ("sinabs", "onnx"):
        assert runs[backend]["agrees"] is True, runs[backend]
        assert runs[backend]["spikes_per_sample"] == runs["speck"]["spikes_per_sample"]
    lava = result.document["backends"]["loihi"]["runs"]["lava"]
    if not lava["available"]:
        assert "Lava" in lava["reason"]
    markdown = (result.out_dir / "report.md").read_text()
    (row,) = _md_rows(markdown, "sinabs")
    assert row[-1] == "yes"


def test_budget_and_mapping_verdicts_reach_summary_and_markdown(tiny_run):
    _, result, _ = tiny_run
    document = result.document
    budget = json.loads((result.out_dir / "budget" / "budget.json").read_text())
    assert document["budget"] == budget
    assert len(budget["rows"]) == 8  # the example budget's network limits
    assert "peak_synops_per_second_per_core" in {row["metric"] for row in budget["rows"]}
    verdict = "PASS" if budget["ok"] else "FAIL"
    summary = dict(result.summary_rows())
    assert summary["budget verdict"] == verdict
    markdown = (result.out_dir / "report.md").read_text()
    assert f"**Spike budget speck_budget.toml: {verdict}**" in markdown
    assert summary["speck chip mapping"] == ("fits" if document["mapping"]["speck"]["ok"] else "does not fit")
    speck_layers = [r["layer"] for r in document["mapping"]["speck"]["rows"]]
    assert speck_layers == ["conv0", "conv1", "conv2"][: len(speck_layers)] and speck_layers
    total = document["runtime_s"]["total"]
    assert total >= sum(v for k, v in document["runtime_s"].items() if k != "total") - 0.05
    assert re.search(rf"\| total \| {total:.1f} \|", markdown)


def test_layers_agree_flags_each_layer_that_differs():
    counts = {"a": np.array([[1, 0], [2, 2]]), "b": np.array([[0, 0], [0, 1]])}
    reference = SimulationResult("ref", counts, np.zeros((2, 2, 3)))
    same_a = {"a": counts["a"].copy(), "b": np.array([[0, 0], [1, 0]])}
    assert layers_agree(reference, SimulationResult("x", same_a, np.zeros((2, 2, 3)))) == {
        "a": True,
        "b": False,
    }
    only_a = {"a": counts["a"][:1]}
    assert layers_agree(reference, SimulationResult("y", only_a, np.zeros((1, 2, 3)))) == {
        "a": False,
        "b": False,
    }


def test_train_fn_missing_a_field_is_named_and_nothing_is_written(tmp_path):
    with pytest.raises(AsaSnnError, match=r"test_nasfr, checkpoint.*vanilla"):
        run_pipeline(
            tmp_path / "report",
            lambda config, overrides, out: {"test_accuracy": 0.5},
            analyze_tiny,
            settings=TINY_SETTINGS,
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_and_a_missing_data_folder_are_named(tmp_path):
    with pytest.raises(AsaSnnError, match="sim_samples = 0, expected an integer >= 1"):
        Settings(sim_samples=0)
    with pytest.raises(AsaSnnError, match="finetune_epochs = -1"):
        Settings(finetune_epochs=-1)
    with pytest.raises(AsaSnnError, match="fold_test_samples = 0, expected None or an integer >= 1"):
        Settings(fold_test_samples=0)
    # only a recipe of synthetic data has its folds' test split grown
    assert not generated_data("nmnist_small", []) and generated_data("synthetic_speck", [])
    assert not generated_data("synthetic_speck", ["data.kind=nmnist", "data.root=/nowhere"])
    with pytest.raises(AsaSnnError, match="nowhere: not a folder"):
        run_pipeline(tmp_path / "report", train_tiny, analyze_tiny, data=tmp_path / "nowhere")
    assert list(tmp_path.iterdir()) == []


def test_user_data_folder_and_epochs_reach_train_fn_as_overrides(tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "a.npy").write_bytes(b"")
    seen = []

    def record(config, overrides, out_dir):
        seen.append((config, overrides))
        return {}

    with pytest.raises(AsaSnnError, match="vanilla"):
        run_pipeline(tmp_path / "report", record, analyze_tiny, "my_recipe.toml", recordings, TINY_SETTINGS)
    assert seen == [
        (
            "my_recipe.toml",
            [
                "train.epochs=1",
                "data.kind=folder",
                f"data.root={recordings}",
                "data.test_fraction=0.2",
                "model.attention=none",
            ],
        )
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recordings"]


def test_pipeline_runs_on_a_folder_of_recordings(tmp_path):
    from asa_snn.data.formats import write_numpy
    from asa_snn.data.synthetic import SyntheticDVS, SyntheticDVSConfig
    from tests.conftest import TINY

    recordings = tmp_path / "recordings"
    recordings.mkdir()
    source = SyntheticDVS(24, SyntheticDVSConfig(sensor_size=(16, 16, 2), n_classes=3, n_steps=4), "train")
    rows = ["file,label"]
    for index in range(len(source)):
        write_numpy(source.recording(index), recordings / f"r{index:02d}.npz")
        rows.append(f"r{index:02d}.npz,{int(source.labels[index])}")
    (recordings / "labels.csv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.replace("n_steps = 4\n", "n_steps = 4\ndt_us = 80000\n"))
    result = run_pipeline(
        tmp_path / "report", train_tiny, analyze_tiny, str(config), recordings, TINY_SETTINGS
    )
    document = json.loads((tmp_path / "report" / "pipeline.json").read_text())
    assert document["data"] == str(recordings) and document["simulation_input"].startswith(str(recordings))
    assert (tmp_path / "report" / "report.html").is_file()
    runs = document["backends"]["speck"]["runs"]
    assert runs["speck"]["samples"] == TINY_SETTINGS.sim_samples
    assert runs["sinabs"]["agrees"] is True
    # the folder is simulated as labelled data (its labels.csv): every backend and the budget
    # report accuracy over its first sim_samples rows
    for sims in document["backends"].values():
        for backend, run in sims["runs"].items():
            if run["available"]:
                assert run["accuracy"] is not None, backend
    budget = document["budget"]
    assert budget["labelled"] == TINY_SETTINGS.sim_samples and budget["accuracy"] is not None
    assert budget["data"]["kind"] == "labels.csv"
    assert budget["data"]["labels"] == str((recordings / "labels.csv").resolve())
    assert not (tmp_path / "report" / ".recordings").exists()  # no copy or view of the folder
    assert set(result.document["models"]) == {"vanilla", "asa", "loihi_asa"}
    # a folder of recordings keeps its own test split (20 % of 24) whatever fold_test_samples says
    fold = json.loads((tmp_path / "report" / "fold" / "speck" / "fidelity.json").read_text())
    assert fold["test_samples"] < TINY_SETTINGS.fold_test_samples


def test_a_data_folder_without_recordings_is_refused_before_training(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "labels.csv").write_text("file,label\n")
    (empty / "classes.txt").write_text("a\n")

    def never(config, overrides, out_dir):
        raise AssertionError("trained although the folder holds no recording")

    with pytest.raises(AsaSnnError, match="empty: the folder holds no recordings"):
        run_pipeline(tmp_path / "report", never, analyze_tiny, data=empty, settings=TINY_SETTINGS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
