"""Spike budgets: limits on what a network may spend per inference, checked by simulation.

A budget file (TOML, or YAML with the same structure) holds limits for the whole network and per
spiking layer; every limit is optional::

    description = "Speck dev kit, 2 mW envelope"        # optional, free text

    [network]
    firing_rate = 0.05                  # spikes per neuron per step, all spiking neurons together
    spikes_per_inference = 20000        # spikes of all layers in one inference (one recording)
    synops_per_second_per_core = 2e6    # synaptic operations per second on the busiest core
    peak_synops_per_second_per_core = 2e7   # the same in the busiest window (Speck; see below)
    burst_window_ms = 1.0               # that window's length (a setting, not a limit; default 1)
    energy_uj = { speck = 500, loihi = 50 }   # microjoules per inference, by energy preset
    latency_steps = 16                  # decision latency, in time steps
    kernel_memory_per_core = 16384      # Speck: kernel words; Loihi: synapses, on the fullest core
    neuron_memory_per_core = 65536      # Speck: neuron words; Loihi: neurons, on the fullest core

    [layers.conv1]                      # a spiking layer of the graph, by name
    firing_rate = 0.1
    spikes_per_inference = 8000
    synops_per_second_per_core = 1e6
    peak_synops_per_second_per_core = 1e7
    energy_uj = { speck = 100 }         # the layer's own terms (no resting power)
    kernel_memory_per_core = 4096
    neuron_memory_per_core = 16384

Definitions (``T`` steps of ``dt_us`` microseconds per inference, ``duration = dt_us * T``):

- firing rate of a layer: spikes / (neurons * T); of the network: all spikes / (all neurons * T).
- synaptic operations: :func:`asa_snn.energy.model.synaptic_ops` of the layer's
  :class:`~asa_snn.energy.model.LayerOps` (events x exact fan-out). Per core: Speck runs one
  layer per core (the layer -> core table of :func:`~asa_snn.chips.speck.mapping.check_speck`);
  Loihi splits a layer evenly over its cores (:func:`~asa_snn.chips.loihi.mapping.check_loihi`),
  so a layer's rate is ``synops / cores / duration``. The network figure is the busiest core's.
- peak synaptic operations per second per core (Speck only): the synaptic operations a core receives
  in its busiest window of ``burst_window_ms`` real milliseconds, divided by the window, from the
  event-driven simulation with the recordings' timestamps (:mod:`asa_snn.workflows.bursts`). The
  verdict names the core, the layer, the window and the recording; when the limit is exceeded,
  each candidate fix (a higher threshold on the layer feeding the core, input decimation, another
  core) is re-simulated and its peak and accuracy reported.
- energy: :func:`asa_snn.energy.model.energy` under the named preset (:data:`PRESETS`), in
  microjoules; the network figure includes the static (resting-power) term.
- decision latency: ``1 + `` the first step in which the output layer spikes (the earliest step a
  spike readout can decide); ``T`` when it never spikes (the rate readout then decides only at the
  end). On Loihi this includes the one-step delay of every synapse layer.
- memory per core: Speck kernel / neuron words of the layer's core (check_speck); Loihi synapses /
  neurons per core of the layer (split evenly, rounded up). The network figure is the fullest core's.

Each figure is measured per recording; a limit holds when the WORST recording stays within it
(``measured <= limit``); the margin is ``limit - worst``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from asa_snn.chips.base import Chip, CoreUse
from asa_snn.chips.registry import chip_of_backend, chips, energy_presets, get_backend, get_chip
from asa_snn.convert.graph import FoldedGraph
from asa_snn.energy.model import EnergyModel, energy, synaptic_ops
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.files import staged_folder, write_json
from asa_snn.simulators.base import SimulationResult
from asa_snn.simulators.inputs import RecordingSource, input_batches
from asa_snn.simulators.operations import graph_layer_ops
from asa_snn.simulators.summary import confusion_matrix, label_figures, per_class_text
from asa_snn.workflows.bursts import DEFAULT_WINDOW_MS, BurstReport, Fix, check_fixes, measure_bursts
from asa_snn.workflows.simulate import class_names, confusion_title, data_source, draw_confusion

METRICS: dict[str, str] = {
    "firing_rate": "spikes per neuron per step",
    "spikes_per_inference": "spikes per inference",
    "synops_per_second_per_core": "synaptic operations per second per core",
    "peak_synops_per_second_per_core": "synaptic operations per second per core in the busiest window",
    "energy_uj": "microjoules per inference, a table {preset = number}",
    "latency_steps": "time steps",
    "kernel_memory_per_core": "Speck kernel words / Loihi synapses per core",
    "neuron_memory_per_core": "Speck neuron words / Loihi neurons per core",
}
"""Budget key -> its unit (what the number means)."""
NETWORK_METRICS = tuple(METRICS)
LAYER_METRICS = tuple(key for key in METRICS if key != "latency_steps")
TOP_LEVEL = ("description", "network", "layers")
WINDOW_KEY = "burst_window_ms"
"""The [network] setting that gives the window of ``peak_synops_per_second_per_core`` (milliseconds)."""
PEAK = "peak_synops_per_second_per_core"


# ---------------------------------------------------------------- the budget file


@dataclass(frozen=True)
class Budget:
    """Limits read from a budget file.

    Attributes:
        network: metric -> limit (``energy_uj``: preset -> microjoules).
        layers: layer name -> metric -> limit.
        source: the file (used in messages).
        description: free text from the file.
        window_ms: ``burst_window_ms``, the window of the peak per-core load (None: not given).
    """

    network: dict[str, Any]
    layers: dict[str, dict[str, Any]]
    source: str = "<budget>"
    description: str = ""
    window_ms: float | None = None


def _number(value: object, where: str, unit: str) -> float:
    """A finite number >= 0, else an error naming ``where`` and the expected unit."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputFormatError(f"{where} is {value!r:.80}; expected a number in {unit} (no unit text)")
    if value < 0:
        raise InputFormatError(f"{where} is {value}; expected a number >= 0 in {unit}")
    return float(value)


