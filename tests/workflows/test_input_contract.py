"""The folded graph carries the training preprocessing: a graph folded from a recipe takes the
original recordings, and ``asa-snn simulate`` predicts for each recording what the integer
simulator predicts on the frames the training pipeline builds for it (real N-MNIST files)."""

import json
from pathlib import Path

import numpy as np
import pytest

from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.cli import main
from asa_snn.convert.graph import load_graph
from asa_snn.data.formats import read_events
from asa_snn.errors import InputFormatError
from asa_snn.train import load_config, train
from asa_snn.train.config import resolve_config_path
from asa_snn.train.data import build_data
from asa_snn.workflows.fold import run_fold

NMNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nmnist"
FILES = ("1.bs2", "2.bs2", "3.bs2", "4.bs2")
VARIANTS = {
    # 34x34 sensor, centre crop to 32x32, 30 ms frames
    "crop": [],
    # 10 slices of equal event count instead of 30 ms frames
    "equal_count": ["data.equal_count=true"],
    # binned 34 -> 17 px, centre crop to 16x16 (offset 0, so the last row and column drop)
    "downsample": ["data.downsample=2", "data.crop=[16, 16]", "model.input_shape=[2, 16, 16]"],
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def folded(request, tmp_path_factory):
    if not (NMNIST / "train" / "labels.txt").is_file():
        pytest.skip(f"real N-MNIST samples not found at {NMNIST}")
    folder = tmp_path_factory.mktemp(request.param)
    overrides = [
        f"data.root={NMNIST.resolve()}",
        "data.max_samples=60",
        "train.epochs=1",
        "model.network_options={channels = [4, 8]}",
        *VARIANTS[request.param],
    ]
    config = load_config(resolve_config_path("nmnist_small"), overrides)
    result = train(config, folder / "train", progress=False)
    run_fold(
        Path(result.out_dir) / "best.safetensors", "speck", folder / "graph", finetune_epochs=0, n_calib=8
    )
    return request.param, config, folder / "graph"


def _training_frames(config, files):
    """The frames the training pipeline builds (validation / test transform, no augmentation)."""
    pipeline = build_data(config).test.transform
    return np.stack([pipeline(read_events(NMNIST / "train" / name)) for name in files])


def _simulate(graph_dir, data, out, extra=()):
    status = main(
        ["simulate", str(graph_dir), "--backend", "speck", "--data", str(data), "--out", str(out), *extra]
    )
    assert status == 0
    return json.loads(out.read_text())


def test_the_graph_carries_the_training_preprocessing(folded):
    variant, config, graph_dir = folded
    spec = load_graph(graph_dir).input
    assert spec.sensor_size == (34, 34, 2) and spec.n_steps == 10
    assert spec.slicing == ("count" if variant == "equal_count" else "time")
    assert spec.downsample == (2 if variant == "downsample" else 1)
    assert spec.crop == ((0, 0, 16, 16) if variant == "downsample" else (1, 1, 32, 32))
    assert spec == build_data(config).input_spec


def test_simulate_on_raw_files_predicts_as_on_training_frames(folded, tmp_path):
    _, config, graph_dir = folded
    graph = load_graph(graph_dir)
    expected = SpeckSimulator().run(graph, _training_frames(config, FILES)).predictions(graph.vote).tolist()
    single = [_simulate(graph_dir, NMNIST / "train" / name, tmp_path / f"{name}.json") for name in FILES]
    assert [s["predictions"][0] for s in single] == expected
    # the folder: its files in name order (1.bs2, 10.bs2, 100.bs2, 1000.bs2, ...), here the first 4
    listed = sorted(p.name for p in (NMNIST / "train").iterdir() if p.is_file())[:4]
    folder = _simulate(graph_dir, NMNIST / "train", tmp_path / "folder.json", ["--max-samples", "4"])
    on_frames = SpeckSimulator().run(graph, _training_frames(config, listed)).predictions(graph.vote)
    assert folder["predictions"] == on_frames.tolist() and folder["samples"] == 4


def test_a_recording_of_another_sensor_is_refused_by_name(folded, tmp_path):
    from asa_snn.data.events import EventStream, make_events
    from asa_snn.data.formats import write_numpy
    from asa_snn.data.model_input import frames_for

    _, _, graph_dir = folded
    stream = EventStream(make_events(np.array([0]), np.array([1]), np.array([1]), np.array([0])), (40, 40, 2))
    with pytest.raises(InputFormatError, match="sensor 40x40 but the model expects recordings of a 34x34"):
        frames_for(load_graph(graph_dir).input, stream)
    write_numpy(stream, tmp_path / "other.npz")
    assert main(["simulate", str(graph_dir), "--data", str(tmp_path / "other.npz")]) == 1
