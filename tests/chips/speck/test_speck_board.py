"""Speck deployment up to the samna boundary: dry run, device strings, chip events, streaming, counts."""

import json
import sys

import numpy as np
import pytest

from asa_snn.chips.speck.board import (
    CHIP_EVENT_DTYPE,
    chip_input_events,
    count_chip_events,
    deploy_speck,
    parse_device,
    readout_channel,
    readout_note,
    resolve_device,
    stream_events,
)
from asa_snn.chips.speck.event_driven import EventDriven
from asa_snn.chips.speck.mapping import check_speck
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.model_input import frames_for
from asa_snn.errors import AsaSnnError, MissingDependencyError
from asa_snn.simulators.compare import compare_counts, counts_table, load_recording


def test_dry_run_summary(speck, tmp_path):
    report = deploy_speck(speck, dry_run=True, out_dir=tmp_path)
    mapping = check_speck(speck)
    assert [(c.layer, c.core) for c in report.cores] == [(r.layer, r.core) for r in mapping.rows]
    conv, fc = report.cores
    assert (conv.kernel_words, conv.neuron_words, conv.pooling) == (128, 256, 2)
    assert (conv.threshold, conv.min_v, conv.reset) == (6.0, -20.0, "subtract")
    assert (fc.threshold, fc.min_v, fc.reset) == (10.0, -40.0, "zero")
    weight = speck.layer("fc").tensors["weight"]
    assert fc.weight_range == (int(weight.min()), int(weight.max())) and fc.bias_range is None
    _, frames = load_recording(speck, None)
    expected = SpeckSimulator(mode=EventDriven()).run(speck, frames).spike_counts
    assert report.simulated == {name: int(c.sum()) for name, c in expected.items()}
    assert report.ok and report.chip is None
    text = report.summary()
    assert "(dry run)" in text and "4(x-1)" in text and "1->0, 2->4, 3->8" in text
    assert f"conv1 {report.simulated['conv1']}" in text
    document = json.loads((tmp_path / "deploy_speck.json").read_text())
    assert document["simulated"] == report.simulated and document["dry_run"] is True
    assert "samna" not in sys.modules


def test_hardware_path_without_real_samna_explains_and_keeps_results(speck, tmp_path):
    with pytest.raises(MissingDependencyError) as error:
        deploy_speck(speck, device="speck2fdevkit:0", out_dir=tmp_path)
    assert "samna" in str(error.value) and "--dry-run" in str(error.value)
    document = json.loads((tmp_path / "deploy_speck.json").read_text())
    assert document["dry_run"] is False and document["chip"] is None and document["simulated"]["conv1"] > 0
    assert "samna" not in sys.modules and not any("dynapcnn" in name for name in sys.modules)


def test_readout_erratum_mapping():
    assert [readout_channel(x) for x in (1, 2, 15)] == [0, 4, 56]


def test_readout_note_for_more_than_15_classes(speck):
    from dataclasses import replace

    note = readout_note(replace(speck, num_classes=20))
    assert "20 classes > 15" in note and "not used" in note


def _count(events: np.ndarray, shape: tuple[int, int, int], dt_us: int, n_steps: int) -> np.ndarray:
    """Chip events counted into frames [T, C, H, W] (step = timestamp // dt_us), test-side only."""
    frames = np.zeros((n_steps, *shape), np.int64)
    step = (events["timestamp"] // dt_us).astype(np.int64)
    keep = step < n_steps
    np.add.at(frames, (step[keep], events["feature"][keep], events["y"][keep], events["x"][keep]), 1)
    return frames


def test_chip_events_hold_exactly_the_simulator_frames(speck):
    stream, frames = load_recording(speck, None)
    events = chip_input_events(speck, stream)
    assert np.array_equal(_count(events, (2, 8, 8), 20_000, 8), frames[0])
    assert np.all(np.diff(events["timestamp"].astype(np.int64)) >= 0)


def test_chip_events_by_hand(speck):
    # t0 = 100: kept t = 100 (p 1 at 5,3 -> 2,1), 200 (15,0 -> 7,0), 20_099 (step 0), 20_100
    # (step 1); dropped: t past 8 * 20 ms
    raw = make_events(
        t=np.array([100, 200, 20_099, 20_100, 160_100]),
        x=np.array([5, 15, 0, 1, 0]),
        y=np.array([3, 0, 0, 2, 0]),
        p=np.array([1, 1, 0, 0, 1]),
    )
    events = chip_input_events(speck, EventStream(raw, (16, 16, 2)))
    expected = [(0, 1, 1, 2, 0), (0, 1, 0, 7, 100), (0, 0, 0, 0, 19_999), (0, 0, 1, 0, 20_000)]
    assert events.tolist() == expected


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("speck2fdevkit:0", ("speck2fdevkit", 0)),
        ("speck2edevkit", ("speck2edevkit", 0)),
        ("speck2e:3", ("speck2e", 3)),
    ],
)
def test_parse_device(device, expected):
    assert parse_device(device) == expected


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("speck2fdevkit:x", "expected 'type:index'"),
        ("speck2fdevkit:0:1", "expected 'type:index'"),
        ("davis346:0", "not a Speck board"),
        ("speck3:0", "speck2fdevkit"),
    ],
)
def test_bad_device_strings(device, message):
    with pytest.raises(AsaSnnError, match=message):
        parse_device(device)


