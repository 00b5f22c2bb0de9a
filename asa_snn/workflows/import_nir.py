"""``asa-snn import``: a NIR file (sinabs, Norse, snnTorch, asa-snn ...) as a folded graph for a target.

:func:`run_import` is the one entry point. It reads the file (:func:`~asa_snn.convert.nir_import.read_nir`),
builds the float graph for the target with its input spec (sensor, dt, steps: what NIR cannot say;
:func:`~asa_snn.convert.nir_import.nir_to_graph`) and, with calibration data, quantizes it for the
target and measures on the SAME recordings:

1. the NIR model in float (:class:`~asa_snn.convert.graph_model.GraphModel` on the float graph);
2. the float graph on the chip's own simulator (separates the simulator's rules, e.g. Loihi's
   one-step synaptic delay and one spike per pixel, from the integers);
3. the quantized graph on the chip's own simulator (its integer arithmetic); the ``generic``
   target has no integers, so (3) repeats (1) and says so.

The goal is fold's (:mod:`asa_snn.workflows.fidelity_report`): at most 1 pp accuracy lost and at most
10 % NASFR change from (1) to (3); recordings without labels check prediction agreement instead
(at least 99 % of the samples predicted as in (1)). Everything (graph.json + tensors.safetensors,
and with calibration fidelity.md / fidelity.json) is written into a temporary folder beside
``out_dir`` and moved into place, so an error never leaves a half-written folder.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asa_snn.chips.base import Chip
from asa_snn.chips.registry import get_chip
from asa_snn.convert.graph import NEURON_KINDS, FoldedGraph
from asa_snn.convert.nir_import import GENERIC, ImportOptions, ImportResult, nir_to_graph, read_nir
from asa_snn.convert.quantize import quantize_graph
from asa_snn.errors import AsaSnnError
from asa_snn.workflows.fidelity_report import (
    ACCURACY_GOAL_PP,
    NASFR_GOAL,
    layer_spike_table,
    pct,
    relative,
    resolution_note,
    write_graph_folder,
)

DEFAULT_CALIB_SAMPLES = 64
BATCH = 16


@dataclass
class StageRun:
    """One measured stage on the calibration recordings.

    Attributes:
        stage: label, e.g. "1 NIR model, float".
        predictions: int64 [B] predicted class per recording.
        layer_spikes: spiking layer -> mean spikes per recording.
        notes: what the simulator said.
    """

    stage: str
    predictions: np.ndarray
    layer_spikes: dict[str, float]
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportOutcome:
    """Result of :func:`run_import`: the folder, the written graph, what the import decided, fidelity."""

    out_dir: Path
    graph: FoldedGraph
    result: ImportResult
    fidelity: dict[str, Any] | None = None

    @property
    def goal_met(self) -> bool | None:
        """True / False with calibration data (fold's goal, module docstring); None without."""
        return None if self.fidelity is None else bool(self.fidelity["goal"]["met"])


def _chip(target: str) -> Chip | None:
    return None if target == GENERIC else get_chip(target)


def import_nir_file(
    path: str | Path,
    target: str,
    dt_us: int | None = None,
    steps: int | None = None,
    sensor: tuple[int, int, int] | None = None,
    approximate: bool = False,
    multi_spike: bool = False,
) -> ImportResult:
    """The float folded graph of the NIR file ``path`` for ``target`` (arguments as :func:`run_import`).

    A file that already holds an asa-snn graph quantized for ``target`` keeps its integers (and its
    layers' quantization metadata, with the chip's bit widths).
    """
    chip = _chip(target)
    quantizer = chip.quantizer if chip is not None else None
    options = ImportOptions(
        target=target,
        neuron_kinds=chip.neuron_kinds if chip is not None else NEURON_KINDS,
        dt_us=dt_us,
        n_steps=steps,
        sensor=sensor,
        approximate=approximate,
        quant_bits=(quantizer.weight_bits, quantizer.state_bits) if quantizer is not None else None,
        multi_spike=multi_spike,
    )
    result = nir_to_graph(read_nir(path), options)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    result.graph.provenance = {
        "nir_file": str(path),
        "nir_sha256": digest,
        "options": {
            "target": target,
            "dt_us": result.dt_us,
            "dt_source": result.dt_source,
            "n_steps": result.graph.input.n_steps,
            "sensor": list(result.graph.input.sensor_size),
            "approximate": approximate,
            "multi_spike": multi_spike,
        },
        "notes": list(result.notes),
    }
    return result


def float_stage(graph: FoldedGraph, frames: np.ndarray, batch_size: int = BATCH) -> StageRun:
    """Stage (1): ``graph`` run in float by :class:`~asa_snn.convert.graph_model.GraphModel` on
    frames [B, T, C, H, W]."""
    import torch

    from asa_snn.convert.graph_model import GraphModel

    model = GraphModel(graph).eval()
    predictions, totals = [], {}
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            x = torch.as_tensor(frames[start : start + batch_size], dtype=torch.float32).transpose(0, 1)
            run = model.run(x)
            predictions.append(run.scores.argmax(1).numpy())
            for name, value in run.channel_spikes.items():
                totals[name] = totals.get(name, 0.0) + float(value.sum())
    samples = max(len(frames), 1)
    spikes = {name: value / samples for name, value in totals.items()}
    return StageRun("1 NIR model, float", np.concatenate(predictions), spikes)


def chip_stage(
    stage: str, chip: Chip, graph: FoldedGraph, frames: np.ndarray, batch_size: int = BATCH
) -> StageRun:
    """Stages (2) and (3): ``graph`` on the chip's own simulator (the first of its backends)."""
    simulator = chip.simulator()
    predictions, totals, notes = [], {}, []
    for start in range(0, len(frames), batch_size):
        result = simulator.run(graph, frames[start : start + batch_size])
        predictions.append(result.predictions(graph.vote))
        for name, counts in result.spike_counts.items():
            totals[name] = totals.get(name, 0.0) + float(counts.sum())
        notes = list(dict.fromkeys([*notes, *result.notes]))
    samples = max(len(frames), 1)
    spikes = {name: value / samples for name, value in totals.items()}
    return StageRun(f"{stage} ({simulator.name} simulator)", np.concatenate(predictions), spikes, notes)


def fidelity_document(
    graph: FoldedGraph, deployed: FoldedGraph, stages: list[StageRun], labels: np.ndarray, notes: list[str]
) -> dict[str, Any]:
    """fidelity.json: stages (accuracy where labelled, NASFR, agreement with (1)), the (1) -> last
    deltas, per-layer spikes, the goal, the quantization and the import notes."""
    neurons = {layer.name: int(np.prod(layer.output_shape)) for layer in graph.spiking_layers()}
    steps = graph.input.n_steps
    labelled = bool(len(labels)) and bool(np.all(labels >= 0))
    first, last = stages[0], stages[-1]

    def nasfr(stage: StageRun) -> float:
        total = sum(neurons.values()) * steps
        return sum(stage.layer_spikes.get(name, 0.0) for name in neurons) / max(total, 1)

    rows = [
        {
            "stage": stage.stage,
            "accuracy": float(np.mean(stage.predictions == labels)) if labelled else None,
            "agreement_with_1": float(np.mean(stage.predictions == first.predictions)),
            "nasfr": nasfr(stage),
            "samples": len(stage.predictions),
            "layer_spikes": stage.layer_spikes,
        }
        for stage in stages
    ]
    nasfr_change = relative(rows[-1]["nasfr"], rows[0]["nasfr"])
    if labelled:
        accuracy_pp = 100 * (rows[-1]["accuracy"] - rows[0]["accuracy"])
        accuracy_ok = accuracy_pp >= -ACCURACY_GOAL_PP
    else:
        accuracy_pp = None
        accuracy_ok = rows[-1]["agreement_with_1"] >= 1 - ACCURACY_GOAL_PP / 100
    # without spikes in (1) the NASFR goal holds only while the last stage stays silent too
    nasfr_ok = rows[-1]["nasfr"] == 0 if nasfr_change is None else abs(nasfr_change) <= NASFR_GOAL
    met = accuracy_ok and nasfr_ok
    layers = {
        name: {
            "neurons": count,
            **{stage.stage: stage.layer_spikes.get(name, 0.0) for stage in stages},
            "relative_change": relative(last.layer_spikes.get(name, 0.0), first.layer_spikes.get(name, 0.0)),
        }
        for name, count in neurons.items()
    }
    changes = {k: abs(v["relative_change"]) for k, v in layers.items() if v["relative_change"] is not None}
    return {
        "target": deployed.target,
        "nir_file": graph.provenance.get("nir_file"),
        "samples": len(labels),
        "labelled": labelled,
        "stages": rows,
        "delta_1_to_last": {
            "accuracy_pp": accuracy_pp,
            "nasfr_relative": nasfr_change,
            "agreement": rows[-1]["agreement_with_1"],
        },
        "goal": {
            "accuracy_loss_max_pp": ACCURACY_GOAL_PP,
            "nasfr_change_max": NASFR_GOAL,
            "checked_by": "accuracy" if labelled else "prediction agreement (no labels)",
            "met": bool(met),
            "one_recording_pp": 100.0 / len(labels),
            "largest_spike_change_layer": max(changes, key=changes.get) if changes else None,
        },
        "layers": layers,
        "quantization": {layer.name: asdict(layer.quant) for layer in deployed.layers if layer.quant},
        "notes": notes,
    }


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fidelity_markdown(doc: dict[str, Any]) -> str:
    """fidelity.md: the numbers of fidelity.json as tables."""
    lines = [
        f"# Import fidelity: target {doc['target']}",
        "",
        f"NIR file: {doc['nir_file']}; {doc['samples']} recordings"
        + ("" if doc["labelled"] else " without labels (agreement with (1) stands in for accuracy)"),
        "",
        "| stage | accuracy | agreement with (1) | NASFR |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s['stage']} | {_number(s['accuracy'])} | {s['agreement_with_1']:.4f} | {s['nasfr']:.4f} |"
        for s in doc["stages"]
    ]
    delta, goal = doc["delta_1_to_last"], doc["goal"]
    accuracy = "n/a" if delta["accuracy_pp"] is None else f"{delta['accuracy_pp']:+.2f} pp"
    lines += [
        "",
        f"(1) -> ({len(doc['stages'])}): accuracy {accuracy}, agreement {delta['agreement']:.4f}, NASFR "
        f"{pct(delta['nasfr_relative'])}; goal (<= {goal['accuracy_loss_max_pp']} pp lost, <= "
        f"{100 * goal['nasfr_change_max']:.0f} % NASFR change; by {goal['checked_by']}): "
        f"{'met' if goal['met'] else 'NOT met'}",
    ]
    lines += resolution_note(goal, doc["samples"])
    if not goal["met"] and goal["largest_spike_change_layer"]:
        lines.append(f"Largest spike-count change: layer {goal['largest_spike_change_layer']}.")
    stages = [s["stage"] for s in doc["stages"]]
    lines += layer_spike_table(
        "Spikes per recording, per layer", doc["layers"], stages, "relative_change", "change"
    )
    if doc["quantization"]:
        lines += [
            "",
            "## Quantization",
            "",
            "| layer | scale | weight bits | state bits |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {q['scale']:.6g} | {q['weight_bits']} | {q['state_bits']} |"
            for name, q in doc["quantization"].items()
        ]
    if doc["notes"]:
        lines += ["", "## Notes", "", *[f"- {note}" for note in doc["notes"]]]
    return "\n".join(lines) + "\n"


def measure_fidelity(
    graph: FoldedGraph, deployed: FoldedGraph, chip: Chip | None, calib: str, n_calib: int, notes: list[str]
) -> dict[str, Any]:
    """Stages (1)-(3) (module docstring) on ``n_calib`` recordings of ``calib`` (an event file, a
    folder of event files, or ``builtin:synthetic[:N]``)."""
    from asa_snn.simulators.inputs import load_input

    data = load_input(graph, calib, n_calib)
    if not len(data.frames):
        raise AsaSnnError(f"calibration data {calib!r} holds no recordings")
    stages = [float_stage(graph, data.frames)]
    extra = []
    if chip is None:
        extra.append("generic target: no integer form; the last stage repeats the float graph (1)")
        stages.append(StageRun("3 generic, float graph", stages[0].predictions, stages[0].layer_spikes))
    else:
        stages.append(chip_stage("2 float graph", chip, graph, data.frames))
        if deployed is not graph:
            stages.append(chip_stage("3 quantized graph", chip, deployed, data.frames))
            extra.append(
                f"quantized by {chip.name}'s rule (one scale per layer from its weights, bias and "
                "threshold); the recordings only measure fidelity"
            )
        else:
            extra.append(f"{chip.name} runs this graph without integers (no quantizer or already quantized)")
    simulator_notes = [note for stage in stages for note in stage.notes]
    return fidelity_document(
        graph, deployed, stages, data.labels, [*notes, *extra, *dict.fromkeys(simulator_notes)]
    )


def run_import(
    path: str | Path,
    target: str,
    out_dir: str | Path,
    calib: str | None = None,
    n_calib: int = DEFAULT_CALIB_SAMPLES,
    dt_us: int | None = None,
    steps: int | None = None,
    sensor: tuple[int, int, int] | None = None,
    approximate: bool = False,
    multi_spike: bool = False,
) -> ImportOutcome:
    """``asa-snn import MODEL.nir --target T [--calib DATA] --out DIR`` (module docstring).

    Args:
        path: the NIR file.
        target: a chip (``speck``, ``loihi``) or ``generic``.
        out_dir: output folder (replaced atomically).
        calib: recordings to quantize with and measure on (event file, folder, ``builtin:synthetic[:N]``);
            None: the float graph is written, unquantized, without fidelity files.
        n_calib: recordings used from ``calib``.
        dt_us: microseconds per step; None: the file's ``dt`` metadata, else 1000.
        steps: steps per inference; None: the file's ``n_steps`` metadata, else 16.
        sensor: (W, H, P); None: the input's (W, H, C).
        approximate: accept conversions that change the dynamics (each named in the notes).
        multi_spike: IF neurons emit floor(v / theta) spikes per step, as sinabs' default IAF does.

    Raises:
        AsaSnnError: an unreadable file, a node or structure the target cannot hold (named), a
            change of dynamics without ``approximate``, a value the target's integers cannot hold;
            nothing is written then.
    """
    if n_calib < 1:
        raise AsaSnnError(f"--n-calib must be >= 1, got {n_calib}")
    result = import_nir_file(path, target, dt_us, steps, sensor, approximate, multi_spike)
    graph, chip, doc = result.graph, _chip(target), None
    deployed = graph
    if calib is not None:
        quantizer = chip.quantizer if chip is not None else None
        if quantizer is not None and not graph.quantized:
            deployed = quantize_graph(graph, quantizer)
            deployed.provenance = {**graph.provenance, "calibration": {"data": calib, "samples": n_calib}}
        doc = measure_fidelity(graph, deployed, chip, calib, n_calib, result.notes)
    return ImportOutcome(write_graph_folder(out_dir, deployed, doc, fidelity_markdown), deployed, result, doc)
