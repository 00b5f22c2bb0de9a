"""The fold's fidelity report: fidelity.json and fidelity.md from the measured stages.

The goal: at most :data:`ACCURACY_GOAL_PP` percentage points of accuracy lost and at most
:data:`NASFR_GOAL` relative NASFR change from (1) the live-attention model to (3) the deployed
integer simulation; the report gives the per-step deltas and the per-layer spike changes that
show where a loss comes from.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asa_snn.convert.chip_dynamics import DYNAMICS, drain_steps
from asa_snn.convert.graph import FoldedGraph, save_graph
from asa_snn.convert.measure import StageMetrics
from asa_snn.files import staged_folder
from asa_snn.workflows.fold_steps import FoldRun

ACCURACY_GOAL_PP = 1.0
NASFR_GOAL = 0.10


def relative(new: float, old: float) -> float | None:
    """(new - old) / old, or None when old is 0."""
    return None if old == 0 else (new - old) / old


def input_difference(
    target: str, frames: np.ndarray, max_count: int | None = None, drain: int = 0
) -> dict[str, Any]:
    """How the chip's input differs from the training input on ``frames`` [B, T, C, H, W] (event counts):
    events in the frames, events the chip's first layer receives (Loihi: one spike per pixel and
    step, counts above one clipped), how many were dropped, and ``drain``, the steps without input
    the chip runs after each recording (:func:`~asa_snn.convert.chip_dynamics.drain_steps`).
    ``max_count``: the input spec's per-pixel count limit the frames were built with (training's
    too), named in the description."""
    events = float(frames.sum())
    dynamics = DYNAMICS.get(target)
    received = events if dynamics is None else float(dynamics.input(torch.from_numpy(frames)).sum())
    dropped = events - received
    if dropped > 0:
        how = "event counts above 1 per pixel and step are clipped to one spike (unary input)"
    elif max_count is not None:
        how = (
            f"the model was trained on at most {max_count} event(s) per pixel and step (input.max_count), "
            "which the chip takes as they are"
        )
    else:
        how = "the chip takes the event counts the model was trained on"
    if drain:
        how += (
            f"; after the {frames.shape[1]} frames of a recording the chip runs {drain} steps without "
            "input (one per synaptic delay), so that the last frame reaches the output"
        )
    return {
        "events": events,
        "received": received,
        "dropped": dropped,
        "dropped_fraction": dropped / events if events else 0.0,
        "max_count": max_count,
        "drain_steps": drain,
        "description": how,
    }


def fidelity_document(run: FoldRun, final: StageMetrics, notes: list[str]) -> dict[str, Any]:
    """fidelity.json: stages, per-step and (1)->(3) deltas, per-layer spikes, goal, fold report."""
    chain = [*run.stages[:3], final]
    steps = [
        {
            "from": a.stage,
            "to": b.stage,
            "accuracy_pp": 100 * (b.accuracy - a.accuracy),
            "nasfr_relative": relative(b.nasfr, a.nasfr),
        }
        for a, b in itertools.pairwise(chain)
    ]
    live, graph = run.stages[0], run.deployed
    layers = {
        name: {
            "neurons": run.neurons.get(name),
            **{stage.stage: stage.layer_spikes.get(name, 0.0) for stage in chain},
            "relative_change_1_to_3": relative(final.layer_spikes.get(name, 0.0), live.layer_spikes[name]),
        }
        for name in live.layer_spikes
    }
    accuracy_pp = 100 * (final.accuracy - live.accuracy)
    nasfr_change = relative(final.nasfr, live.nasfr)
    met = accuracy_pp >= -ACCURACY_GOAL_PP and nasfr_change is not None and abs(nasfr_change) <= NASFR_GOAL
    worst_step = min(steps, key=lambda s: s["accuracy_pp"])
    changes = {
        k: v["relative_change_1_to_3"] for k, v in layers.items() if v["relative_change_1_to_3"] is not None
    }
    worst_layer = max(changes, key=lambda k: abs(changes[k])) if changes else None
    return {
        "target": run.deployed.target,
        "validation_samples": run.splits.get("selection_samples", live.samples),
        "test_samples": live.samples,
        "splits": run.splits,
        "tuning": run.provenance.get("options", {}),
        "input": input_difference(
            graph.target,
            run.test_frames,
            graph.input.max_count,
            drain_steps(DYNAMICS[graph.target], graph) if graph.target in DYNAMICS else 0,
        ),
        "stages": [asdict(s) for s in [*chain, *run.stages[3:]]],
        "steps": steps,
        "delta_1_to_3": {"accuracy_pp": accuracy_pp, "nasfr_relative": nasfr_change},
        "goal": {
            "accuracy_loss_max_pp": ACCURACY_GOAL_PP,
            "nasfr_change_max": NASFR_GOAL,
            "met": bool(met),
            "one_recording_pp": 100.0 / live.samples,
            "largest_accuracy_drop_step": worst_step,
            "largest_spike_change_layer": worst_layer,
        },
        "layers": layers,
        "quantization": {
            layer.name: asdict(layer.quant) for layer in run.deployed.layers if layer.quant is not None
        },
        "fold": run.report.to_dict(),
        "finetune_history": run.finetune_history,
        "notes": [*run.report.notes, *notes],
    }


def coarse_split_pp(goal: dict[str, Any]) -> float | None:
    """The accuracy points one test recording is worth (``goal["one_recording_pp"]``) where that is
    more than the goal allows to lose (``goal["accuracy_loss_max_pp"]``); None where the split
    resolves the goal."""
    one = goal["one_recording_pp"]
    return one if one > goal["accuracy_loss_max_pp"] else None


def resolution_note(goal: dict[str, Any], samples: int) -> list[str]:
    """A line saying so where one recording of the report's split is worth more accuracy points
    than the goal allows to lose (then the verdict only tells whether any recording was lost, net);
    no line otherwise (documents without ``one_recording_pp``: from ``samples``)."""
    one = coarse_split_pp({"one_recording_pp": 100.0 / samples, **goal})
    limit = goal["accuracy_loss_max_pp"]
    if one is None:
        return []
    return [
        f"On {samples} recordings one recording is {one:.2f} pp, more than the {limit} pp the goal "
        f"allows: the verdict only tells whether any recording was lost, net; at least "
        f"{math.ceil(100 / limit)} recordings resolve the goal."
    ]


def pct(value: float | None) -> str:
    """A relative change as a signed percentage, ``n/a`` for None."""
    return "n/a" if value is None else f"{100 * value:+.1f} %"


def layer_spike_table(
    title: str, layers: dict[str, dict[str, Any]], stages: list[str], change_key: str, change_label: str
) -> list[str]:
    """Markdown lines of a per-layer spike table: one row per layer (name -> row with ``neurons``,
    spikes per sample under each stage name, and the relative change under ``change_key``)."""
    lines = ["", f"## {title}", "", "| layer | neurons | " + " | ".join(stages) + f" | {change_label} |"]
    lines.append("|---" * (len(stages) + 3) + "|")
    for name, row in layers.items():
        cells = " | ".join(f"{row[s]:.1f}" for s in stages)
        lines.append(f"| {name} | {row['neurons']} | {cells} | {pct(row[change_key])} |")
    return lines


def tuning_line(options: dict[str, Any]) -> str:
    """One sentence on how the fold was fine-tuned (epochs, dynamics, loss weights)."""
    tune = options.get("tune")
    epochs = options.get("finetune_epochs", 0)
    if not tune or not epochs:
        return f"Fine-tuning: {epochs} epochs (static fold)."
    dynamics = "the chip's own dynamics and integers" if tune["chip_dynamics"] else "float neurons"
    return (
        f"Fine-tuning: {epochs} epochs with {dynamics}; loss = {tune['label_weight']:g} x label + "
        f"{tune['teacher_weight']:g} x live-model rates + {tune['layer_weight']:g} x per-layer spikes "
        f"(distilled on every training recording); {_rate(tune)}device {tune['device']}."
    )


def _rate(tune: dict[str, Any]) -> str:
    """ "Adam at rate R; " where the document records the rate (earlier versions did not)."""
    return f"Adam at rate {tune['lr']:g}; " if tune.get("lr") is not None else ""


def _selected_by(splits: dict[str, Any]) -> str:
    """What chose the fine-tuned epoch, in words (documents of earlier versions: accuracy)."""
    chosen = splits.get("selected_by", "validation accuracy")
    return chosen.removeprefix("validation ").removesuffix(" on the validation split")


def fidelity_markdown(doc: dict[str, Any]) -> str:
    """fidelity.md: the same numbers as fidelity.json, as tables."""
    splits, chip_input = doc["splits"], doc["input"]
    lines = [
        f"# Fold fidelity: target {doc['target']}",
        "",
        f"Stages measured on the {splits.get('report', 'test')} split ({doc['test_samples']} samples), "
        f"which chose nothing; the fine-tuned epoch ({splits.get('best_epoch', 0)}; 0 = static fold) "
        f"was selected on the {splits.get('selection', 'validation')} split "
        f"({doc['validation_samples']} samples) by {_selected_by(splits)}.",
        "",
        f"Deployed input vs training input: {chip_input['description']}; the chip received "
        f"{chip_input['received']:.0f} of {chip_input['events']:.0f} input events on the test split "
        f"({chip_input['dropped']:.0f} dropped, {100 * chip_input['dropped_fraction']:.1f} %).",
        "",
        tuning_line(doc.get("tuning", {})),
        "",
    ]
    lines += ["| stage | accuracy | NASFR | epochs |", "|---|---|---|---|"]
    lines += [
        f"| {s['stage']} | {s['accuracy']:.4f} | {s['nasfr']:.4f} | {s['epochs']} |" for s in doc["stages"]
    ]
    lines += ["", "## Per-step deltas", "", "| step | accuracy (pp) | NASFR |", "|---|---|---|"]
    lines += [
        f"| {s['from']} -> {s['to']} | {s['accuracy_pp']:+.2f} | {pct(s['nasfr_relative'])} |"
        for s in doc["steps"]
    ]
    delta, goal = doc["delta_1_to_3"], doc["goal"]
    lines += [
        "",
        f"(1) -> (3): accuracy {delta['accuracy_pp']:+.2f} pp, NASFR {pct(delta['nasfr_relative'])}; goal "
        f"(<= {goal['accuracy_loss_max_pp']} pp lost, "
        f"<= {100 * goal['nasfr_change_max']:.0f} % NASFR change): "
        f"{'met' if goal['met'] else 'NOT met'}",
    ]
    lines += resolution_note(goal, doc["test_samples"])
    if not goal["met"]:
        step = goal["largest_accuracy_drop_step"]
        lines.append(
            f"Largest accuracy drop: {step['from']} -> {step['to']} ({step['accuracy_pp']:+.2f} pp); largest "
            f"spike-count change: layer {goal['largest_spike_change_layer']}."
        )
    stages = [s["stage"] for s in doc["stages"][:4]]
    lines += layer_spike_table(
        "Spikes per sample, per layer", doc["layers"], stages, "relative_change_1_to_3", "(1)->(3)"
    )
    lines += [
        "",
        "## Attention fold",
        "",
        "| layer | attention | kept (channel) | kept (map) | gain min/mean/max | pruned |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for f in doc["fold"]["layers"]:
        kept = "-" if f["kept_fraction"] is None else f"{f['kept_fraction']:.3f}"
        kept_map = "-" if f["kept_fraction_map"] is None else f"{f['kept_fraction_map']:.3f}"
        gains = f"{f['gain_min']:.3f}/{f['gain_mean']:.3f}/{f['gain_max']:.3f}"
        lines.append(
            f"| {f['layer']} | {f['attention']} | {kept} | {kept_map} | {gains} | {len(f['pruned'])} |"
        )
    if doc["notes"]:
        lines += ["", "## Notes", "", *[f"- {note}" for note in doc["notes"]]]
    return "\n".join(lines) + "\n"


def write_graph_folder(
    out_dir: str | Path,
    graph: FoldedGraph,
    doc: dict[str, Any] | None = None,
    markdown: Callable[[dict[str, Any]], str] = fidelity_markdown,
) -> Path:
    """Write ``graph`` (and, with ``doc``, fidelity.json and ``markdown(doc)`` as fidelity.md) into a
    temporary folder beside ``out_dir``, then move it into place: ``out_dir`` is either the old
    complete folder or the new one (:func:`asa_snn.files.staged_folder`)."""
    out_dir = Path(out_dir)
    with staged_folder(out_dir) as staging:
        save_graph(graph, staging)
        if doc is not None:
            (staging / "fidelity.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
            (staging / "fidelity.md").write_text(markdown(doc))
    return out_dir