def _limits(table: object, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    """Check one [network] / [layers.X] table: known keys, numbers, energy presets."""
    if not isinstance(table, dict):
        raise InputFormatError(f"{where} is {table!r}; expected a table of limits ({', '.join(allowed)})")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise InputFormatError(f"{where}: unknown key(s) {unknown}; expected some of {list(allowed)}")
    limits: dict[str, Any] = {}
    for key, value in table.items():
        if key == "energy_uj":
            if not isinstance(value, dict):
                raise InputFormatError(
                    f"{where}.energy_uj is {value!r}; expected a table {{preset = microjoules}} "
                    f"with presets from {list(energy_presets())}"
                )
            bad = sorted(set(value) - set(energy_presets()))
            if bad:
                raise InputFormatError(
                    f"{where}.energy_uj: unknown preset(s) {bad}; expected some of {list(energy_presets())}"
                )
            limits[key] = {
                preset: _number(number, f"{where}.energy_uj.{preset}", "microjoules")
                for preset, number in value.items()
            }
        else:
            limits[key] = _number(value, f"{where}.{key}", METRICS[key])
    return limits


def parse_budget(document: object, source: str = "<budget>") -> Budget:
    """A :class:`Budget` from a parsed TOML / YAML document (format in the module docstring).

    Raises:
        InputFormatError: naming ``source`` and the key, for unknown keys, non-numbers, negative
            limits, unknown energy presets.
    """
    if not isinstance(document, dict):
        raise InputFormatError(f"{source}: expected a table with keys {list(TOP_LEVEL)}, got {document!r}")
    unknown = sorted(set(document) - set(TOP_LEVEL))
    if unknown:
        raise InputFormatError(
            f"{source}: unknown top-level key(s) {unknown}; expected some of {list(TOP_LEVEL)}"
        )
    description = document.get("description", "")
    if not isinstance(description, str):
        raise InputFormatError(f"{source}: description is {description!r}; expected text")
    network_table = document.get("network", {})
    window_ms = None
    if isinstance(network_table, dict) and WINDOW_KEY in network_table:
        network_table = dict(network_table)
        window_ms = _number(network_table.pop(WINDOW_KEY), f"{source}: network.{WINDOW_KEY}", "milliseconds")
        if window_ms <= 0:
            raise InputFormatError(f"{source}: network.{WINDOW_KEY} is {window_ms}; expected > 0 ms")
    network = _limits(network_table, NETWORK_METRICS, f"{source}: network")
    layers_table = document.get("layers", {})
    if not isinstance(layers_table, dict):
        raise InputFormatError(f"{source}: layers is {layers_table!r}; expected tables [layers.<name>]")
    layers = {
        name: _limits(table, LAYER_METRICS, f"{source}: layers.{name}")
        for name, table in layers_table.items()
    }
    return Budget(network, layers, source, description, window_ms)


def load_budget(path: str | Path) -> Budget:
    """Read a budget file: ``.toml``, or ``.yaml`` / ``.yml``, through the bounded reader of training
    configs (:func:`asa_snn.train.config.read_data_file`: YAML aliases may not expand a file past
    ``MAX_YAML_NODES`` values, nesting is limited to ``MAX_NESTING`` levels).

    Raises:
        AsaSnnError: the file does not exist.
        InputFormatError: unknown extension, a syntax error, a YAML alias bomb, nesting too deep,
            or anything :func:`parse_budget` rejects.
    """
    from asa_snn.train.config import read_data_file

    path = Path(path)
    if not path.is_file():
        raise AsaSnnError(f"{path}: no such budget file")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise InputFormatError(f"{path}: budget files end in .toml, .yaml or .yml, not {suffix!r}")
    # the bounded reader of training configs: YAML aliases and nesting limited, plain data only
    return parse_budget(read_data_file(path), str(path))


def check_budget_layers(budget: Budget, graph: FoldedGraph) -> None:
    """Every ``[layers.X]`` of the budget must be a spiking layer of ``graph``."""
    names = [layer.name for layer in graph.spiking_layers()]
    for name in budget.layers:
        if name not in names:
            raise InputFormatError(
                f"{budget.source}: layers.{name}: the graph has no spiking layer {name!r}; "
                f"spiking layers: {', '.join(names)}"
            )


# ---------------------------------------------------------------- cores of a chip


def chip_for(backend: str, graph: FoldedGraph) -> Chip:
    """The chip whose cores the per-core limits refer to: the backend's chip, else the graph's target."""
    chip = chip_of_backend(backend)
    if chip is not None:
        return chip
    if graph.target in chips():
        return get_chip(graph.target)
    raise AsaSnnError(
        f"backend {backend!r} on a graph folded for {graph.target!r}: per-core budgets need a chip; use a "
        f"backend of a chip ({', '.join(n for c in chips().values() for n in c.backends)}) or a graph "
        "folded for a chip"
    )


# ---------------------------------------------------------------- measurement


def decision_latency(outputs: np.ndarray) -> np.ndarray:
    """Steps until the first output spike, per sample: outputs [B, T, K] -> int64 [B] in 1..T.

    ``1 + first step with an output spike``; ``T`` when the output never spikes.
    """
    steps = outputs.shape[1]
    active = outputs.reshape(outputs.shape[0], steps, -1).sum(axis=2) > 0
    return np.where(active.any(axis=1), active.argmax(axis=1) + 1, steps).astype(np.int64)


def _sample(result: SimulationResult, index: int) -> SimulationResult:
    counts = {name: c[index : index + 1] for name, c in result.spike_counts.items()}
    maps = {name: m[index : index + 1] for name, m in result.spike_maps.items()}
    return SimulationResult(result.backend, counts, result.outputs[index : index + 1], spike_maps=maps)


def measure(
    graph: FoldedGraph,
    result: SimulationResult,
    frames: np.ndarray,
    layout: dict[str, CoreUse],
    presets: dict[str, EnergyModel],
) -> dict[tuple[str, str], np.ndarray]:
    """Every budget figure per recording.

    Args:
        graph: the simulated graph.
        result: spike counts [B, T] per spiking layer and outputs [B, T, K].
        frames: the input [B, T, C, H, W].
        layout: spiking layer -> :class:`CoreUse`.
        presets: energy models to price, by name.

    Returns:
        (scope, metric) -> float64 [B], scope ``"network"`` or a layer name, metric a key of
        :data:`METRICS` (``energy_uj.<preset>`` for energy). Units in the module docstring.
    """
    batch, steps = frames.shape[:2]
    duration_s = graph.input.step_us * steps * 1e-6
    spiking = graph.spiking_layers()
    neurons = {layer.name: int(np.prod(layer.output_shape)) for layer in spiking}
    spikes = {name: result.spike_counts[name].sum(axis=1).astype(np.float64) for name in neurons}
    figures: dict[tuple[str, str], np.ndarray] = {}
    for name, count in spikes.items():
        figures[name, "spikes_per_inference"] = count
        figures[name, "firing_rate"] = count / (neurons[name] * steps)
    total = sum(spikes.values())
    figures["network", "spikes_per_inference"] = total
    figures["network", "firing_rate"] = total / (sum(neurons.values()) * steps)
    figures["network", "latency_steps"] = decision_latency(result.outputs).astype(np.float64)
    per_sample = [graph_layer_ops(graph, _sample(result, b), frames[b : b + 1]) for b in range(batch)]
    synops = {
        ops.name: np.array([synaptic_ops(sample[i]) for sample in per_sample])
        for i, ops in enumerate(per_sample[0])
    }
    core_names = [name for name in layout if name in synops]
    for name in core_names:
        figures[name, "synops_per_second_per_core"] = synops[name] / layout[name].cores / duration_s
        figures[name, "kernel_memory_per_core"] = np.full(batch, float(layout[name].kernel_memory))
        figures[name, "neuron_memory_per_core"] = np.full(batch, float(layout[name].neuron_memory))
    for metric in ("synops_per_second_per_core", "kernel_memory_per_core", "neuron_memory_per_core"):
        stacked = [figures[name, metric] for name in core_names]
        figures["network", metric] = np.max(stacked, axis=0) if stacked else np.zeros(batch)
    for preset, model in presets.items():
        reports = [energy(sample, model, duration_s) for sample in per_sample]
        figures["network", f"energy_uj.{preset}"] = np.array([r.total_j * 1e6 for r in reports])
        for name in synops:
            figures[name, f"energy_uj.{preset}"] = np.array([r.layer_total_j[name] * 1e6 for r in reports])
    return figures


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class BudgetRow:
    """One limit and what was measured against it.

    Attributes:
        scope: ``"network"`` or a spiking layer's name.
        metric: key of :data:`METRICS` (``energy_uj.<preset>`` for energy).
        unit: what the numbers mean.
        worst, mean: the largest and the mean figure over the recordings.
        limit: the budget's limit.
        margin: ``limit - worst`` (negative when exceeded).
        ok: ``worst <= limit``.
        worst_recording: the recording with the largest figure.
        over: the recordings whose figure exceeds the limit.
        detail: where the worst figure is, in words (the peak per-core load: core, layer, window).
    """

    scope: str
    metric: str
    unit: str
    worst: float
    mean: float
    limit: float
    margin: float
    ok: bool
    worst_recording: str
    over: tuple[str, ...] = ()
    detail: str = ""

    @property
    def ratio(self) -> float:
        """worst / limit (inf for a zero limit exceeded, 0 for a zero limit met)."""
        if self.limit > 0:
            return self.worst / self.limit
        return math.inf if self.worst > 0 else 0.0


@dataclass
class BudgetReport:
    """Result of :func:`evaluate_budget`: one row per limit in the budget file.

    Attributes:
        rows: one per limit.
        backend, chip: the simulator and the chip whose cores the per-core figures count.
        recordings: the recordings' names, in order.
        budget_source: the budget file.
        notes: backend remarks.
        confusion: counts [K][K] of the labelled recordings (rows true class, columns predicted),
            or None when no recording has a label.
        classes: the K class names (``"0" .. "K-1"`` where the data does not name them).
        data: what was read (``kind``, ``source``, ``labels``, ``split``;
            :class:`~asa_snn.simulators.inputs.RecordingSource`).
        measured: scope -> metric -> (mean, worst) over the recordings of every figure measured,
            limited or not (what the figures draw).
        bursts: per-core window loads on Speck (:class:`~asa_snn.workflows.bursts.BurstReport`),
            None on other chips.
        fixes: the checked fixes for an exceeded peak per-core load, else empty.
    """

    rows: list[BudgetRow]
    backend: str
    chip: str
    recordings: list[str]
    budget_source: str
    notes: list[str] = field(default_factory=list)
    confusion: list[list[int]] | None = None
    classes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    bursts: BurstReport | None = None
    fixes: list[Fix] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, Any]:
        """``accuracy``, ``per_class_accuracy``, ``confusion`` and ``labelled``
        (:func:`~asa_snn.simulators.summary.label_figures`; None and 0 when labels are unknown)."""
        return label_figures(np.zeros((0, 0)) if self.confusion is None else np.asarray(self.confusion))

    @property
    def accuracy(self) -> float | None:
        """Share of the labelled recordings predicted right, or None when labels are unknown."""
        return self.labels["accuracy"]

    @property
    def ok(self) -> bool:
        """True when every limit holds (the CLI exits 0), False otherwise (the CLI exits 1)."""
        return all(row.ok for row in self.rows)

    @property
    def failures(self) -> list[BudgetRow]:
        """The rows whose limit is exceeded, worst (largest worst / limit) first."""
        return sorted((row for row in self.rows if not row.ok), key=lambda row: -row.ratio)

    def worst_layers(self, count: int = 3) -> list[str]:
        """Up to ``count`` layer names, closest to or furthest over their limits first (by worst / limit)."""
        ranked: list[str] = []
        for row in sorted((r for r in self.rows if r.scope != "network"), key=lambda r: -r.ratio):
            if row.scope not in ranked:
                ranked.append(row.scope)
        return ranked[:count]

    def table(self) -> str:
        """Aligned text: one line per limit, then the verdict, worst layers and offending recordings."""
        header = ("scope", "metric", "worst", "mean", "limit", "margin", "verdict", "worst recording")
        lines = [header] + [
            (
                row.scope,
                row.metric,
                f"{row.worst:.4g}",
                f"{row.mean:.4g}",
                f"{row.limit:.4g}",
                f"{row.margin:+.4g}",
                "PASS" if row.ok else "FAIL",
                row.worst_recording,
            )
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        failures = self.failures
        verdict = "PASS: every limit holds" if not failures else f"FAIL: {len(failures)} limit(s) exceeded"
        text.append(
            f"{verdict} ({self.backend} backend, {self.chip} cores, {len(self.recordings)} recordings)"
        )
        if self.worst_layers():
            text.append(f"worst layers: {', '.join(self.worst_layers())}")
        for row in failures:
            text.append(f"over {row.scope} {row.metric} ({row.limit:.4g}): {', '.join(row.over)}")
        for row in self.rows:
            if row.detail:
                text.append(f"{row.scope} {row.metric} worst: {row.detail}")
        if self.fixes and self.bursts is not None:
            before = (
                ""
                if self.bursts.accuracy is None
                else f"; event-driven accuracy before: {self.bursts.accuracy:.3f}"
            )
            text.append(f"checked fixes (event-driven, re-simulated on the same recordings{before}):")
        for fix in self.fixes:
            accuracy = "" if fix.accuracy is None else f", accuracy {fix.accuracy:.3f}"
            verdict = "within the limit" if fix.within_limit else "still over"
            text.append(
                f"  {fix.kind}: {fix.change}: layer peak {fix.layer_peak:.4g}, busiest core "
                f"{fix.network_peak:.4g} synops/s ({verdict}){accuracy}"
            )
        labels = self.labels
        if labels["accuracy"] is not None:
            text.append(f"accuracy: {labels['accuracy']:.3f} over {labels['labelled']} labelled recordings")
            text.append(f"per class: {per_class_text(labels['per_class_accuracy'], self.classes)}")
        return "\n".join(text + [f"note: {note}" for note in self.notes])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what ``budget.json`` holds)."""
        return {
            "ok": self.ok,
            "backend": self.backend,
            "chip": self.chip,
            "budget": self.budget_source,
            "recordings": self.recordings,
            "worst_layers": self.worst_layers(),
            "rows": [
                {
                    "scope": r.scope,
                    "metric": r.metric,
                    "unit": r.unit,
                    "worst": r.worst,
                    "mean": r.mean,
                    "limit": r.limit,
                    "margin": r.margin,
                    "ok": r.ok,
                    "worst_recording": r.worst_recording,
                    "over": list(r.over),
                    "detail": r.detail,
                }
                for r in self.rows
            ],
            "measured": {
                scope: {metric: {"mean": mean, "worst": worst} for metric, (mean, worst) in metrics.items()}
                for scope, metrics in self.measured.items()
            },
            "bursts": None if self.bursts is None else self.bursts.to_dict(),
            "fixes": [fix.to_dict() for fix in self.fixes],
            "notes": self.notes,
            "data": self.data,
            "classes": self.classes,
            **self.labels,
        }


def _flat_limits(limits: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(metric, limit, unit) with ``energy_uj`` expanded to ``energy_uj.<preset>``."""
    flat = []
    for key, value in limits.items():
        if key == "energy_uj":
            flat += [
                (f"energy_uj.{preset}", limit, "microjoules per inference") for preset, limit in value.items()
            ]
        else:
            flat.append((key, value, METRICS[key]))
    return flat


