"""Peak per-core load: a recording made to burst, its peak, window, core and layer counted by hand,
checked fixes re-simulated, the budget verdict, budget.json, core_load.png and the command line."""

import json

import numpy as np
import pytest

from asa_snn.chips.base import CoreLoad
from asa_snn.chips.speck.event_driven import timed_run
from asa_snn.chips.speck.mapping import check_speck
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec, save_graph
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.formats import write_numpy
from asa_snn.data.model_input import model_events
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.workflows.budget import evaluate_budget, parse_budget, write_budget_report
from asa_snn.workflows.bursts import decimate, window_load, with_threshold

QUANT = LayerQuant(scale=1.0, weight_bits=8, state_bits=16)
BURST_US = 40_100 + 10 * np.arange(50)  # 50 events 10 us apart from 40.1 ms
QUIET_US = np.arange(0, 100_000, 5_000)  # one event every 5 ms


def burst_graph() -> FoldedGraph:
    """(2, 4, 4) input, 10 steps of 10 ms -> conv a (2->2, 3x3, padding 1, weights 1, threshold 2)
    -> flatten -> linear out (32 -> 16, weights 1, threshold far above reach)."""
    conv = {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]}
    layers = [
        Layer(
            "a",
            "conv2d",
            conv,
            (2, 4, 4),
            {"weight": np.ones((2, 2, 3, 3), np.int8)},
            NeuronSpec("iaf", 2.0),
            quant=QUANT,
        ),
        Layer("flat", "flatten", {}, (32,)),
        Layer(
            "out",
            "linear",
            {},
            (16,),
            {"weight": np.ones((16, 32), np.int8)},
            NeuronSpec("iaf", 30000.0),
            quant=QUANT,
        ),
    ]
    spec = InputSpec((2, 4, 4), (4, 4, 2), dt_us=10_000, n_steps=10)
    return FoldedGraph(layers, spec, 16, "speck", quantized=True)


def recording(times_us: np.ndarray) -> EventStream:
    """Every event at pixel (x 1, y 1), polarity 0 (an inner pixel: it reaches 3 x 3 positions of a)."""
    times = np.sort(times_us)
    ones = np.ones(len(times), np.int64)
    return EventStream(make_events(times, ones, ones, 0 * ones), (4, 4, 2), "made")


