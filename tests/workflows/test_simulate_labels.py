"""Labelled evaluation: ``simulate`` (and its summary) on labelled data report accuracy,
per-class accuracy and a confusion matrix equal to a hand count of the backend's own predictions;
a labels.csv folder, N-MNIST's numbered layout (real files) and a training config's test split
are recognised; side files are never read as recordings; batches merge exactly."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from graph_builders import loihi_graph, speck_graph

from asa_snn.chips.registry import get_backend
from asa_snn.cli import main
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec, save_graph
from asa_snn.data.events import EventStream
from asa_snn.data.formats import read_events, write_numpy
from asa_snn.data.synthetic import SyntheticDVSConfig, generate_sample
from asa_snn.errors import InputFormatError, MissingDependencyError
from asa_snn.simulators.inputs import load_input, open_recordings, recordings
from asa_snn.simulators.summary import confusion_matrix, label_figures, merge_summaries
from asa_snn.workflows.simulate import data_source, is_config, simulate, simulate_summary

REPO = Path(__file__).resolve().parents[2]
NMNIST = REPO / ".." / "shared" / "data" / "nmnist"
LABELS = [0, 1, 2, 0, 1, 2, 1]
"""Labels of the 7 recordings of the labels.csv folder (the graph is random: any labels do)."""
NOT_RECORDING_NAMES = ("notes.md", "classes.txt", "settings.json", "extra.yaml")


def labelled_folder(root: Path, labels: list[int] = LABELS, names: tuple[str, ...] | None = None) -> Path:
    """A folder of synthetic 16x16 recordings (``rec<i>.npz``), a labels.csv listing them with
    ``labels`` and side files that are no recordings."""
    root.mkdir(parents=True)
    config = SyntheticDVSConfig(sensor_size=(16, 16, 2), n_steps=8, dt_us=20_000, n_classes=3)
    rows = ["file,label"]
    for index, label in enumerate(labels):
        name = f"rec{index}.npz"
        write_numpy(EventStream(generate_sample(config, "test", index).events, (16, 16, 2)), root / name)
        rows.append(f"{name},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "notes.md").write_text("# recorded on a bench\n")
    if names is not None:
        (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def hand_confusion(labels: list[int], predictions: list[int], classes: int) -> list[list[int]]:
    """Counts [true][predicted], one sample at a time."""
    counts = [[0] * classes for _ in range(classes)]
    for label, prediction in zip(labels, predictions, strict=True):
        counts[label][prediction] += 1
    return counts


def nmnist_graph() -> FoldedGraph:
    """A tiny quantized graph for N-MNIST recordings: 34x34 sensor binned by 4 (9x9), cropped to 8x8,
    conv 2->4 (IAF), sum pooling, linear 64 -> 10 (IAF); 10 steps of 30 ms."""
    rng = np.random.default_rng(0)
    quant = LayerQuant(1.0, 8, 16)
    conv_attrs = {
        "kernel_size": [3, 3],
        "stride": [1, 1],
        "padding": [1, 1],
        "in_channels": 2,
        "out_channels": 4,
    }
    layers = [
        Layer(
            "conv1",
            "conv2d",
            conv_attrs,
            (4, 8, 8),
            {"weight": rng.integers(-2, 6, (4, 2, 3, 3)).astype(np.int8)},
            NeuronSpec("iaf", 6.0, min_v=-20.0),
            quant=quant,
        ),
        Layer("pool1", "sumpool2d", {"kernel_size": [2, 2]}, (4, 4, 4)),
        Layer("flat", "flatten", {}, (64,)),
        Layer(
            "fc",
            "linear",
            {"in_features": 64, "out_features": 10},
            (10,),
            {"weight": rng.integers(-3, 6, (10, 64)).astype(np.int8)},
            NeuronSpec("iaf", 10.0, "zero", min_v=-40.0),
            quant=quant,
        ),
    ]
    spec = InputSpec((2, 8, 8), (34, 34, 2), downsample=4, dt_us=30_000, n_steps=10, crop=(0, 0, 8, 8))
    return FoldedGraph(layers, spec, 10, "speck", quantized=True)


def nmnist_labels() -> dict[str, int]:
    lines = (NMNIST / "train" / "labels.txt").read_text().splitlines()
    return {f"{n}.bs2": int(c) for n, c in (line.split() for line in lines if not line.startswith("#"))}


needs_nmnist = pytest.mark.skipif(
    not (NMNIST / "train" / "labels.txt").is_file(), reason=f"real N-MNIST samples not found at {NMNIST}"
)


# ---------------------------------------------------------------- figures of a confusion matrix


def test_confusion_and_figures_by_hand():
    labels = np.array([0, 0, 1, 2, -1, 2])
    predictions = np.array([0, 1, 1, 0, 2, 2])
    confusion = confusion_matrix(labels, predictions, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]  # the -1 (unknown) is left out
    figures = label_figures(confusion)
    assert figures["labelled"] == 5 and figures["accuracy"] == 3 / 5
    assert figures["per_class_accuracy"] == {"0": 0.5, "1": 1.0, "2": 0.5}
    empty_class = label_figures(np.array([[2, 0], [0, 0]]))
    assert empty_class["per_class_accuracy"] == {"0": 1.0, "1": None}
    assert label_figures(np.zeros((3, 3), np.int64)) == {
        "accuracy": None,
        "per_class_accuracy": None,
        "confusion": None,
        "labelled": 0,
    }
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2, found 0\.\.3"):
        confusion_matrix(np.array([0, 3]), np.array([0, 0]), 3)


def test_merge_sums_the_counts_exactly():
    first = {"samples": 2, "predictions": [0, 1], "spikes_per_sample": {}, "layers": [], "energy_j": {}}
    first |= {"notes": [], **label_figures(np.array([[1, 0], [1, 0]]))}
    unlabelled = {**first, "predictions": [1], "samples": 1, **label_figures(np.zeros((2, 2)))}
    third = {**first, "predictions": [1, 1, 0], "samples": 3, **label_figures(np.array([[0, 1], [0, 2]]))}
    merged = merge_summaries([first, unlabelled, third])
    assert merged["confusion"] == [[1, 1], [1, 2]] and merged["labelled"] == 5
    assert merged["accuracy"] == 3 / 5 and merged["per_class_accuracy"] == {"0": 0.5, "1": 2 / 3}
    assert merge_summaries([unlabelled])["accuracy"] is None


# ---------------------------------------------------------------- a labels.csv folder


BACKENDS = [
    ("speck", "speck"),
    ("speck", "speck-events"),
    ("speck", "sinabs"),
    ("speck", "onnx"),
    ("speck", "norse"),
    ("loihi", "loihi"),
    ("loihi", "lava"),
]


@pytest.mark.parametrize(("graph_kind", "backend"), BACKENDS, ids=[b for _, b in BACKENDS])
def test_accuracy_and_confusion_are_a_hand_count_of_the_backends_predictions(graph_kind, backend, tmp_path):
    graph = speck_graph() if graph_kind == "speck" else loihi_graph()
    try:
        runner = get_backend(backend)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    folder = labelled_folder(tmp_path / "data", names=("square", "disk", "ring"))
    batch = load_input(graph, str(folder))
    assert batch.labels.tolist() == LABELS
    predictions = runner.run(graph, batch.frames).predictions(graph.vote).tolist()
    summary = simulate_summary(graph, str(folder), backend, batch_size=3)
    assert summary["predictions"] == predictions
    expected = hand_confusion(LABELS, predictions, 3)
    assert summary["confusion"] == expected and summary["labelled"] == 7
    right = sum(label == prediction for label, prediction in zip(LABELS, predictions, strict=True))
    assert summary["accuracy"] == right / 7
    for k in range(3):
        assert summary["per_class_accuracy"][str(k)] == expected[k][k] / LABELS.count(k)
    assert summary["classes"] == ["square", "disk", "ring"]
    assert summary["data"] == {
        "kind": "labels.csv",
        "source": str(folder),
        "labels": str(folder / "labels.csv"),
    }


def test_batches_merge_to_the_single_batch_summary(tmp_path):
    graph = speck_graph()
    folder = str(labelled_folder(tmp_path / "data"))
    small = simulate_summary(graph, folder, "speck", batch_size=2)
    whole = simulate_summary(graph, folder, "speck", batch_size=32)
    for key in ("accuracy", "per_class_accuracy", "confusion", "labelled", "predictions", "samples", "data"):
        assert small[key] == whole[key], key
    assert small["spikes_per_sample"] == pytest.approx(whole["spikes_per_sample"])
    assert small["energy_j"] == pytest.approx(whole["energy_j"])
    _, kept = simulate(graph, folder, "speck", batch_size=2)
    assert kept == small


def test_a_label_outside_the_graphs_classes_is_one_error_naming_recording_and_label(tmp_path, capfd):
    graph = speck_graph()  # 3 classes
    folder = labelled_folder(tmp_path / "data", labels=[0, 1, 5, 2])
    with pytest.raises(
        InputFormatError, match=r"rec2\.npz: label 5 is outside the graph's 3 classes \(0\.\.2\)"
    ):
        simulate_summary(graph, str(folder), "speck")
    save_graph(graph, tmp_path / "graph")
    assert main(["simulate", str(tmp_path / "graph"), "--data", str(folder)]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rec2.npz: label 5 is outside the graph's 3 classes" in err[0]


def test_a_plain_folder_skips_side_files_and_is_unlabelled(tmp_path):
    graph = speck_graph()
    folder = labelled_folder(tmp_path / "data", labels=[0, 1, 2], names=("a", "b", "c"))
    (folder / "labels.csv").rename(folder / "labels_old.csv")
    for name in NOT_RECORDING_NAMES:
        (folder / name).write_text("not events\n")
    source = open_recordings(graph, str(folder))
    assert source.size == 3 and source.about == {"kind": "folder", "source": str(folder), "labels": None}
    summary = simulate_summary(graph, str(folder), "speck")
    assert summary["samples"] == 3 and summary["labelled"] == 0
    assert (
        summary["accuracy"] is None and summary["confusion"] is None and summary["per_class_accuracy"] is None
    )


def test_simulate_command_prints_accuracy_and_draws_the_confusion_matrix(tmp_path, capsys):
    graph = speck_graph()
    save_graph(graph, tmp_path / "graph")
    folder = labelled_folder(tmp_path / "data", names=("square", "disk", "ring"))
    out = tmp_path / "results" / "sim.json"
    assert main(["simulate", str(tmp_path / "graph"), "--data", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert f"accuracy: {summary['accuracy']:.3f} over 7 labelled recordings" in printed
    per_class = summary["per_class_accuracy"]
    assert (
        f"per class: square {per_class['0']:.3f}, disk {per_class['1']:.3f}, ring {per_class['2']:.3f}"
        in printed
    )
    figure = tmp_path / "results" / "sim_confusion.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["sim.json", "sim_confusion.png"]
    # unlabelled data: no accuracy, no figure
    write_numpy(read_events(folder / "rec0.npz"), tmp_path / "one.npz")
    out2 = tmp_path / "plain" / "sim.json"
    assert (
        main(["simulate", str(tmp_path / "graph"), "--data", str(tmp_path / "one.npz"), "--out", str(out2)])
        == 0
    )
    assert "accuracy" not in capsys.readouterr().out
    assert [p.name for p in out2.parent.iterdir()] == ["sim.json"]


# ---------------------------------------------------------------- N-MNIST's numbered layout


@needs_nmnist
def test_nmnist_folder_labels_come_from_labels_txt(tmp_path, capsys):
    graph = nmnist_graph()
    save_graph(graph, tmp_path / "graph")
    out = tmp_path / "sim.json"
    data = NMNIST / "train"
    assert (
        main(
            [
                "simulate",
                str(tmp_path / "graph"),
                "--data",
                str(data),
                "--max-samples",
                "12",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads(out.read_text())
    assert summary["data"]["kind"] == "nmnist" and summary["data"]["split"] == "train"
    assert summary["data"]["labels"] == str(data / "labels.txt")
    assert summary["classes"] == [str(d) for d in range(10)]
    # the first 12 recordings in name order (1.bs2, 10.bs2, 100.bs2, 1000.bs2, 101.bs2, ...)
    names = sorted(p.name for p in data.iterdir() if p.suffix == ".bs2")[:12]
    truth = nmnist_labels()
    labels = [truth[name] for name in names]
    batch = load_input(graph, str(data), max_samples=12)
    assert batch.labels.tolist() == labels and [Path(n).name for n in batch.names] == names
    predictions = get_backend("speck").run(graph, batch.frames).predictions().tolist()
    assert summary["predictions"] == predictions
    assert summary["confusion"] == hand_confusion(labels, predictions, 10) and summary["labelled"] == 12
    assert "over 12 labelled recordings" in capsys.readouterr().out
    assert (tmp_path / "sim_confusion.png").is_file()


@needs_nmnist
def test_nmnist_labels_txt_is_not_read_as_a_recording(tmp_path):
    graph = nmnist_graph()
    folder = tmp_path / "nmnist" / "train"
    folder.mkdir(parents=True)
    truth = nmnist_labels()
    for number in range(1, 6):
        shutil.copy(NMNIST / "train" / f"{number}.bs2", folder)
    (folder / "labels.txt").write_text(
        "#sample #class\n" + "".join(f"{n}\t{truth[f'{n}.bs2']}\n" for n in range(1, 6))
    )
    summary = simulate_summary(graph, str(folder), "speck")  # every file, labels.txt last in name order
    assert summary["samples"] == 5 and summary["labelled"] == 5
    assert sum(map(sum, summary["confusion"])) == 5
    assert [sum(row) for row in summary["confusion"]] == [
        [truth[f"{n}.bs2"] for n in range(1, 6)].count(d) for d in range(10)
    ]
    # the same files under another folder name: read unlabelled, with a warning saying why
    other = tmp_path / "subset"
    shutil.copytree(folder, other)
    with pytest.warns(UserWarning, match="read as N-MNIST labels only in a folder named train or test"):
        plain = simulate_summary(graph, str(other), "speck")
    assert plain["samples"] == 5 and plain["labelled"] == 0


# ---------------------------------------------------------------- a training config


def test_a_training_config_uses_its_test_split(tiny_config_file, tmp_path):
    from asa_snn.train.config import load_config
    from asa_snn.train.data import build_data

    # the tiny config's data (16x16 sensor, 3 classes) with the graph's frames: 8 steps of 20 ms
    config_file = tmp_path / "eval.toml"
    config_file.write_text(
        tiny_config_file.read_text()
        .replace("n_steps = 4", "n_steps = 8\ndt_us = 20000")
        .replace("timesteps = 4", "timesteps = 8")
    )
    graph = speck_graph()
    assert is_config(str(config_file)) and is_config("synthetic_speck") and not is_config("builtin:synthetic")
    assert not is_config(str(tmp_path)) and not is_config(str(tmp_path / "missing.toml"))
    test = build_data(load_config(config_file)).test
    summary = simulate_summary(graph, str(config_file), "speck", batch_size=5)
    assert summary["samples"] == len(test) == 12
    about = summary["data"]
    assert about["kind"] == "config" and about["split"] == "test" and about["dataset"] == "synthetic"
    assert about["config"] == str(config_file) and about["split_rule"] == "the dataset's own test split"
    raw = [test.raw(i) for i in range(len(test))]
    source = data_source(graph, str(config_file))
    for index, (stream, label) in enumerate(recordings(graph, source)):
        np.testing.assert_array_equal(stream.events, raw[index][0].events)
        assert label == raw[index][1]
    labels = [label for _, label in raw]
    frames = load_input(graph, source).frames
    predictions = get_backend("speck").run(graph, frames).predictions().tolist()
    assert summary["confusion"] == hand_confusion(labels, predictions, 3)
    assert summary["classes"] == list(test.base.classes)


@needs_nmnist
def test_a_shipped_recipe_name_uses_its_held_out_test_split(monkeypatch):
    from asa_snn.train.config import load_config, resolve_config_path
    from asa_snn.train.data import build_data

    monkeypatch.chdir(REPO)  # the recipe's data.root is ../shared/data/nmnist
    graph = nmnist_graph()
    summary = simulate_summary(graph, "nmnist_small", "speck", max_samples=6)
    test = build_data(load_config(resolve_config_path("nmnist_small"))).test
    labels = [test.raw(i)[1] for i in range(6)]
    assert summary["samples"] == 6 and sum(map(sum, summary["confusion"])) == 6
    assert [sum(row) for row in summary["confusion"]] == [labels.count(d) for d in range(10)]
    assert summary["data"]["split"] == "test" and summary["data"]["dataset"] == "nmnist"
    assert summary["data"]["split_rule"] == "data.test_fraction = 0.2 of the training data"
    assert summary["data"]["root"] == str(NMNIST.resolve())
