"""Per-core bursts on Speck: which core receives more synaptic operations than it can process, when,
and what each candidate fix does to that peak and to accuracy, by simulation.

A Speck core that receives synaptic operations faster than it processes them delays or drops
events (sinabs' Speck documentation, FACTS.md section 3). The average over a recording hides
bursts, so the load is measured in sliding windows of real time:

    load(t) = sum of the synaptic operations of the events the core receives in [t, t + W)
    rate(t) = load(t) / W                     (synaptic operations per second)

from the event-driven simulation with the recording's own timestamps (the chip's
:attr:`~asa_snn.chips.base.Chip.timed_run`, on Speck its event-driven mode; a spike carries the
time of the input event that caused it). Per recording and core: the peak (the exact maximum over
every window start), the 99th percentile of rate(t) over window starts spaced ``W / 10`` across
the recording, and the start of the busiest window. Speck runs one layer per core, so a core is
named by its layer and the core the chip's :attr:`~asa_snn.chips.base.Chip.core_options` gives it.

Checked fixes (:func:`check_fixes`), each re-simulated on the same recordings:

* threshold: the threshold of the spiking layer whose spikes the core receives, times 1.5 and 2
  (rounded, at most the int16 state's largest value on a quantized graph): fewer spikes reach it.
* decimation: the input events of every pixel thinned to one in 2 and one in 4 (the first kept),
  the way an input event decimation on the chip's sensor path passes a fixed share of events.
* core assignment: every core processes at the same rate in this model and a layer's load is its
  own, so moving the layer to another core leaves its peak as it is; reported with the other
  cores its memory fits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from asa_snn.chips.base import Chip, CoreLoad, TimedRun
from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.model_input import ModelEvents, model_events
from asa_snn.errors import AsaSnnError
from asa_snn.simulators.inputs import RecordingSource, recordings

DEFAULT_WINDOW_MS = 1.0
"""Sliding-window length when the budget and the command line name none (milliseconds)."""
PERCENTILE = 99.0
THRESHOLD_FACTORS = (1.5, 2.0)
DECIMATIONS = (2, 4)
STATE_MAX = 2**15 - 1
CURVE_POINTS = 600


# ---------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowLoad:
    """One core during one recording.

    Attributes:
        peak: synaptic operations per second in the busiest window.
        p99: the 99th percentile of the window rate over window starts spaced window / 10.
        peak_start_us: start of the busiest window, microseconds from the recording's first event.
        total: synaptic operations over the whole recording.
    """

    peak: float
    p99: float
    peak_start_us: int
    total: int


def window_load(load: CoreLoad, window_us: float, duration_us: int) -> WindowLoad:
    """Peak, 99th percentile and time of the peak of ``load`` in windows of ``window_us`` microseconds.

    The peak is exact: a busiest window can always start at an event, so every event's time is
    tried as a start. Rates are synaptic operations / (window_us * 1e-6).
    """
    if window_us <= 0:
        raise AsaSnnError(f"burst window is {window_us} us; expected > 0")
    times, synops = load.times_us, load.synops
    cumulative = np.concatenate([[0], np.cumsum(synops)])
    seconds = window_us * 1e-6
    if len(times):
        ends = np.searchsorted(times, times + window_us, "left")
        sums = cumulative[ends] - cumulative[np.arange(len(times))]
        best = int(np.argmax(sums))
        peak, start = float(sums[best]), int(times[best])
    else:
        peak, start = 0.0, 0
    grid = np.arange(0.0, max(float(duration_us), 1.0), window_us / 10)
    in_window = (
        cumulative[np.searchsorted(times, grid + window_us, "left")]
        - cumulative[np.searchsorted(times, grid, "left")]
    )
    p99 = float(np.percentile(in_window, PERCENTILE)) if len(grid) else 0.0
    return WindowLoad(peak / seconds, p99 / seconds, start, int(cumulative[-1]))


def load_curve(
    load: CoreLoad, window_us: float, duration_us: int, points: int = CURVE_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """rate(t) at ``points`` window starts spread over the recording: (t in ms [P], synaptic
    operations per second [P])."""
    times = np.linspace(0.0, max(float(duration_us) - window_us, 0.0), points)
    cumulative = np.concatenate([[0], np.cumsum(load.synops)])
    sums = (
        cumulative[np.searchsorted(load.times_us, times + window_us, "left")]
        - cumulative[np.searchsorted(load.times_us, times, "left")]
    )
    return times / 1000.0, sums / (window_us * 1e-6)


# ---------------------------------------------------------------- measuring


def _prediction(graph: FoldedGraph, run: TimedRun) -> int:
    """Class of the rate readout from the last spiking layer's counts [T, K * vote]."""
    last = graph.spiking_layers()[-1].name
    rate = run.counts[last].mean(axis=0)
    return int(rate.reshape(-1, graph.vote).mean(axis=1).argmax())


