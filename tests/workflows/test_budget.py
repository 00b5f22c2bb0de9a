"""Spike budgets: figures checked by hand, PASS / FAIL verdicts at the measured values, bad budget files."""

from pathlib import Path

import numpy as np
import pytest

from asa_snn.chips.loihi.mapping import loihi_core_layout
from asa_snn.chips.speck.mapping import speck_core_layout
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.data.events import EventStream
from asa_snn.data.formats import write_numpy
from asa_snn.data.synthetic import SyntheticDVSConfig, generate_sample
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.simulators.inputs import load_input
from asa_snn.workflows.budget import (
    decision_latency,
    evaluate_budget,
    load_budget,
    parse_budget,
    write_budget_report,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "asa_snn" / "workflows" / "examples" / "speck_budget.toml"
DATA = "synthetic:3"
BIG = 1e12


@pytest.fixture(scope="module")
def measured(speck):
    """Every figure of the tiny Speck graph on 3 synthetic recordings, via a budget that always passes."""
    graph = speck
    probe = {
        "network": {
            "firing_rate": BIG,
            "spikes_per_inference": BIG,
            "synops_per_second_per_core": BIG,
            "energy_uj": {"speck": BIG},
            "latency_steps": BIG,
        },
        "layers": {name: {"firing_rate": BIG, "spikes_per_inference": BIG} for name in ("conv1", "fc")},
    }
    report = evaluate_budget(graph, parse_budget(probe, "probe.toml"), DATA)
    return graph, report, {(r.scope, r.metric): r for r in report.rows}


def test_figures_match_an_independent_computation(measured):
    graph, report, rows = measured
    batch = load_input(graph, DATA)
    counts = SpeckSimulator().run(graph, batch.frames).spike_counts
    conv_spikes = counts["conv1"].sum(axis=1)
    fc_spikes = counts["fc"].sum(axis=1)
    assert rows["conv1", "spikes_per_inference"].worst == conv_spikes.max()
    assert rows["conv1", "firing_rate"].worst == pytest.approx(conv_spikes.max() / (4 * 8 * 8 * 8))
    assert rows["fc", "firing_rate"].mean == pytest.approx(fc_spikes.mean() / (3 * 8))
    total = conv_spikes + fc_spikes
    assert rows["network", "firing_rate"].worst == pytest.approx(total.max() / ((256 + 3) * 8))
    assert rows["network", "spikes_per_inference"].worst_recording == batch.names[int(total.argmax())]
    # conv1 (3x3, padding 1, 4 output channels): an event reaches 4 * count_y * count_x synapses,
    # count 2 on the border row / column and 3 inside; fc: 3 per conv1 spike after pooling (8x8 -> 4x4
    # drops none). One layer per core; duration 8 * 20 ms = 0.16 s.
    count = np.array([2, 3, 3, 3, 3, 3, 3, 2])
    conv_rate = (batch.frames.sum(axis=(1, 2)) * np.outer(count, count) * 4).sum(axis=(1, 2)) / 0.16
    fc_rate = conv_spikes * 3 / 0.16
    assert rows["network", "synops_per_second_per_core"].worst == pytest.approx(
        np.maximum(conv_rate, fc_rate).max()
    )
    # speck energy: 0.42 mW * 0.16 s + 9.5 nJ per spike, in microjoules
    energy = 0.42e-3 * 0.16 * 1e6 + total * (5.7e-3 / 0.6e6) * 1e6
    assert rows["network", "energy_uj.speck"].worst == pytest.approx(energy.max())
    assert report.ok


def test_decision_latency_by_hand():
    outputs = np.zeros((3, 5, 2))
    outputs[0, 2, 1] = 1  # first output spike at step 2 -> 3 steps
    outputs[1, 0, 0] = 1  # step 0 -> 1 step
    assert decision_latency(outputs).tolist() == [3, 1, 5]  # never spikes -> T = 5


def test_core_layouts_come_from_the_mapping_checks(speck, loihi):
    speck_layout = speck_core_layout(speck)
    # conv1: kernel 2 * 2^(ceil log2 9 + ceil log2 4) = 128, neurons 4 * 2^(3 + 3) = 256;
    # fc as a 4x4 conv: 4 * 2^(4 + 2) = 256 kernel words, 3 * 2^0 = 3 neuron words
    assert [(u.cores, u.kernel_memory, u.neuron_memory) for u in speck_layout.values()] == [
        (1, 128, 256),
        (1, 256, 3),
    ]
    loihi_layout = loihi_core_layout(loihi)
    assert (loihi_layout["fc0"].kernel_memory, loihi_layout["fc0"].neuron_memory) == (8 * 32, 8)


def _limits_around(rows, factor):
    """A budget with every measured figure's limit at worst * factor (layer and network)."""
    network, layers = {}, {}
    for (scope, metric), row in rows.items():
        target = network if scope == "network" else layers.setdefault(scope, {})
        if metric.startswith("energy_uj."):
            target.setdefault("energy_uj", {})[metric.split(".", 1)[1]] = row.worst * factor
        else:
            target[metric] = row.worst * factor
    return {"network": network, "layers": layers}


def test_pass_just_above_the_measured_values(measured):
    graph, _, rows = measured
    report = evaluate_budget(graph, parse_budget(_limits_around(rows, 1.001), "above.toml"), DATA)
    assert report.ok and not report.failures
    for row in report.rows:
        assert row.margin == pytest.approx(row.limit - row.worst)
        assert row.margin > 0 and row.over == ()
    assert "PASS: every limit holds" in report.table()


def test_fail_just_below_names_rows_layers_and_recordings(measured):
    graph, _, rows = measured
    budget = _limits_around(rows, 0.999)
    budget["layers"]["conv1"]["spikes_per_inference"] = rows["conv1", "spikes_per_inference"].worst / 2
    report = evaluate_budget(graph, parse_budget(budget, "below.toml"), DATA)
    assert not report.ok
    assert len(report.failures) == len(report.rows)
    worst = report.failures[0]
    assert (worst.scope, worst.metric) == ("conv1", "spikes_per_inference")
    assert worst.margin == pytest.approx(-worst.worst / 2)
    assert report.worst_layers()[0] == "conv1"
    assert set(report.worst_layers()) == {"conv1", "fc"}
    batch = load_input(graph, DATA)
    conv_spikes = SpeckSimulator().run(graph, batch.frames).spike_counts["conv1"].sum(axis=1)
    limit = worst.limit
    assert worst.over == tuple(name for name, v in zip(batch.names, conv_spikes, strict=True) if v > limit)
    text = report.table()
    assert "FAIL" in text and "worst layers: conv1" in text
    assert f"over conv1 spikes_per_inference ({limit:.4g}): {', '.join(worst.over)}" in text


def test_report_files(measured, tmp_path):
    _, report, _ = measured
    paths = write_budget_report(report, tmp_path / "out")
    import json

    document = json.loads(paths["json"].read_text())
    assert document["ok"] is True
    assert {(r["scope"], r["metric"]) for r in document["rows"]} == {(r.scope, r.metric) for r in report.rows}
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_failing_in_the_figure_leaves_the_old_output_whole(measured, tmp_path, monkeypatch):
    import asa_snn.workflows.budget as budget_module

    _, report, _ = measured
    out = tmp_path / "out"
    paths = write_budget_report(report, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_figure(report, path):
        raise MemoryError("matplotlib ran out of memory")

    monkeypatch.setattr(budget_module, "_rate_figure", broken_figure)
    with pytest.raises(MemoryError):
        write_budget_report(report, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(before) == [
        ".asa-snn-output",
        "budget.json",
        "budget_rates.png",
        "confusion.png",
        "core_load.png",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and paths["json"] == out / "budget.json"


def test_report_refuses_a_folder_it_did_not_write(measured, tmp_path):
    _, report, _ = measured
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.csv").write_text("1,2,3\n")
    (out / "budget.json").write_text('{"mine": true}\n')
    with pytest.raises(AsaSnnError, match=r"out.*not an asa-snn output folder"):
        write_budget_report(report, out)
    assert (out / "budget.json").read_text() == '{"mine": true}\n'
    assert sorted(p.name for p in out.iterdir()) == ["budget.json", "data.csv"]


def test_example_budget_applies_to_any_graph(speck):
    budget = load_budget(EXAMPLE)
    assert budget.layers == {}
    assert budget.network["energy_uj"] == {"speck": 500.0}
    report = evaluate_budget(speck, budget, "synthetic:1")
    assert {r.metric for r in report.rows} == {
        "firing_rate",
        "spikes_per_inference",
        "synops_per_second_per_core",
        "peak_synops_per_second_per_core",
        "energy_uj.speck",
        "latency_steps",
        "kernel_memory_per_core",
        "neuron_memory_per_core",
    }
    assert budget.window_ms == 1.0


def test_yaml_and_toml_read_alike(tmp_path):
    (tmp_path / "b.toml").write_text("[network]\nfiring_rate = 0.2\n[layers.fc]\nenergy_uj = { loihi = 3 }\n")
    (tmp_path / "b.yaml").write_text(
        "network:\n  firing_rate: 0.2\nlayers:\n  fc:\n    energy_uj: {loihi: 3}\n"
    )
    toml, yaml = load_budget(tmp_path / "b.toml"), load_budget(tmp_path / "b.yaml")
    assert (
        (toml.network, toml.layers)
        == (yaml.network, yaml.layers)
        == ({"firing_rate": 0.2}, {"fc": {"energy_uj": {"loihi": 3.0}}})
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[network]\nfiring_rates = 0.1\n", ["b.toml", "firing_rates", "firing_rate", "latency_steps"]),
        (
            '[network]\nenergy_uj = { speck = "500 uJ" }\n',
            ["b.toml", "energy_uj.speck", "'500 uJ'", "microjoules"],
        ),
        ("[network]\nfiring_rate = -0.1\n", ["network.firing_rate", "-0.1", ">= 0"]),
        ("[network]\nlatency_steps = true\n", ["network.latency_steps", "True", "time steps"]),
        ("[network]\nenergy_uj = 500\n", ["network.energy_uj", "preset", "speck"]),
        ("[network]\nenergy_uj = { tpu = 5 }\n", ["energy_uj", "'tpu'", "loihi"]),
        ("[layers.conv1]\nlatency_steps = 3\n", ["layers.conv1", "latency_steps", "firing_rate"]),
        ("[limits]\nfiring_rate = 1\n", ["b.toml", "'limits'", "network", "layers"]),
        ("[network\n", ["b.toml", "not a valid TOML file"]),
    ],
)
def test_bad_budget_files_say_what_is_wrong(tmp_path, text, expected):
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(InputFormatError) as error:
        load_budget(path)
    for part in expected:
        assert part in str(error.value)


def test_unknown_layer_lists_the_graph_layers(speck, tmp_path):
    path = tmp_path / "b.toml"
    path.write_text("[layers.conv9]\nfiring_rate = 0.1\n")
    with pytest.raises(InputFormatError) as error:
        evaluate_budget(speck, load_budget(path), "synthetic:1")
    assert "b.toml" in str(error.value) and "conv9" in str(error.value) and "conv1, fc" in str(error.value)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(AsaSnnError, match="no such budget file"):
        load_budget(tmp_path / "none.toml")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(InputFormatError, match=r"\.toml, \.yaml or \.yml"):
        load_budget(tmp_path / "b.json")


BILLION_LAUGHS = "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10 if i else ['1'] * 10)}]\n" for i in range(9)
)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("laughs.yaml", BILLION_LAUGHS + "network: {firing_rate: *a8}\n", "aliases expand the document"),
        ("deep.yaml", "network: " + "[" * 20_000 + "]" * 20_000 + "\n", "YAML nesting too deep to parse"),
        ("deep.toml", "network = " + "[" * 20_000 + "]" * 20_000 + "\n", "TOML nesting too deep to parse"),
        ("nested.yaml", "network: " + "[" * 40 + "]" * 40 + "\n", "nested more than 32 levels deep"),
        ("digits.yaml", "network: {firing_rate: " + "9" * 5000 + "}\n", "an integer literal has more than"),
        ("tag.yaml", "network: !!python/object/apply:os.system ['true']\n", "not a valid YAML file"),
    ],
)
def test_hostile_budget_files_are_refused_by_the_config_reader(tmp_path, name, text, fragment):
    """Budget files go through the bounded TOML / YAML reader of training configs: alias bombs,
    deep nesting and oversized literals are one InputFormatError naming the file, in bounded memory."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputFormatError) as info:
        load_budget(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_a_long_list_limit_is_named_briefly(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("network: {firing_rate: [" + ", ".join(["1"] * 5000) + "]}\n")
    with pytest.raises(
        InputFormatError, match=r"network\.firing_rate is \[1, 1, .*; expected a number"
    ) as info:
        load_budget(path)
    assert len(str(info.value)) < 300


def test_labelled_data_adds_accuracy_per_class_and_the_confusion_figure(speck, tmp_path, capsys):
    """A labels.csv folder: accuracy, per-class accuracy and confusion counted by hand from the
    simulator's predictions, in the report, budget.json, the table and confusion.png."""
    from asa_snn.cli import main
    from asa_snn.convert.graph import save_graph

    folder = tmp_path / "data"
    folder.mkdir()
    config = SyntheticDVSConfig(sensor_size=(16, 16, 2), n_steps=8, dt_us=20_000, n_classes=3)
    labels = [2, 0, 1, 1, 0]
    for index in range(len(labels)):
        stream = EventStream(generate_sample(config, "test", index).events, (16, 16, 2))
        write_numpy(stream, folder / f"r{index}.npz")
    rows = "".join(f"r{index}.npz,{label}\n" for index, label in enumerate(labels))
    (folder / "labels.csv").write_text("file,label\n" + rows)
    budget = parse_budget({"network": {"firing_rate": BIG}}, "probe.toml")
    report = evaluate_budget(speck, budget, str(folder))
    predictions = SpeckSimulator().run(speck, load_input(speck, str(folder)).frames).predictions()
    confusion = np.zeros((3, 3), np.int64)
    for label, prediction in zip(labels, predictions, strict=True):
        confusion[label, prediction] += 1
    assert report.confusion == confusion.tolist() and report.classes == ["0", "1", "2"]
    assert report.accuracy == np.mean(np.array(labels) == predictions)
    document = report.to_dict()
    assert document["labelled"] == 5 and document["confusion"] == confusion.tolist()
    assert document["per_class_accuracy"] == {str(k): confusion[k, k] / confusion[k].sum() for k in range(3)}
    assert document["data"]["kind"] == "labels.csv"
    assert f"accuracy: {report.accuracy:.3f} over 5 labelled recordings" in report.table()
    assert "per class: 0 " in report.table()
    paths = write_budget_report(report, tmp_path / "out")
    assert paths["confusion"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # unlabelled data: no accuracy, no confusion.png
    plain = evaluate_budget(speck, budget, str(folder / "r0.npz"))
    assert plain.accuracy is None and plain.to_dict()["confusion"] is None
    assert "accuracy" not in plain.table()
    written = write_budget_report(plain, tmp_path / "plain")
    assert "confusion" not in written and not (tmp_path / "plain" / "confusion.png").exists()
    # the command line
    save_graph(speck, tmp_path / "graph")
    (tmp_path / "b.toml").write_text("[network]\nfiring_rate = 1e12\n")
    args = ["budget", str(tmp_path / "graph"), "--budget", str(tmp_path / "b.toml"), "--data", str(folder)]
    assert main([*args, "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy: {report.accuracy:.3f}" in printed and "budget.json and figures written" in printed
    assert (tmp_path / "cli" / "confusion.png").is_file()