def compare_with_budget(
    budget: Budget, figures: dict[tuple[str, str], np.ndarray], recordings: list[str]
) -> list[BudgetRow]:
    """One :class:`BudgetRow` per limit of ``budget``, from per-recording ``figures`` (see :func:`measure`).

    Raises:
        AsaSnnError: a limit on a layer that has no such figure (e.g. memory of a layer with no core).
    """
    rows = []
    scopes = [("network", budget.network), *budget.layers.items()]
    for scope, limits in scopes:
        for metric, limit, unit in _flat_limits(limits):
            values = figures.get((scope, metric))
            if values is None:
                raise AsaSnnError(
                    f"{budget.source}: {scope}.{metric}: no such figure is measured for {scope!r}"
                )
            worst_index = int(np.argmax(values))
            worst = float(values[worst_index])
            over = tuple(name for name, value in zip(recordings, values, strict=True) if value > limit)
            rows.append(
                BudgetRow(
                    scope,
                    metric,
                    unit,
                    worst,
                    float(values.mean()),
                    limit,
                    limit - worst,
                    worst <= limit,
                    recordings[worst_index],
                    over,
                )
            )
    return rows


def evaluate_budget(
    graph: FoldedGraph,
    budget: Budget,
    data: str | RecordingSource,
    backend: str = "speck",
    max_samples: int | None = None,
    window_ms: float | None = None,
) -> BudgetReport:
    """Simulate ``graph`` on ``data`` with ``backend`` and check every limit of ``budget``.

    Args:
        graph: the folded graph.
        budget: limits (:func:`load_budget`); its layer names must be spiking layers of ``graph``.
        data: an event file, a folder (possibly labelled), a training config (its test split) or
            ``builtin:synthetic[:N]`` (see :func:`asa_snn.workflows.simulate.data_source`), read
            in batches.
        backend: simulator backend name (:func:`asa_snn.chips.registry.backend_names`).
        max_samples: at most this many recordings.
        window_ms: the window of the peak per-core load; None: the budget's ``burst_window_ms``,
            else :data:`~asa_snn.workflows.bursts.DEFAULT_WINDOW_MS`. On Speck the per-core
            window loads are always measured (event-driven, real timestamps) for the report;
            elsewhere a ``peak_synops_per_second_per_core`` limit is an error.

    Returns:
        A :class:`BudgetReport`; ``report.ok`` is the verdict; accuracy, per-class accuracy and
        the confusion matrix where labels are known; per-core window loads and, for an exceeded
        peak limit, the checked fixes.

    Raises:
        InputFormatError: a budget layer that is not a spiking layer of the graph.
        AsaSnnError / MissingDependencyError: from the backend or the input.
    """
    if window_ms is not None and not window_ms > 0:
        raise AsaSnnError(f"--window-ms is {window_ms}; expected a window longer than 0 ms")
    check_budget_layers(budget, graph)
    chip = chip_for(backend, graph)
    runner = get_backend(backend)
    layout = chip.core_layout(graph)
    wanted = {p for limits in [budget.network, *budget.layers.values()] for p in limits.get("energy_uj", {})}
    presets = {name: model for name, model in energy_presets().items() if name in wanted}
    source = data_source(graph, data)
    parts: list[dict[tuple[str, str], np.ndarray]] = []
    names: list[str] = []
    notes: set[str] = set()
    confusion = np.zeros((graph.num_classes, graph.num_classes), np.int64)
    for batch in input_batches(graph, source, max_samples):
        result = runner.run(graph, batch.frames)
        parts.append(measure(graph, result, batch.frames, layout, presets))
        confusion += confusion_matrix(batch.labels, result.predictions(graph.vote), graph.num_classes)
        names += batch.names
        notes.update(result.notes)
    if not parts:
        raise AsaSnnError(f"{source.about['source']}: no recordings to simulate")
    figures = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    window = next(w for w in (window_ms, budget.window_ms, DEFAULT_WINDOW_MS) if w is not None)
    wants_peak = any(PEAK in limits for limits in [budget.network, *budget.layers.values()])
    bursts = None
    if chip.timed_run is not None or wants_peak:
        try:
            bursts = measure_bursts(graph, source, window, max_samples, chip)
        except AsaSnnError as exc:
            if wants_peak:
                raise
            notes.add(f"per-core window loads not measured: {exc}")
    if bursts is not None:
        figures.update(peak_figures(bursts))
    rows = [with_detail(row, bursts) for row in compare_with_budget(budget, figures, names)]
    return BudgetReport(
        rows,
        backend,
        chip.name,
        names,
        budget.source,
        sorted(notes),
        confusion.tolist() if confusion.sum() else None,
        class_names(graph, source),
        source.about,
        summarise(figures),
        bursts,
        fixes_for(graph, source, bursts, rows, max_samples),
    )


