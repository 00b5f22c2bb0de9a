"""The input contract's per-pixel count limit (``InputSpec.max_count``, data/model_input.py): frames
clipped in the one binning path, carried by the folded graph, set by ``data.max_count``, part of the
frame cache's setting, and a Loihi fold trained on binary frames drops no input event."""

import json
from importlib.resources import files

import numpy as np
import pytest

from asa_snn.convert.graph import FoldedGraph, Layer, NeuronSpec, load_graph, save_graph
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.model_input import InputSpec, frames_for, model_events
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.train import load_config
from asa_snn.train.data import build_data
from asa_snn.workflows.fidelity_report import input_difference

SYNTHETIC = files("asa_snn.configs") / "synthetic_speck.toml"


def _stream() -> EventStream:
    """Pixel (y 1, x 2) gets 3 events of polarity 0 in step 0 (t 0, 10, 20 us), one more of
    polarity 1, and 2 events in step 1 (t 1000, 1500); pixel (0, 0) one event in step 0."""
    t = np.array([0, 5, 10, 15, 20, 1000, 1500])
    x = np.array([2, 0, 2, 2, 2, 2, 2])
    y = np.array([1, 0, 1, 1, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 0, 0, 0])
    return EventStream(make_events(t, x, y, p), (4, 4, 2))


def _spec(max_count: int | None) -> InputSpec:
    return InputSpec((2, 4, 4), (4, 4, 2), dt_us=1000, n_steps=2, max_count=max_count)


def test_counts_are_clipped_at_max_count_and_unlimited_without():
    counts = frames_for(_spec(None), _stream())
    assert counts[0, 0, 1, 2] == 3 and counts[1, 0, 1, 2] == 2 and counts.sum() == 7
    binary = frames_for(_spec(1), _stream())
    assert binary.max() == 1 and binary.sum() == 4
    np.testing.assert_array_equal(binary, np.minimum(counts, 1))
    np.testing.assert_array_equal(frames_for(_spec(2), _stream()), np.minimum(counts, 2))


def test_the_first_events_of_a_pixel_and_step_are_the_ones_kept():
    """Chip input events (Speck's board and event-driven simulator use ``model_events``) are the
    events the clipped frames count: the earliest of each pixel and step."""
    found = model_events(_spec(2), _stream())
    assert found.t_us.tolist() == [0, 5, 10, 15, 1000, 1500]
    assert found.channel.tolist() == [0, 0, 0, 1, 0, 0]


@pytest.mark.parametrize(("value", "message"), [(0, r"input\.max_count 0 must be >= 1"), (1.0, "is 1.0")])
def test_max_count_is_a_positive_integer(value, message):
    with pytest.raises(InputFormatError, match=message):
        _spec(value)


def test_premade_frames_take_no_max_count():
    with pytest.raises(InputFormatError, match="slicing 'frames'"):
        InputSpec((2, 4, 4), (4, 4, 2), slicing="frames", dt_us=None, max_count=1)


def _graph_with(tmp_path, max_count: int | None) -> FoldedGraph:
    """A two-layer float graph on ``_spec(max_count)``, saved to ``tmp_path / "g"``."""
    weight = np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32)
    graph = FoldedGraph(
        [
            Layer("flat", "flatten", {}, (32,)),
            Layer(
                "fc",
                "linear",
                {"in_features": 32, "out_features": 3},
                (3,),
                {"weight": weight},
                NeuronSpec("iaf", threshold=1.0),
            ),
        ],
        _spec(max_count),
        num_classes=3,
    )
    save_graph(graph, tmp_path / "g")
    return graph


def test_graph_round_trips_max_count(tmp_path):
    graph = _graph_with(tmp_path, 1)
    document = json.loads((tmp_path / "g" / "graph.json").read_text())
    assert document["input"]["max_count"] == 1
    assert load_graph(tmp_path / "g").input == graph.input


def test_graph_without_max_count_loads_as_unlimited(tmp_path):
    """A graph written before the field existed has no ``max_count`` key; an unlimited one is
    still written that way."""
    _graph_with(tmp_path, None)
    document = json.loads((tmp_path / "g" / "graph.json").read_text())
    assert "max_count" not in document["input"]
    assert load_graph(tmp_path / "g").input.max_count is None


def _synthetic(*extra: str):
    return build_data(
        load_config(
            SYNTHETIC, ["data.n_samples=21", "data.n_test_samples=7", "data.val_fraction=0.34", *extra]
        )
    )


def test_data_max_count_sets_the_spec_and_the_cache_holds_no_stale_frames(tmp_path):
    cache = f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}"
    counted = _synthetic(cache)
    frames, _ = counted.test[0]
    assert counted.input_spec.max_count is None and frames.max() > 1
    binary = _synthetic(cache, "data.max_count=1")
    assert binary.input_spec.max_count == 1
    assert binary.test.cache.folder != counted.test.cache.folder
    assert binary.fingerprint != counted.fingerprint
    clipped, _ = binary.test[0]
    np.testing.assert_array_equal(clipped.numpy(), np.minimum(frames.numpy(), 1))


def test_hardvs_refuses_data_max_count():
    with pytest.raises(AsaSnnError, match=r"data\.max_count"):
        load_config(SYNTHETIC, ["data.kind=hardvs", "data.max_count=1"])


def test_loihi_drops_no_event_of_binary_frames():
    counts = frames_for(_spec(None), _stream())[None]
    clipped = input_difference("loihi", counts)
    assert clipped["dropped"] == 3 and clipped["received"] == 4
    binary = input_difference("loihi", frames_for(_spec(1), _stream())[None], max_count=1)
    assert binary["dropped"] == 0 and binary["dropped_fraction"] == 0.0
    assert "input.max_count" in binary["description"]