@dataclass
class BurstReport:
    """Per-core window loads of every recording (:func:`measure_bursts`).

    Attributes:
        window_ms: the window length.
        recordings: names, in order.
        loads: layer -> one :class:`WindowLoad` per recording.
        cores: layer -> its core.
        worst: (recording index, layer) of the highest peak.
        curves: layer -> (t ms, rate) of the worst recording (:func:`load_curve`).
        accuracy: share of the labelled recordings the event-driven model predicts right (None
            without labels).
        chip: the chip whose timed run and cores were measured (re-simulating the fixes uses it).
    """

    window_ms: float
    recordings: list[str]
    loads: dict[str, list[WindowLoad]]
    cores: dict[str, int | None]
    worst: tuple[int, str]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    accuracy: float | None = None
    chip: Chip | None = None

    def peaks(self, layer: str) -> np.ndarray:
        """float64 [B]: the layer's peak rate per recording."""
        return np.array([w.peak for w in self.loads[layer]])

    def describe(self, layer: str, index: int) -> str:
        """Where a peak is: core, layer, window and recording."""
        load = self.loads[layer][index]
        start = load.peak_start_us / 1000.0
        return (
            f"core {self.cores.get(layer)} (layer {layer}): {load.peak:.4g} synops/s in the "
            f"{self.window_ms:g} ms window at {start:.3f}-{start + self.window_ms:.3f} ms of "
            f"{self.recordings[index]}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: per layer and recording peak, p99, time of the peak."""
        index, layer = self.worst
        return {
            "window_ms": self.window_ms,
            "cores": self.cores,
            "worst": {
                "recording": self.recordings[index],
                "layer": layer,
                "where": self.describe(layer, index),
            },
            "accuracy_event_driven": self.accuracy,
            "layers": {
                name: [
                    {
                        "recording": rec,
                        "peak_synops_per_s": w.peak,
                        "p99_synops_per_s": w.p99,
                        "peak_window_start_ms": w.peak_start_us / 1000.0,
                        "synops": w.total,
                    }
                    for rec, w in zip(self.recordings, loads, strict=True)
                ]
                for name, loads in self.loads.items()
            },
        }


def model_recordings(
    graph: FoldedGraph, data: str | RecordingSource, max_samples: int | None
) -> Iterator[tuple[str, ModelEvents, int]]:
    """(name, events as the model sees them, label) of each recording, read one at a time."""
    for stream, label in recordings(graph, data, max_samples):
        yield stream.source, model_events(graph.input, stream), label


def _require_timed_run(chip: Chip) -> None:
    if chip.timed_run is None or chip.core_options is None:
        raise AsaSnnError(
            "peak per-core load needs Speck's event-driven simulation (a chip with a timed run); the "
            f"budget's cores are {chip.name!r} (use a Speck backend or a graph folded for Speck)"
        )


def measure_bursts(
    graph: FoldedGraph,
    data: str | RecordingSource,
    window_ms: float,
    max_samples: int | None,
    chip: Chip,
) -> BurstReport:
    """Window loads of every core of ``chip`` on every recording of ``data``, and the load curves of the
    recording with the highest peak.

    Raises:
        AsaSnnError: a chip without a timed run (only Speck has one), no recordings, or a window <= 0.
    """
    _require_timed_run(chip)
    window_us = window_ms * 1000.0
    names: list[str] = []
    loads: dict[str, list[WindowLoad]] = {}
    worst_peak, worst, worst_run = -1.0, (0, ""), None
    right = labelled = 0
    for name, events, label in model_recordings(graph, data, max_samples):
        run = chip.timed_run(graph, events)
        for layer, load in run.loads.items():
            measured = window_load(load, window_us, run.duration_us)
            loads.setdefault(layer, []).append(measured)
            if measured.peak > worst_peak:
                worst_peak, worst, worst_run = measured.peak, (len(names), layer), run
        if label >= 0:
            labelled += 1
            right += _prediction(graph, run) == label
        names.append(name)
    if worst_run is None:
        raise AsaSnnError("no recordings to measure bursts on")
    curves = {
        layer: load_curve(load, window_us, worst_run.duration_us) for layer, load in worst_run.loads.items()
    }
    return BurstReport(
        window_ms,
        names,
        loads,
        {layer: core for layer, (core, _) in chip.core_options(graph).items()},
        worst,
        curves,
        right / labelled if labelled else None,
        chip,
    )


# ---------------------------------------------------------------- checked fixes


def decimate(events: ModelEvents, factor: int) -> ModelEvents:
    """Every pixel's events thinned to one in ``factor`` (its 1st, (factor + 1)th, ... kept)."""
    order = np.lexsort((np.arange(len(events.x)), events.x, events.y, events.channel))
    pixels = np.stack([events.channel, events.y, events.x])[:, order]
    new_pixel = np.r_[True, np.any(np.diff(pixels, axis=1) != 0, axis=0)] if len(order) else order > 0
    starts = np.flatnonzero(new_pixel)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = rank % factor == 0
    fields = (events.step, events.channel, events.y, events.x, events.t_us)
    return ModelEvents(*(array[keep] for array in fields))


def feeding_layer(graph: FoldedGraph, layer: str) -> str | None:
    """The spiking layer whose spikes ``layer`` receives (None: it reads the input)."""
    names = [spiking.name for spiking in graph.spiking_layers()]
    at = names.index(layer)
    return names[at - 1] if at > 0 else None


def with_threshold(graph: FoldedGraph, layer: str, factor: float) -> FoldedGraph:
    """A copy of ``graph`` whose layer ``layer`` fires at ``factor`` times its threshold (an integer,
    at most the int16 state's largest value, on a quantized graph)."""
    layers = []
    for item in graph.layers:
        if item.name == layer and item.neuron is not None:
            theta = item.neuron.threshold * factor
            if graph.quantized:
                theta = float(min(round(theta), STATE_MAX))
            item = replace(item, neuron=replace(item.neuron, threshold=theta))
        layers.append(item)
    return replace(graph, layers=layers)


@dataclass(frozen=True)
class Fix:
    """One candidate fix and what the re-simulation measured.

    Attributes:
        kind: ``threshold``, ``decimation`` or ``core assignment``.
        change: what was changed, in words.
        layer_peak: the overloaded layer's highest peak rate over the recordings after the change.
        network_peak: the busiest core's highest peak rate after the change.
        accuracy: event-driven accuracy over the labelled recordings after the change (None
            without labels).
        within_limit: the network peak is at or below the limit.
    """

    kind: str
    change: str
    layer_peak: float
    network_peak: float
    accuracy: float | None
    within_limit: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "kind": self.kind,
            "change": self.change,
            "layer_peak_synops_per_s": self.layer_peak,
            "network_peak_synops_per_s": self.network_peak,
            "accuracy": self.accuracy,
            "within_limit": self.within_limit,
        }


