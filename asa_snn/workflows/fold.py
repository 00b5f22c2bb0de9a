"""``asa-snn fold``: fold, fine-tune and quantize a checkpoint, simulate the integers, report fidelity.

:func:`run_fold` is the one entry point. It measures, on the SAME validation data:

1. the float model with live attention;
2. the folded float model before (2a, static fold) and after (2b) fold-aware fine-tuning;
3. the quantized model simulated with integer arithmetic: :class:`SpeckSimulator` (time-stepped,
   int16 saturating state) for ``speck``, :class:`LoihiSimulator` (bit-accurate CUBA with one step
   of delay per layer and unary input spikes) for ``loihi``; the ``generic`` target has no
   integer form, so (3) is the fine-tuned float graph run again (stated in the report);

and writes the deployed graph (graph.json + tensors.safetensors) with ``fidelity.md`` and
``fidelity.json`` into ``out_dir``. Everything is written into a temporary folder beside ``out_dir``
first and then moved into place, so an error never leaves a half-written folder. The goal: at most
1 percentage point of accuracy lost and at most 10 % NASFR change from (1) to (3); the report
gives the per-step deltas and the per-layer spike changes that show where a loss comes from.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from asa_snn.convert.graph import FoldedGraph, save_graph
from asa_snn.convert.measure import FoldRun, StageMetrics, fold_checkpoint, nasfr_of
from asa_snn.files import staged_folder
from asa_snn.chips.loihi.simulator import LoihiSimulator
from asa_snn.chips.speck.simulator import SpeckSimulator

ACCURACY_GOAL_PP = 1.0
NASFR_GOAL = 0.10
SIMULATORS = {"speck": SpeckSimulator, "loihi": LoihiSimulator}


@dataclass
class FoldOutcome:
    """Result of :func:`run_fold`: the output folder, the deployed graph and the fidelity document."""

    out_dir: Path
    graph: FoldedGraph
    fidelity: dict[str, Any]

    @property
    def goal_met(self) -> bool:
        """True when (1) -> (3) lost <= 1 pp accuracy and changed NASFR by <= 10 %."""
        return bool(self.fidelity["goal"]["met"])


def simulate_stage(run: FoldRun, batch_size: int = 32) -> tuple[StageMetrics, list[str]]:
    """Stage (3): the deployed graph on the validation frames with integer arithmetic (module docstring)."""
    graph = run.deployed
    if graph.target not in SIMULATORS:
        spikes = run.stages[2].layer_spikes
        metrics = StageMetrics(
            "3 deployed (generic: float graph)",
            run.stages[2].accuracy,
            run.stages[2].nasfr,
            run.stages[2].samples,
            dict(spikes),
            run.stages[2].epochs,
        )
        return metrics, ["generic target: no integer form; stage 3 repeats the fine-tuned float graph"]
    simulator = SIMULATORS[graph.target]()
    correct, totals, notes = 0, {}, []
    for start in range(0, len(run.val_frames), batch_size):
        frames = run.val_frames[start : start + batch_size]
        result = simulator.run(graph, frames)
        correct += int((result.predictions(graph.vote) == run.val_labels[start : start + batch_size]).sum())
        for name, counts in result.spike_counts.items():
            totals[name] = totals.get(name, 0.0) + float(counts.sum())
        notes = sorted(set(notes) | set(result.notes))
    samples = len(run.val_frames)
    per_sample = {name: value / samples for name, value in totals.items()}
    metrics = StageMetrics(
        f"3 quantized, {simulator.name} integer simulation",
        correct / max(samples, 1),
        nasfr_of(per_sample, run.neurons, run.steps),
        samples,
        per_sample,
        run.stages[2].epochs,
    )
    return metrics, notes


def _relative(new: float, old: float) -> float | None:
    return None if old == 0 else (new - old) / old


def fidelity_document(run: FoldRun, final: StageMetrics, notes: list[str]) -> dict[str, Any]:
    """fidelity.json: stages, per-step and (1)->(3) deltas, per-layer spikes, goal, fold report."""
    chain = [*run.stages[:3], final]
    steps = [
        {
            "from": a.stage,
            "to": b.stage,
            "accuracy_pp": 100 * (b.accuracy - a.accuracy),
            "nasfr_relative": _relative(b.nasfr, a.nasfr),
        }
        for a, b in itertools.pairwise(chain)
    ]
    live = run.stages[0]
    layers = {
        name: {
            "neurons": run.neurons.get(name),
            **{stage.stage: stage.layer_spikes.get(name, 0.0) for stage in chain},
            "relative_change_1_to_3": _relative(final.layer_spikes.get(name, 0.0), live.layer_spikes[name]),
        }
        for name in live.layer_spikes
    }
    accuracy_pp = 100 * (final.accuracy - live.accuracy)
    nasfr_change = _relative(final.nasfr, live.nasfr)
    met = accuracy_pp >= -ACCURACY_GOAL_PP and nasfr_change is not None and abs(nasfr_change) <= NASFR_GOAL
    worst_step = min(steps, key=lambda s: s["accuracy_pp"])
    changes = {
        k: v["relative_change_1_to_3"] for k, v in layers.items() if v["relative_change_1_to_3"] is not None
    }
    worst_layer = max(changes, key=lambda k: abs(changes[k])) if changes else None
    return {
        "target": run.deployed.target,
        "validation_samples": live.samples,
        "stages": [asdict(s) for s in [*chain, *run.stages[3:]]],
        "steps": steps,
        "delta_1_to_3": {"accuracy_pp": accuracy_pp, "nasfr_relative": nasfr_change},
        "goal": {
            "accuracy_loss_max_pp": ACCURACY_GOAL_PP,
            "nasfr_change_max": NASFR_GOAL,
            "met": bool(met),
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} %"


def fidelity_markdown(doc: dict[str, Any]) -> str:
    """fidelity.md: the same numbers as fidelity.json, as tables."""
    lines = [
        f"# Fold fidelity: target {doc['target']}",
        "",
        f"Validation samples: {doc['validation_samples']}",
        "",
    ]
    lines += ["| stage | accuracy | NASFR | epochs |", "|---|---|---|---|"]
    lines += [
        f"| {s['stage']} | {s['accuracy']:.4f} | {s['nasfr']:.4f} | {s['epochs']} |" for s in doc["stages"]
    ]
    lines += ["", "## Per-step deltas", "", "| step | accuracy (pp) | NASFR |", "|---|---|---|"]
    lines += [
        f"| {s['from']} -> {s['to']} | {s['accuracy_pp']:+.2f} | {_pct(s['nasfr_relative'])} |"
        for s in doc["steps"]
    ]
    delta, goal = doc["delta_1_to_3"], doc["goal"]
    lines += [
        "",
        f"(1) -> (3): accuracy {delta['accuracy_pp']:+.2f} pp, NASFR {_pct(delta['nasfr_relative'])}; goal "
        f"(<= {goal['accuracy_loss_max_pp']} pp lost, "
        f"<= {100 * goal['nasfr_change_max']:.0f} % NASFR change): "
        f"{'met' if goal['met'] else 'NOT met'}",
    ]
    if not goal["met"]:
        step = goal["largest_accuracy_drop_step"]
        lines.append(
            f"Largest accuracy drop: {step['from']} -> {step['to']} ({step['accuracy_pp']:+.2f} pp); largest "
            f"spike-count change: layer {goal['largest_spike_change_layer']}."
        )
    stages = [s["stage"] for s in doc["stages"][:4]]
    lines += [
        "",
        "## Spikes per sample, per layer",
        "",
        "| layer | neurons | " + " | ".join(stages) + " | (1)->(3) |",
    ]
    lines.append("|---" * (len(stages) + 3) + "|")
    for name, row in doc["layers"].items():
        cells = " | ".join(f"{row[s]:.1f}" for s in stages)
        lines.append(f"| {name} | {row['neurons']} | {cells} | {_pct(row['relative_change_1_to_3'])} |")
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


def write_outputs(out_dir: str | Path, graph: FoldedGraph, doc: dict[str, Any]) -> Path:
    """Write graph + fidelity.md + fidelity.json into a temporary folder beside ``out_dir``, then move it
    into place (an existing ``out_dir`` is replaced only once everything is written)."""
    out_dir = Path(out_dir)
    with staged_folder(out_dir) as staging:
        save_graph(graph, staging)
        (staging / "fidelity.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
        (staging / "fidelity.md").write_text(fidelity_markdown(doc))
    return out_dir


def run_fold(
    checkpoint: str | Path,
    target: str,
    out_dir: str | Path,
    calib: str | Path | None = None,
    finetune_epochs: int = 3,
    n_calib: int = 64,
    approximate: bool = False,
    vanilla: str | Path | None = None,
) -> FoldOutcome:
    """``asa-snn fold CHECKPOINT --target T --calib DATA --finetune EPOCHS --out DIR`` (module docstring).

    Args:
        checkpoint: training checkpoint file.
        target: ``speck``, ``loihi`` or ``generic``.
        out_dir: output folder (replaced atomically).
        calib: training config naming the data; None: the checkpoint's own config.
        finetune_epochs: fold-aware fine-tuning epochs (0: static fold only).
        n_calib: calibration samples.
        approximate: allow LIF -> IAF for Speck.
        vanilla: optional vanilla checkpoint measured for comparison (its epochs are reported).

    Raises:
        AsaSnnError: no calibration data, a network or value the target cannot hold (layer named);
            nothing is written then.
    """
    run = fold_checkpoint(checkpoint, target, calib, finetune_epochs, n_calib, approximate, vanilla=vanilla)
    final, notes = simulate_stage(run)
    doc = fidelity_document(run, final, notes)
    return FoldOutcome(write_outputs(out_dir, run.deployed, doc), run.deployed, doc)


__all__ = [
    "FoldOutcome",
    "fidelity_document",
    "fidelity_markdown",
    "run_fold",
    "simulate_stage",
    "write_outputs",
]
