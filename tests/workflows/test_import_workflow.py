"""``asa-snn import`` end to end: a sinabs network written with ``sinabs.to_nir`` goes through import ->
check -> simulate -> budget -> deploy --dry-run in process; fidelity files; refusals; atomic output."""

import json
from dataclasses import replace

import nir
import numpy as np
import pytest
import torch
from graph_builders import chain_graph
from torch import nn

from asa_snn.cli import main
from asa_snn.convert.graph import InputSpec, NeuronSpec, load_graph
from asa_snn.convert.nir_export import write_nir
from asa_snn.errors import AsaSnnError
from asa_snn.workflows.import_nir import run_import

sinabs = pytest.importorskip("sinabs", reason="sinabs is not installed")
sl = pytest.importorskip("sinabs.layers")

BUDGET = """\
description = "generous limits for the import test"
[network]
firing_rate = 1.0
spikes_per_inference = 1e9
"""


@pytest.fixture(scope="module")
def sinabs_nir(tmp_path_factory):
    """A Speck-shaped sinabs network (Conv2d, IAFSqueeze, SumPool2d, Flatten, Linear) as a .nir file
    written by sinabs (``sinabs.to_nir``) and NIR (``infer_types`` + ``nir.write``)."""
    from sinabs.activation import SingleSpike

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        sl.IAFSqueeze(batch_size=1, spike_fn=SingleSpike),
        sl.SumPool2d(2),
        nn.Conv2d(4, 8, 3, stride=2),
        sl.IAFSqueeze(batch_size=1, spike_fn=SingleSpike),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 3),
        sl.IAFSqueeze(batch_size=1, spike_fn=SingleSpike),
    )
    graph = sinabs.to_nir(net, torch.zeros(1, 2, 16, 16))
    graph.infer_types()
    path = tmp_path_factory.mktemp("nir") / "sinabs.nir"
    nir.write(path, graph)
    return path