def summarise(figures: dict[tuple[str, str], np.ndarray]) -> dict[str, dict[str, tuple[float, float]]]:
    """scope -> metric -> (mean, worst) over the recordings."""
    found: dict[str, dict[str, tuple[float, float]]] = {}
    for (scope, metric), values in figures.items():
        found.setdefault(scope, {})[metric] = (float(values.mean()), float(values.max()))
    return found


def peak_figures(bursts: BurstReport) -> dict[tuple[str, str], np.ndarray]:
    """(layer, peak metric) -> peak rate per recording [B], and the network's: the busiest core's."""
    figures = {(layer, PEAK): bursts.peaks(layer) for layer in bursts.loads}
    figures["network", PEAK] = np.max([bursts.peaks(layer) for layer in bursts.loads], axis=0)
    return figures


def _peak_layer(bursts: BurstReport, row: BudgetRow) -> tuple[str, int]:
    """(layer, recording index) of a peak row's worst figure."""
    index = bursts.recordings.index(row.worst_recording)
    if row.scope != "network":
        return row.scope, index
    return max(bursts.loads, key=lambda layer: bursts.loads[layer][index].peak), index


def with_detail(row: BudgetRow, bursts: BurstReport | None) -> BudgetRow:
    """A peak per-core load row with its core, layer, window and recording in ``detail``."""
    if bursts is None or row.metric != PEAK:
        return row
    return replace(row, detail=bursts.describe(*_peak_layer(bursts, row)))


