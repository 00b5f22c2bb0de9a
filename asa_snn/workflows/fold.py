"""``asa-snn fold``: fold, fine-tune and quantize a checkpoint, simulate the integers, report fidelity.

:func:`run_fold` is the one entry point. Fine-tuning selects its epoch on the validation split;
every stage is then measured on the test split, which chose nothing:

1. the float model with live attention;
2. the folded float model before (2a, static fold) and after (2b) fold-aware fine-tuning;
3. the quantized model simulated with integer arithmetic by the chip's own bit-accurate
   simulator (the first of :attr:`asa_snn.chips.base.Chip.backends`); the ``generic`` target
   has no integer form, so (3) is the fine-tuned float graph run again (stated in the report);

and writes the deployed graph (graph.json + tensors.safetensors) with ``fidelity.md`` and
``fidelity.json`` into ``out_dir``. Everything is written into a temporary folder beside ``out_dir``
first and then moved into place, so an error never leaves a half-written folder. The goal: at most
1 percentage point of accuracy lost and at most 10 % NASFR change from (1) to (3); the report
gives the per-step deltas and the per-layer spike changes that show where a loss comes from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from asa_snn.chips.registry import get_chip
from asa_snn.convert.attention_fold import RateMatch
from asa_snn.convert.fold import GENERIC_TARGET
from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.measure import StageMetrics, measure_graph, measure_live, nasfr_of
from asa_snn.convert.quantize import quantize_graph
from asa_snn.devices import resolve_device
from asa_snn.train.run import load_run
from asa_snn.workflows.fidelity_report import fidelity_document, write_graph_folder
from asa_snn.workflows.fold_steps import (
    FoldRun,
    TuneOptions,
    calibration_batches,
    finetune_lr,
    provenance_of,
    quantizer_of,
    stack,
    static_fold,
    tune,
    vanilla_stage,
)


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


def fold_checkpoint(
    checkpoint: str | Path,
    target: str,
    calib: str | Path | None = None,
    finetune_epochs: int = 10,
    n_calib: int = 64,
    approximate: bool = False,
    vanilla: str | Path | None = None,
    batch_size: int = 16,
    rate_match: RateMatch | None = RateMatch(),  # noqa: B008 (frozen dataclass)
    tune_options: TuneOptions = TuneOptions(),  # noqa: B008 (frozen dataclass)
    test_samples: int | None = None,
) -> FoldRun:
    """Fold a checkpoint for ``target``, fine-tune (epoch chosen on the validation split) and measure
    stages (1), (2a), (2b) on the test split (arguments as :func:`run_fold`; ``rate_match`` None
    keeps the least-squares gains)."""
    device = resolve_device(tune_options.device, "fold --device")
    run = load_run(checkpoint, calib, test_samples)
    calibration = calibration_batches(run.data.train, n_calib, batch_size)
    options = {
        "finetune_epochs": finetune_epochs,
        "approximate": approximate,
        "rate_match": bool(rate_match),
        "tune": {**asdict(tune_options), "lr": finetune_lr(tune_options, run.config.optim.lr)},
    }
    samples = sum(int(batch.shape[1]) for batch in calibration)
    provenance = provenance_of(run, target, calib, samples, options)
    static, report = static_fold(run, target, calibration, approximate, provenance, rate_match, device)
    layers = [fold.layer for fold in report.layers]
    loader = DataLoader(run.data.test, batch_size=batch_size, shuffle=False)
    live, neurons = measure_live("1 live attention", run.model, layers, loader, run.epochs)
    stages = [live, measure_graph("2a static fold (float)", static, loader, neurons, epochs=run.epochs)]
    tuned = tune(run, static, target, finetune_epochs, batch_size, tune_options, layers)
    epochs = run.epochs + finetune_epochs
    label = "2b fine-tuned fold (float neurons" + (", tuned with chip dynamics)" if tuned.chip else ")")
    stages.append(measure_graph(label, tuned.graph, loader, neurons, epochs=epochs))
    quantizer = quantizer_of(target)
    deployed = tuned.graph if quantizer is None else quantize_graph(tuned.graph, quantizer)
    if vanilla is not None:
        stages.append(vanilla_stage(vanilla, layers, loader))
    frames, labels = stack(run.data.test)
    steps = run.config.data.n_steps
    splits = {
        "selection": "validation",
        "selection_samples": len(run.data.val),
        "report": "test",
        "report_samples": len(run.data.test),
        "training_samples": len(run.data.train),
        "best_epoch": tuned.best_epoch,
        "selected_by": tuned.selected_by,
    }
    return FoldRun(
        static,
        tuned.graph,
        deployed,
        report,
        stages,
        neurons,
        frames,
        labels,
        steps,
        tuned.history,
        provenance,
        splits,
    )


def simulate_stage(run: FoldRun, batch_size: int = 32) -> tuple[StageMetrics, list[str]]:
    """Stage (3): the deployed graph on the test frames in the chip's own simulator (integer
    arithmetic where the chip has a quantizer; module docstring)."""
    graph = run.deployed
    if graph.target == GENERIC_TARGET.name:
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
    simulator = get_chip(graph.target).simulator()
    correct, totals, notes = 0, {}, []
    for start in range(0, len(run.test_frames), batch_size):
        frames = run.test_frames[start : start + batch_size]
        result = simulator.run(graph, frames)
        correct += int((result.predictions(graph.vote) == run.test_labels[start : start + batch_size]).sum())
        for name, counts in result.spike_counts.items():
            totals[name] = totals.get(name, 0.0) + float(counts.sum())
        notes = sorted(set(notes) | set(result.notes))
    samples = len(run.test_frames)
    per_sample = {name: value / samples for name, value in totals.items()}
    metrics = StageMetrics(
        f"3 quantized, {simulator.name} integer simulation"
        if graph.quantized
        else f"3 {simulator.name} simulation",
        correct / max(samples, 1),
        nasfr_of(per_sample, run.neurons, run.steps),
        samples,
        per_sample,
        run.stages[2].epochs,
    )
    return metrics, notes


def run_fold(
    checkpoint: str | Path,
    target: str,
    out_dir: str | Path,
    calib: str | Path | None = None,
    finetune_epochs: int = 10,
    n_calib: int = 64,
    approximate: bool = False,
    vanilla: str | Path | None = None,
    tune_options: TuneOptions = TuneOptions(),  # noqa: B008 (frozen dataclass)
    test_samples: int | None = None,
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
        tune_options: how fine-tuning runs (chip dynamics, distillation weights, device).
        test_samples: synthetic data only: report on a test split of this many recordings
            (:func:`~asa_snn.train.run.with_test_samples`); None: the config's own.

    Raises:
        AsaSnnError: no calibration data, a network or value the target cannot hold (layer named);
            nothing is written then.
    """
    run = fold_checkpoint(
        checkpoint,
        target,
        calib,
        finetune_epochs,
        n_calib,
        approximate,
        vanilla=vanilla,
        tune_options=tune_options,
        test_samples=test_samples,
    )
    final, notes = simulate_stage(run)
    doc = fidelity_document(run, final, notes)
    return FoldOutcome(write_graph_folder(out_dir, run.deployed, doc), run.deployed, doc)