def _labelled_recordings(root, labels):
    """A folder of synthetic recordings of the imported graph's 32x32 sensor and a labels.csv."""
    from asa_snn.data.events import EventStream
    from asa_snn.data.formats import write_numpy
    from asa_snn.data.synthetic import SyntheticDVSConfig, generate_sample

    root.mkdir()
    config = SyntheticDVSConfig(sensor_size=(32, 32, 2), n_steps=8, dt_us=20_000, n_classes=3)
    rows = ["file,label"]
    for index, label in enumerate(labels):
        write_numpy(
            EventStream(generate_sample(config, "test", index).events, (32, 32, 2)), root / f"r{index}.npz"
        )
        rows.append(f"r{index}.npz,{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_sinabs_nir_through_import_check_simulate_budget_and_deploy(sinabs_nir, tmp_path, capsys):
    graph_dir, budget = tmp_path / "graph", tmp_path / "budget.toml"
    budget.write_text(BUDGET)
    status = main(
        [
            "import", str(sinabs_nir), "--target", "speck", "--sensor", "32,32,2", "--dt-us", "20000",
            "--steps", "8", "--calib", "builtin:synthetic:4", "--out", str(graph_dir),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert "# Import fidelity: target speck" in out and "quantized graph for speck written to" in out
    for name in ("graph.json", "tensors.safetensors", "fidelity.md", "fidelity.json", ".asa-snn-output"):
        assert (graph_dir / name).is_file(), name
    graph = load_graph(graph_dir)
    assert graph.quantized and graph.target == "speck"
    assert graph.input == InputSpec((2, 16, 16), (32, 32, 2), downsample=2, dt_us=20000, n_steps=8)
    assert graph.provenance["options"]["dt_source"] == "--dt-us"
    doc = json.loads((graph_dir / "fidelity.json").read_text())
    assert [s["stage"] for s in doc["stages"]] == [
        "1 NIR model, float", "2 float graph (speck simulator)", "3 quantized graph (speck simulator)",
    ]  # fmt: skip
    assert doc["labelled"] and doc["samples"] == 4 and set(doc["quantization"]) == {"0", "3", "6"}
    assert {"met", "accuracy_loss_max_pp", "nasfr_change_max"} <= set(doc["goal"])

    assert main(["check", str(graph_dir), "--target", "speck"]) == 0
    assert "fits speck" in capsys.readouterr().out
    recordings = _labelled_recordings(tmp_path / "recordings", [0, 1, 2, 1])
    simulated = tmp_path / "simulate.json"
    args = ["--backend", "speck", "--data", str(recordings), "--out", str(simulated)]
    assert main(["simulate", str(graph_dir), *args]) == 0
    summary = json.loads(simulated.read_text())
    assert summary["samples"] == summary["labelled"] == 4 and 0.0 <= summary["accuracy"] <= 1.0
    assert summary["accuracy"] == sum(map(int.__eq__, summary["predictions"], [0, 1, 2, 1])) / 4
    assert "accuracy" in capsys.readouterr().out and (tmp_path / "simulate_confusion.png").is_file()
    budget_dir = tmp_path / "budget"
    status = main(
        [
            "budget",
            str(graph_dir),
            "--budget",
            str(budget),
            "--data",
            str(recordings),
            "--out",
            str(budget_dir),
        ]
    )
    assert status == 0 and (budget_dir / "budget.json").is_file() and (budget_dir / "confusion.png").is_file()
    assert json.loads((budget_dir / "budget.json").read_text())["accuracy"] == summary["accuracy"]
    deploy_dir = tmp_path / "deploy"
    assert main(["deploy", "speck", str(graph_dir), "--dry-run", "--out", str(deploy_dir)]) == 0
    assert (deploy_dir / "deploy_speck.json").is_file()
    assert "dry run" in capsys.readouterr().out


def test_without_calibration_the_float_graph_is_written_with_its_notes(sinabs_nir, tmp_path, capsys):
    assert main(["import", str(sinabs_nir), "--target", "generic", "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "note: dt = 1000 us per step, from the default" in out
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        ".asa-snn-output", "graph.json", "tensors.safetensors",
    ]  # fmt: skip
    graph = load_graph(tmp_path / "g")
    assert not graph.quantized and graph.target == "generic" and graph.input.sensor_size == (16, 16, 2)


def test_loihi_import_quantizes_and_runs_the_loihi_simulator(sinabs_nir, tmp_path):
    with pytest.raises(AsaSnnError, match="IF neurons cannot run unchanged on loihi"):
        run_import(sinabs_nir, "loihi", tmp_path / "refused", calib="builtin:synthetic:2")
    assert not (tmp_path / "refused").exists()
    outcome = run_import(
        sinabs_nir, "loihi", tmp_path / "l", calib="builtin:synthetic:2", approximate=True, dt_us=20000
    )
    assert outcome.graph.quantized and outcome.graph.target == "loihi"
    stages = [s["stage"] for s in outcome.fidelity["stages"]]
    assert stages[-1] == "3 quantized graph (loihi simulator)"
    assert any(
        note.startswith("approximation: node '1': IF run as a CUBA neuron")
        for note in outcome.fidelity["notes"]
    )
    assert "approximation" in (tmp_path / "l" / "fidelity.md").read_text()


def test_a_refused_import_is_one_error_line_and_leaves_the_output_untouched(tmp_path, capsys):
    neurons = [NeuronSpec("lif", 1.0, decay=0.5)] * 3
    graph = replace(chain_graph(neurons, quantized=False), target="generic")
    path = write_nir(graph, tmp_path / "lif.nir")
    out = tmp_path / "out"
    assert main(["import", str(path), "--target", "generic", "--out", str(out)]) == 0
    before = (out / "graph.json").read_text()
    capsys.readouterr()
    assert main(["import", str(path), "--target", "speck", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: node 'c0_neuron': LIF neurons cannot run unchanged on speck"
    )
    assert "--approximate" in err[0] and (out / "graph.json").read_text() == before
    assert main(["import", str(path), "--target", "speck", "--approximate", "--out", str(out)]) == 0
    assert load_graph(out).spiking_layers()[0].neuron.kind == "iaf"
    assert "approximation: node 'c0_neuron'" in json.dumps(load_graph(out).provenance)


def test_bad_files_and_options_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "x.nir").write_bytes(b"\x00" * 64)
    assert main(["import", str(tmp_path / "x.nir"), "--out", str(tmp_path / "o")]) == 1
    assert "not a NIR file" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing.nir"), "--out", str(tmp_path / "o")]) == 1
    assert "no such NIR file" in capsys.readouterr().err
    graph = chain_graph([NeuronSpec("iaf", 9.0)] * 3)
    path = write_nir(graph, tmp_path / "q.nir")
    assert main(["import", str(path), "--sensor", "8,8", "--out", str(tmp_path / "o")]) == 1
    assert "--sensor must be 3 comma-separated integers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_asa_snn_quantized_graph_comes_back_quantized_with_its_scales(tmp_path):
    graph = chain_graph([NeuronSpec("iaf", 90.0, min_v=-90.0)] * 3)
    path = write_nir(graph, tmp_path / "q.nir")
    outcome = run_import(path, "speck", tmp_path / "g", calib="builtin:synthetic:2")
    assert outcome.graph.quantized and outcome.graph.layer("c0").quant == graph.layer("c0").quant
    np.testing.assert_array_equal(
        outcome.graph.layer("c0").tensors["weight"], graph.layer("c0").tensors["weight"]
    )
    assert any("without integers" in note for note in outcome.fidelity["notes"])