@pytest.fixture
def data(tmp_path):
    """A labelled folder: quiet.npz (background only) and burst.npz (background + the burst)."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_numpy(recording(QUIET_US), folder / "quiet.npz")
    write_numpy(recording(np.concatenate([QUIET_US, BURST_US])), folder / "burst.npz")
    (folder / "labels.csv").write_text("file,label\nquiet.npz,0\nburst.npz,1\n")
    return folder


def test_the_burst_by_hand(data):
    """Core a: each event costs 9 positions x 2 channels = 18 synops; the 1 ms window from 40.0 ms
    holds the background event at 40 ms and the 50 burst events: 51 x 18. Core out: a fires all 18
    neurons at every second event from 0 (the 8 background events before 40 ms leave it at 0), so
    at burst events 0, 2, .., 48: 25 x 18 spikes x 16 synops, in the window from 40.1 ms."""
    graph = burst_graph()
    stream = recording(np.concatenate([QUIET_US, BURST_US]))
    run = timed_run(graph, model_events(graph.input, stream))
    assert run.duration_us == 100_000
    a = window_load(run.loads["a"], 1000.0, run.duration_us)
    out = window_load(run.loads["out"], 1000.0, run.duration_us)
    assert (a.peak, a.peak_start_us) == (51 * 18 / 1e-3, 40_000)
    assert (out.peak, out.peak_start_us) == (25 * 18 * 16 / 1e-3, 40_100)
    assert a.total == 70 * 18 and 0 < out.p99 <= out.peak
    quiet = timed_run(graph, model_events(graph.input, recording(QUIET_US)))
    assert window_load(quiet.loads["a"], 1000.0, quiet.duration_us).peak == 18 / 1e-3


def test_window_load_is_exact_over_every_start():
    load = CoreLoad(np.array([0, 400, 900, 1400, 1500]), np.array([1, 2, 3, 4, 5]))
    found = window_load(load, 1000.0, 2000)
    assert (found.peak, found.peak_start_us) == (12 / 1e-3, 900)  # [900, 1900): 3 + 4 + 5
    brute = max(load.synops[(load.times_us >= t) & (load.times_us < t + 1000)].sum() for t in range(2000))
    assert found.peak == brute / 1e-3
    with pytest.raises(AsaSnnError, match="window"):
        window_load(load, 0.0, 2000)


def test_decimation_keeps_one_in_n_per_pixel():
    graph = burst_graph()
    events = model_events(graph.input, recording(np.concatenate([QUIET_US, BURST_US])))
    halved = decimate(events, 2)
    assert np.array_equal(halved.t_us, events.t_us[::2])  # one pixel: every second event in time order


def test_budget_names_core_layer_window_and_checks_fixes(data, tmp_path):
    graph = burst_graph()
    core = {row.layer: row.core for row in check_speck(graph).rows}["out"]
    document = {"network": {"peak_synops_per_second_per_core": 5e6, "firing_rate": 1.0}}
    report = evaluate_budget(graph, parse_budget(document, "bursts.toml"), str(data))
    (row,) = [r for r in report.rows if r.metric == "peak_synops_per_second_per_core"]
    assert not row.ok and row.worst == 7.2e6 and row.worst_recording.endswith("burst.npz")
    assert f"core {core} (layer out)" in row.detail and "1 ms window at 40.100-41.100 ms" in row.detail
    assert row.over == (row.worst_recording,)
    fixes = {fix.change: fix for fix in report.fixes}
    kinds = [fix.kind for fix in report.fixes]
    assert kinds == ["threshold", "threshold", "decimation", "decimation", "core assignment"]
    threshold_peaks = [fix.layer_peak for fix in report.fixes[:2]]
    assert 7.2e6 > threshold_peaks[0] > threshold_peaks[1]
    # decimation 2: a sees events 8, 10, .. of the pixel: 40.0 ms and 25 burst events, 13 firings
    assert fixes["input events decimated 1 in 2 per pixel"].layer_peak == 13 * 18 * 16 / 1e-3
    assert fixes["input events decimated 1 in 2 per pixel"].within_limit
    assert report.fixes[-1].layer_peak == 7.2e6 and not report.fixes[-1].within_limit
    assert all(fix.accuracy is not None and 0 <= fix.accuracy <= 1 for fix in report.fixes)
    text = report.table()
    assert "checked fixes" in text and "threshold of a 2 -> 3 (x1.5)" in text
    paths = write_budget_report(report, tmp_path / "out")
    assert paths["core_load"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths["json"].read_text())
    assert saved["bursts"]["worst"]["layer"] == "out" and saved["bursts"]["window_ms"] == 1.0
    assert [f["kind"] for f in saved["fixes"]] == kinds
    peaks = saved["bursts"]["layers"]["a"]
    assert [p["peak_window_start_ms"] for p in peaks] == [0.0, 40.0]


def test_window_length_from_the_budget_and_the_threshold_copy(data):
    graph = burst_graph()
    document = {"network": {"peak_synops_per_second_per_core": 1e9, "burst_window_ms": 0.25}}
    report = evaluate_budget(graph, parse_budget(document, "w.toml"), str(data))
    assert report.ok and report.fixes == [] and report.bursts.window_ms == 0.25
    # a window of 0.25 ms from 40.1 ms holds burst events 0..24: firings at 0, 2, .., 24
    assert report.rows[0].worst == 13 * 18 * 16 / 0.25e-3
    assert (
        evaluate_budget(graph, parse_budget(document, "w.toml"), str(data), window_ms=2.0).bursts.window_ms
        == 2.0
    )
    assert with_threshold(graph, "a", 1.5).layer("a").neuron.threshold == 3.0
    assert graph.layer("a").neuron.threshold == 2.0
    with pytest.raises(InputFormatError, match="burst_window_ms"):
        parse_budget({"network": {"burst_window_ms": 0}}, "bad.toml")


def test_command_line_window_option(data, tmp_path, capsys):
    from asa_snn.cli import main

    save_graph(burst_graph(), tmp_path / "graph")
    (tmp_path / "b.toml").write_text("[network]\npeak_synops_per_second_per_core = 5e6\n")
    args = ["budget", str(tmp_path / "graph"), "--budget", str(tmp_path / "b.toml"), "--data", str(data)]
    code = main([*args, "--window-ms", "1", "--out", str(tmp_path / "cli")])
    printed = capsys.readouterr().out
    assert code == 1 and "layer out" in printed and "checked fixes" in printed
    assert (tmp_path / "cli" / "core_load.png").is_file()
    assert main([*args, "--window-ms", "0", "--out", str(tmp_path / "zero")]) == 1
    assert "--window-ms is 0.0; expected a window longer than 0 ms" in capsys.readouterr().err
    assert not (tmp_path / "zero").exists()


def test_peak_limit_on_loihi_cores_is_refused(loihi):
    document = {"network": {"peak_synops_per_second_per_core": 1e9}}
    with pytest.raises(AsaSnnError, match="needs Speck's event-driven simulation"):
        evaluate_budget(loihi, parse_budget(document, "l.toml"), "builtin:synthetic:1", backend="loihi")
    report = evaluate_budget(
        loihi,
        parse_budget({"network": {"firing_rate": 1.0}}, "l.toml"),
        "builtin:synthetic:1",
        backend="loihi",
    )
    assert report.bursts is None and report.fixes == []