def fixes_for(
    graph: FoldedGraph,
    source: RecordingSource,
    bursts: BurstReport | None,
    rows: list[BudgetRow],
    max_samples: int | None,
) -> list[Fix]:
    """The checked fixes for the most exceeded peak per-core load limit (none when all hold)."""
    over = sorted((row for row in rows if row.metric == PEAK and not row.ok), key=lambda row: -row.ratio)
    if bursts is None or not over:
        return []
    layer, _ = _peak_layer(bursts, over[0])
    return check_fixes(graph, source, bursts, layer, over[0].limit, max_samples)


# ---------------------------------------------------------------- output


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_verdict(report: BudgetReport, metric: str) -> str:
    """``PASS`` / ``FAIL`` over the rows of one metric, ``no limit`` where the budget sets none."""
    rows = [row for row in report.rows if row.metric == metric]
    if not rows:
        return "no limit"
    return "PASS" if all(row.ok for row in rows) else "FAIL"


def _rate_figure(report: BudgetReport, path: Path) -> None:
    """Firing rate of every spiking layer and of the network (bar: mean over the recordings, dot:
    worst recording) with its limit where the budget sets one (red line over its bar), titled with
    the firing-rate rows' own verdict."""
    plt = _pyplot()
    limits = {row.scope: row for row in report.rows if row.metric == "firing_rate"}
    scopes = [s for s, metrics in report.measured.items() if s != "network" and "firing_rate" in metrics]
    scopes.append("network")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(scopes) + 2), 3.5))
    for index, scope in enumerate(scopes):
        mean, worst = report.measured[scope]["firing_rate"]
        row = limits.get(scope)
        colour = "tab:blue" if row is None or row.ok else "tab:red"
        ax.bar(index, mean, color=colour, alpha=0.6, label="mean" if index == 0 else None)
        ax.plot(index, worst, "o", color="black", label="worst recording" if index == 0 else None)
        if row is not None:
            first = not any(scope in limits for scope in scopes[:index])
            ax.hlines(
                row.limit,
                index - 0.45,
                index + 0.45,
                colors="red",
                linewidth=2,
                label="limit" if first else None,
            )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_xticks(range(len(scopes)), scopes, rotation=30, ha="right")
    ax.set_ylabel("spikes per neuron per step")
    ax.set_title(f"firing rate vs budget: {metric_verdict(report, 'firing_rate')} (red: limit)")
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def _core_load_figure(report: BudgetReport, path: Path) -> None:
    """Synaptic operations per second each Speck core receives over time (sliding window) in the
    recording with the highest peak, the peak limits and the busiest window marked."""
    bursts = report.bursts
    if bursts is None:
        raise AsaSnnError("no per-core window loads to draw (not a Speck run)")
    plt = _pyplot()
    index, worst_layer = bursts.worst
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for layer, (t_ms, rate) in bursts.curves.items():
        ax.plot(t_ms, rate, linewidth=1, label=f"core {bursts.cores.get(layer)} ({layer})")
    peak = bursts.loads[worst_layer][index]
    start_ms = peak.peak_start_us / 1000
    ax.axvspan(start_ms, start_ms + bursts.window_ms, color="orange", alpha=0.3)
    ax.plot(start_ms, peak.peak, "v", color="black", label=f"peak {peak.peak:.3g}/s")
    for row in report.rows:
        if row.metric == PEAK:
            style = "--" if row.scope == "network" else ":"
            ax.axhline(row.limit, color="red", linestyle=style, linewidth=1, label=f"limit ({row.scope})")
    ax.set_xlabel(f"window start (ms) in {Path(bursts.recordings[index]).name}")
    ax.set_ylabel(f"synops/s per core ({bursts.window_ms:g} ms window)")
    core = bursts.cores.get(worst_layer)
    ax.set_title(f"per-core load: {metric_verdict(report, PEAK)}; peak on core {core} ({worst_layer})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="x-small")
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def write_budget_report(report: BudgetReport, out_dir: str | Path) -> dict[str, Path]:
    """Write the folder ``out_dir`` with ``budget.json``, ``budget_rates.png``, on Speck
    ``core_load.png`` (per-core load over time) and, where labels are known, ``confusion.png``
    (the confusion matrix), whole or not at all.

    The files are staged beside ``out_dir`` and moved in together
    (:func:`~asa_snn.files.staged_folder`): a failure while drawing a figure leaves the previous
    folder as it was. ``out_dir`` must be new, empty, or written by asa-snn.

    Returns:
        {"json": path, "figure": path} inside ``out_dir``, and "core_load" / "confusion": path
        where written.

    Raises:
        AsaSnnError: ``out_dir`` holds files asa-snn did not write.
    """
    out = Path(out_dir)
    written = {"json": out / "budget.json", "figure": out / "budget_rates.png"}
    with staged_folder(out) as staging:
        write_json(report.to_dict(), staging / "budget.json")
        _rate_figure(report, staging / "budget_rates.png")
        if report.bursts is not None:
            _core_load_figure(report, staging / "core_load.png")
            written["core_load"] = out / "core_load.png"
        if report.confusion is not None:
            labels = report.labels
            title = confusion_title(report.backend, labels["accuracy"], labels["labelled"])
            draw_confusion(report.confusion, report.classes, title, staging / "confusion.png")
            written["confusion"] = out / "confusion.png"
    return written