def test_resolve_device_against_the_boards_seen():
    boards = ["speck2edevkit:0", "speck2fdevkit:0"]
    assert resolve_device("speck2fdevkit", boards) == "speck2fdevkit:0"
    with pytest.raises(AsaSnnError) as error:
        resolve_device("speck2fdevkit:1", boards)
    assert "speck2fdevkit:1" in str(error.value) and "speck2edevkit:0, speck2fdevkit:0" in str(error.value)
    with pytest.raises(AsaSnnError, match="plugged in"):
        resolve_device("speck2fdevkit:0", [])


def test_compare_counts_table():
    rows = compare_counts({"conv1": 100, "fc": 0, "conv2": 50}, {"conv1": 90, "fc": 2})
    assert [(r.layer, r.measured, r.difference, r.relative) for r in rows] == [
        ("conv1", 90, -10, -0.1),
        ("fc", 2, 2, None),
        ("conv2", None, None, None),
    ]
    lines = counts_table(rows, "simulated", "chip").splitlines()
    assert lines[0].split() == ["layer", "simulated", "chip", "difference", "relative"]
    assert lines[1].split() == ["conv1", "100", "90", "-10", "-10.0%"]
    assert lines[3].split() == ["conv2", "50", "-", "-", "-"]
    with pytest.raises(AsaSnnError, match="conv7"):
        compare_counts({"conv1": 1}, {"conv7": 1})


def records(cores):
    out = np.zeros(len(cores), CHIP_EVENT_DTYPE)
    out["layer"] = cores
    out["timestamp"] = np.arange(len(cores))
    return out


def test_count_chip_events_by_core():
    totals, stray = count_chip_events(records([1, 1, 0, 1, 5, 0, 1]), {1: "conv1", 0: "fc", 2: "conv2"})
    assert totals == {"conv1": 4, "fc": 2, "conv2": 0} and stray == [5]


class ScriptedLink:
    """A link whose chip answers with a fixed list of reads; it can fail on a given write."""

    def __init__(self, answers, fail_on_write=None):
        self.answers = list(answers)
        self.fail_on_write = fail_on_write
        self.written = []
        self.closed = False

    def write(self, events):
        if len(self.written) == self.fail_on_write:
            raise RuntimeError("USB device disconnected")
        self.written.append(events)

    def read(self):
        return self.answers.pop(0) if self.answers else records([])

    def close(self):
        self.closed = True


def input_events(timestamps):
    out = np.zeros(len(timestamps), CHIP_EVENT_DTYPE)
    out["timestamp"] = timestamps
    return out


def test_stream_sends_chunks_per_step_and_drains():
    link = ScriptedLink([records([1]), records([1, 0]), records([0]), records([2])])
    outcome = stream_events(link, input_events([0, 10, 999, 1000, 2500]), chunk_us=1000)
    assert [len(c) for c in link.written] == [3, 1, 1]  # [0, 1000), [1000, 2000), [2000, 3000)
    assert outcome.error is None and outcome.chunks_sent == outcome.chunks_total == 3
    assert outcome.records["layer"].tolist() == [1, 1, 0, 0, 2]  # 3 reads per chunk + 1 drained
    assert link.closed


def test_disconnect_mid_stream_keeps_results_and_closes():
    link = ScriptedLink([records([1, 1]), records([0])], fail_on_write=2)
    outcome = stream_events(link, input_events([0, 1000, 2000, 3000]), chunk_us=1000)
    assert outcome.chunks_sent == 2 and outcome.chunks_total == 4
    assert "RuntimeError: USB device disconnected" in outcome.error
    assert outcome.records["layer"].tolist() == [1, 1, 0]
    assert link.closed


def test_device_returning_nothing_is_a_failure():
    link = ScriptedLink([records([1]), None])
    outcome = stream_events(link, input_events([0, 1000, 2000]), chunk_us=1000)
    assert "returned nothing" in outcome.error and outcome.chunks_sent == 2
    assert outcome.records["layer"].tolist() == [1] and link.closed


def test_frames_from_events_agree_on_a_hand_made_stream(speck):
    raw = make_events(
        t=np.array([0, 5, 30_000]), x=np.array([2, 3, 15]), y=np.array([2, 2, 15]), p=np.array([0, 0, 1])
    )
    stream = EventStream(raw, (16, 16, 2))
    frames = frames_for(speck.input, stream)
    assert np.array_equal(_count(chip_input_events(speck, stream), (2, 8, 8), 20_000, 8), frames)
    assert frames[0, 0, 1, 1] == 2 and frames[1, 1, 7, 7] == 1


def test_deploy_refuses_a_folder_it_did_not_write_and_replaces_its_own_whole(speck, tmp_path):
    out = tmp_path / "deployed"
    out.mkdir()
    (out / "deploy_speck.json").write_text('{"mine": true}\n')
    with pytest.raises(AsaSnnError, match=r"deployed.*not an asa-snn output folder"):
        deploy_speck(speck, dry_run=True, out_dir=out)
    assert (out / "deploy_speck.json").read_text() == '{"mine": true}\n'
    outside = tmp_path / "outside.json"
    outside.write_text("precious")
    ours = tmp_path / "ours"
    deploy_speck(speck, dry_run=True, out_dir=ours)
    (ours / "deploy_speck.json").unlink()
    (ours / "deploy_speck.json").symlink_to(outside)  # a link in asa-snn's folder is not followed
    deploy_speck(speck, dry_run=True, out_dir=ours)
    assert outside.read_text() == "precious" and not (ours / "deploy_speck.json").is_symlink()
    assert sorted(p.name for p in ours.iterdir()) == [".asa-snn-output", "deploy_speck.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deployed", "ours", "outside.json"]