def _candidates(graph: FoldedGraph, layer: str) -> list[tuple[str, str, FoldedGraph, int]]:
    """(kind, change, graph, decimation) of each candidate that re-simulates."""
    found = []
    feeding = feeding_layer(graph, layer)
    if feeding is not None:
        theta = graph.layer(feeding).neuron.threshold
        for factor in THRESHOLD_FACTORS:
            changed = with_threshold(graph, feeding, factor)
            new = changed.layer(feeding).neuron.threshold
            change = f"threshold of {feeding} {theta:g} -> {new:g} (x{factor:g})"
            found.append(("threshold", change, changed, 1))
    for factor in DECIMATIONS:
        found.append(("decimation", f"input events decimated 1 in {factor} per pixel", graph, factor))
    return found


def check_fixes(
    graph: FoldedGraph,
    data: str | RecordingSource,
    bursts: BurstReport,
    layer: str,
    limit: float,
    max_samples: int | None = None,
) -> list[Fix]:
    """Re-simulate every recording with each candidate fix for the core of ``layer`` and measure
    the peaks and accuracy again (module docstring); the core-assignment candidate is reported
    from the baseline (its load does not depend on the core).

    Returns:
        One :class:`Fix` per candidate: threshold x1.5 and x2 on the feeding layer (where one
        feeds it), decimation 2 and 4, core assignment.
    """
    window_us = bursts.window_ms * 1000.0
    candidates = _candidates(graph, layer)
    peaks = [dict.fromkeys(bursts.loads, 0.0) for _ in candidates]
    right = [0] * len(candidates)
    labelled = 0
    for _, events, label in model_recordings(graph, data, max_samples):
        labelled += label >= 0
        for i, (_, _, changed, factor) in enumerate(candidates):
            run = bursts.chip.timed_run(changed, decimate(events, factor) if factor > 1 else events)
            for name, load in run.loads.items():
                peaks[i][name] = max(peaks[i][name], window_load(load, window_us, run.duration_us).peak)
            right[i] += label >= 0 and _prediction(changed, run) == label
    fixes = []
    for (kind, change, _, _), peak, correct in zip(candidates, peaks, right, strict=True):
        network = max(peak.values())
        accuracy = correct / labelled if labelled else None
        fixes.append(Fix(kind, change, peak[layer], network, accuracy, network <= limit))
    fixes.append(_core_assignment(graph, bursts, layer, limit))
    return fixes


def _core_assignment(graph: FoldedGraph, bursts: BurstReport, layer: str, limit: float) -> Fix:
    """The core-assignment candidate: the same peaks (module docstring), with the cores that fit."""
    core, others = bursts.chip.core_options(graph)[layer]
    layer_peak = float(bursts.peaks(layer).max())
    network = max(float(bursts.peaks(name).max()) for name in bursts.loads)
    change = (
        f"{layer} from core {core} to core {others[0]} (fits cores {others}): the load moves with "
        "the layer, every core has the same rate"
        if others
        else f"{layer} fits no other core"
    )
    return Fix("core assignment", change, layer_peak, network, bursts.accuracy, network <= limit)
