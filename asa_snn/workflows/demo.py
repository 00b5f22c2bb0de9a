"""``asa-snn demo``: the whole job in one call, written into one report folder.

:func:`run_pipeline` trains a vanilla and an ASA-2 model of the recipe's chip-fitting network
(speck_net) and an ASA-2 loihi_net, analyses vanilla against ASA, folds and quantizes for Speck
(from the ASA speck_net) and for Loihi (from the ASA loihi_net), exports every format, simulates
on every available backend, checks the chip mapping and the shipped example spike budget, and
writes ``report.html``, ``report.md`` and ``pipeline.json`` (see :mod:`asa_snn.workflows.html_report`).

Training and the redundancy analysis are passed in as callables (``train_fn``, ``analyze_fn``), so
this stage reads only folded graphs and plain numbers. Everything is built in a temporary folder
beside ``out_dir`` and moved into place at the end: an error never leaves a half-written report.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from asa_snn.chips.base import Exporter
from asa_snn.chips.registry import get_chip
from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.nir_export import write_nir
from asa_snn.convert.onnx_export import to_onnx
from asa_snn.errors import AsaSnnError, MissingDependencyError
from asa_snn.files import staged_folder, write_json
from asa_snn.simulators.base import SimulationResult
from asa_snn.simulators.inputs import recording_files
from asa_snn.train.config import load_config, resolve_config_path
from asa_snn.train.run import SYNTHETIC_KIND
from asa_snn.workflows.budget import BudgetReport, evaluate_budget, load_budget, write_budget_report
from asa_snn.workflows.fidelity_report import coarse_split_pp
from asa_snn.workflows.fold import FoldOutcome, run_fold
from asa_snn.workflows.fold_steps import TuneOptions
from asa_snn.workflows.html_report import write_report
from asa_snn.workflows.simulate import simulate

EXAMPLE_BUDGET = Path(__file__).parent / "examples" / "speck_budget.toml"
"""The shipped example spike budget the pipeline checks the Speck graph against."""

TrainFn = Callable[[str, list[str], Path], dict[str, Any]]
"""``train_fn(config, overrides, out_dir) -> {"test_accuracy", "test_nasfr", "checkpoint"}``:
train the recipe ``config`` (a shipped name or a file) with ``section.key=value`` overrides into
``out_dir``; ``checkpoint`` is the path of the best checkpoint (.safetensors)."""

AnalyzeFn = Callable[[Path, Path, Path], dict[str, Any]]
"""``analyze_fn(vanilla_checkpoint, asa_checkpoint, out_dir) -> metrics``: the redundancy analysis
(:func:`asa_snn.analysis.report.analyze` with ``compare_model``) written into ``out_dir``; the first
key of ``metrics["models"]`` is the vanilla model, the second the ASA model."""

GENERIC_EXPORTS: dict[str, Exporter] = {
    "nir": lambda graph, folder: write_nir(graph, folder / "network.nir").name,
    "onnx": lambda graph, folder: to_onnx(graph, folder / "network.onnx").name,
}
"""Exports every graph gets beside its chip's own (:attr:`asa_snn.chips.base.Chip.exports`)."""

SLOW_BACKENDS = {"speck-events": 1}
"""Backends run on fewer samples (event-driven Speck runs event by event): name -> samples."""


class Progress(Protocol):
    """Receives one line per pipeline step: ``progress(step, total, message)`` (steps count from 1)."""

    def __call__(self, step: int, total: int, message: str) -> None: ...


def _silent(step: int, total: int, message: str) -> None:
    """A :class:`Progress` that reports nothing."""


@dataclass
class Settings:
    """Sizes of one pipeline run.

    Attributes:
        epochs: training epochs per model.
        finetune_epochs: fold-aware fine-tuning epochs per target (chip dynamics, distilled from
            the live attention; experiments/fold_fidelity.py measures 5 and 10, and 10 meets the
            fidelity goal on both chips and data sets, as the mean of ten seeds).
        n_calib: calibration samples for folding.
        fold_test_samples: a recipe of synthetic data: the folds report on a test split of this
            many recordings (the first are the recipe's own; training and validation unchanged), so
            one recording is worth less than the 1-point goal; None: the recipe's own. Recorded data
            (a recipe's or a user's ``--data`` folder) keeps its own test split.
        sim_samples: samples simulated per backend (``SLOW_BACKENDS`` run fewer).
        loihi_overrides: config overrides that turn the recipe into the Loihi model: its network, and
            binary frames (``data.max_count=1``), which is what Loihi's input layer receives.
        budget: spike budget file checked on the Speck graph.
        device: where the folds' teacher pass and fine-tuning run (``auto``, ``cpu``, ``cuda``,
            ``cuda:N``, ``mps``); training and analysis get theirs from the caller.
    """

    epochs: int = 20
    finetune_epochs: int = 10
    n_calib: int = 64
    fold_test_samples: int | None = 700
    sim_samples: int = 16
    loihi_overrides: tuple[str, ...] = ("model.network=loihi_net", "data.max_count=1")
    budget: Path = EXAMPLE_BUDGET
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("epochs", "finetune_epochs", "n_calib", "sim_samples"):
            value, least = getattr(self, name), 0 if name == "finetune_epochs" else 1
            if not isinstance(value, int) or value < least:
                raise AsaSnnError(f"pipeline settings: {name} = {value!r}, expected an integer >= {least}")
        samples = self.fold_test_samples
        if samples is not None and (not isinstance(samples, int) or samples < 1):
            raise AsaSnnError(
                f"pipeline settings: fold_test_samples = {samples!r}, expected None or an integer >= 1"
            )


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` wrote: the report folder and the pipeline.json document."""

    out_dir: Path
    document: dict[str, Any]

    def summary_rows(self) -> list[tuple[str, str]]:
        """(item, value) rows for the terminal summary table."""
        doc = self.document
        models = doc["models"]
        rows = [
            (f"{name} test accuracy / NASFR", f"{m['test_accuracy']:.4f} / {m['test_nasfr']:.4f}")
            for name, m in models.items()
        ]
        rows += [
            (f"{name} energy speck (uJ/inference)", f"{m['energy_uj']['speck']:.2f}")
            for name, m in models.items()
            if "speck" in m.get("energy_uj", {})
        ]
        for target, fid in doc["fidelity"].items():
            first, last = fid["stages"][0], fid["stages"][-1]
            rows.append(
                (
                    f"{target} fidelity float -> quantized",
                    f"accuracy {first['accuracy']:.4f} -> {last['accuracy']:.4f}, "
                    f"goal {'met' if fid['goal_met'] else 'not met'}{coarse_split(fid)}",
                )
            )
        for target, sims in doc["backends"].items():
            ran = [b for b, r in sims["runs"].items() if r["available"]]
            agree = [b for b in ran if sims["runs"][b]["agrees"]]
            rows.append((f"{target} backends agreeing / run", f"{len(agree)} / {len(ran)}: {', '.join(ran)}"))
        for target, mapping in doc["mapping"].items():
            rows.append((f"{target} chip mapping", "fits" if mapping["ok"] else "does not fit"))
        budget = doc["budget"]
        rows.append(("budget verdict", "PASS" if budget["ok"] else "FAIL"))
        rows.append(("total runtime (s)", f"{doc['runtime_s']['total']:.1f}"))
        rows.append(("report", str(self.out_dir / "report.html")))
        return rows


def layers_agree(reference: SimulationResult, other: SimulationResult) -> dict[str, bool]:
    """Layer -> True when ``other``'s spike counts [B, T] equal the reference's exactly.

    A layer missing from ``other`` or counted over a different shape does not agree.
    """
    found = {}
    for name, counts in reference.spike_counts.items():
        theirs = other.spike_counts.get(name)
        found[name] = (
            theirs is not None and theirs.shape == counts.shape and bool(np.array_equal(theirs, counts))
        )
    return found


@dataclass
class _Clock:
    """Seconds spent per pipeline stage (wall clock)."""

    seconds: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)

    def lap(self, name: str, began: float) -> None:
        self.seconds[name] = round(time.perf_counter() - began, 2)


def train_models(
    train_fn: TrainFn, config: str, base: list[str], settings: Settings, folder: Path
) -> dict[str, dict[str, Any]]:
    """Train vanilla and ASA-2 models of the recipe's network and an ASA-2 Loihi model.

    Returns:
        name (``vanilla``, ``asa``, ``loihi_asa``) -> what ``train_fn`` returned.
    """
    plans = {
        "vanilla": ["model.attention=none"],
        "asa": ["model.attention=asa2"],
        "loihi_asa": ["model.attention=asa2", *settings.loihi_overrides],
    }
    results = {}
    for name, extra in plans.items():
        result = train_fn(config, [*base, *extra], folder / name)
        missing = [k for k in ("test_accuracy", "test_nasfr", "checkpoint") if k not in result]
        if missing:
            raise AsaSnnError(f"pipeline: train_fn returned no {', '.join(missing)} for the {name} model")
        results[name] = result
    return results


def export_all(graph: FoldedGraph, folder: Path) -> dict[str, str]:
    """Every export of ``graph``: its chip's own formats, then NIR and ONNX; format -> what was
    written (a file name inside ``folder``, or what was built in memory), or why it failed."""
    folder.mkdir(parents=True, exist_ok=True)
    writers = {**get_chip(graph.target).exports, **GENERIC_EXPORTS}
    found = {}
    for name, write in writers.items():
        try:
            found[name] = write(graph, folder)
        except AsaSnnError as exc:
            found[name] = f"not exported: {exc}"
    return found


def simulate_all(graph: FoldedGraph, data: str, samples: int, folder: Path) -> dict[str, Any]:
    """Run ``graph`` on its reference backend and every other backend of its target; compare counts.

    Returns:
        {"reference", "samples", "runs": backend -> {"available", "reason", "samples",
        "spikes_per_sample", "accuracy", "layers_agree", "agrees"}}; a missing backend's run holds
        the reason only. Summaries are written to ``folder/<target>_<backend>.json``.
    """
    chip = get_chip(graph.target)
    reference_name, others = chip.simulator_name, chip.compared_backends
    references: dict[int, SimulationResult] = {}
    runs: dict[str, dict[str, Any]] = {}
    for backend in (reference_name, *others):
        count = SLOW_BACKENDS.get(backend, samples)
        try:
            result, summary = simulate(graph, data, backend, count)
        except MissingDependencyError as exc:
            runs[backend] = {"available": False, "reason": str(exc)}
            continue
        write_json(summary, folder / f"{graph.target}_{backend}.json")
        if count not in references:
            references[count] = (
                result if backend == reference_name else simulate(graph, data, reference_name, count)[0]
            )
        layers = layers_agree(references[count], result)
        runs[backend] = {
            "available": True,
            "reason": "",
            "samples": summary["samples"],
            "spikes_per_sample": summary["spikes_per_sample"],
            "accuracy": summary["accuracy"],
            "layers_agree": layers,
            "agrees": all(layers.values()),
        }
    return {"reference": reference_name, "samples": samples, "runs": runs}


def fidelity_doc(fidelity: dict[str, Any]) -> dict[str, Any]:
    """The float -> folded -> quantized chain of a fold's fidelity document."""
    return {
        "stages": [
            {"stage": s["stage"], "accuracy": s["accuracy"], "nasfr": s["nasfr"]}
            for s in fidelity["stages"][:4]
        ],
        "delta_accuracy_pp": fidelity["delta_1_to_3"]["accuracy_pp"],
        "delta_nasfr_relative": fidelity["delta_1_to_3"]["nasfr_relative"],
        "goal_met": fidelity["goal"]["met"],
        "one_recording_pp": fidelity["goal"]["one_recording_pp"],
        "accuracy_loss_max_pp": fidelity["goal"]["accuracy_loss_max_pp"],
    }


def coarse_split(fidelity: dict[str, Any]) -> str:
    """' (one test recording = X pp)' where one recording is worth more than the accuracy goal
    allows to lose (:func:`~asa_snn.workflows.fidelity_report.coarse_split_pp`), else ''."""
    one = coarse_split_pp(fidelity)
    return "" if one is None else f" (one test recording = {one:.2f} pp)"


def model_docs(trained: dict[str, dict[str, Any]], metrics: dict[str, Any], root: Path) -> dict[str, Any]:
    """Per model: test accuracy, NASFR, checkpoint (relative to the report) and, for the analysed
    vanilla / ASA pair, the analysis NASFR and energy per inference in microjoules per preset."""
    labels = list(metrics["models"])
    analysed = dict(zip(("vanilla", "asa"), labels, strict=False))
    models = {}
    for name, result in trained.items():
        entry = {
            "test_accuracy": float(result["test_accuracy"]),
            "test_nasfr": float(result["test_nasfr"]),
            "checkpoint": os.path.relpath(result["checkpoint"], root),
        }
        if name in analysed:
            measured = metrics["models"][analysed[name]]
            entry["analysis_nasfr"] = float(measured["network"]["nasfr_paper"])
            entry["energy_uj"] = {p: 1e6 * float(e["total_j"]) for p, e in measured["energy"].items()}
        models[name] = entry
    return models


def _png(draw: Callable[[Any], None], size: tuple[float, float]) -> bytes:
    """Render ``draw(axes)`` into PNG bytes (Agg backend, 100 dpi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=size)
    draw(axes)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def backend_figure(target: str, sims: dict[str, Any]) -> bytes:
    """Grouped bars: spikes per sample per layer, one bar per backend that ran."""
    runs = {b: r for b, r in sims["runs"].items() if r["available"]}
    layers = list(next(iter(runs.values()))["spikes_per_sample"]) if runs else []

    def draw(ax: Any) -> None:
        width = 0.8 / max(len(runs), 1)
        for index, (backend, run) in enumerate(runs.items()):
            values = [run["spikes_per_sample"].get(layer, 0.0) for layer in layers]
            ax.bar(
                np.arange(len(layers)) + index * width, values, width, label=f"{backend} ({run['samples']})"
            )
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, layers)
        ax.set_ylabel("spikes per sample")
        ax.set_title(f"{target}: spikes per layer per backend (samples)")
        ax.legend(fontsize=8)

    return _png(draw, (7, 3.5))


def fidelity_figure(fidelity: dict[str, Any]) -> bytes:
    """Accuracy through the fold stages (1, 2a, 2b, 3), one line per target."""

    def draw(ax: Any) -> None:
        for target, fid in fidelity.items():
            stages = fid["stages"]
            ax.plot(
                [s["stage"].split(" ")[0] for s in stages],
                [s["accuracy"] for s in stages],
                "o-",
                label=target,
            )
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("stage: 1 float, 2a folded, 2b fine-tuned, 3 quantized")
        ax.set_ylabel("validation accuracy")
        ax.legend()

    return _png(draw, (6, 3.2))


STEPS = (
    "training vanilla, ASA and Loihi ASA models",
    "analysing vanilla vs ASA",
    "folding and quantizing for Speck",
    "folding and quantizing for Loihi",
    "exporting sinabs, NIR, netx, ONNX",
    "simulating on every available backend",
    "checking chip mapping and the spike budget",
    "writing the report",
)
"""The demo's steps, as :class:`Progress` reports them."""
FOLDS = (("speck", "asa"), ("loihi", "loihi_asa"))
"""(chip, trained model) folded by the demo."""


def fold_for(
    checkpoint: str | Path, target: str, folder: Path, settings: Settings, generated: bool = True
) -> FoldOutcome:
    """Fold ``checkpoint`` for the chip ``target`` into ``folder/<target>`` with the demo's sizes;
    ``generated``: its data is synthetic, reported on ``settings.fold_test_samples`` recordings."""
    return run_fold(
        checkpoint,
        target,
        folder / target,
        finetune_epochs=settings.finetune_epochs,
        n_calib=settings.n_calib,
        tune_options=TuneOptions(device=settings.device),
        test_samples=settings.fold_test_samples if generated else None,
    )


def generated_data(config: str, overrides: list[str]) -> bool:
    """Whether the recipe ``config`` (with ``overrides``) trains on synthetic recordings."""
    return load_config(resolve_config_path(config), overrides).data.kind == SYNTHETIC_KIND


def check_chips(
    folds: dict[str, FoldOutcome], sim_data: str, settings: Settings, folder: Path
) -> tuple[dict[str, Any], BudgetReport, dict[str, Path]]:
    """Every chip's mapping check of its graph, and the example budget on the Speck graph (written
    into ``folder``): (mapping documents by chip, budget report, budget files)."""
    mapping = {target: get_chip(target).check(fold.graph).to_dict() for target, fold in folds.items()}
    budget = evaluate_budget(
        folds["speck"].graph, load_budget(settings.budget), sim_data, "speck", settings.sim_samples
    )
    return mapping, budget, write_budget_report(budget, folder)


def report_figures(
    fidelity: dict[str, Any],
    backends: dict[str, Any],
    budget_files: dict[str, Path],
    analysis: Path,
    names: list[str],
) -> dict[str, bytes]:
    """The report's PNG figures by file name: fidelity, backends per chip, budget (firing rates and,
    on Speck, the per-core load over time), analysis."""
    figures = {
        "fidelity.png": fidelity_figure(fidelity),
        **{f"backends_{t}.png": backend_figure(t, sims) for t, sims in backends.items()},
        "budget_rates.png": budget_files["figure"].read_bytes(),
    }
    if "core_load" in budget_files:
        figures["core_load.png"] = budget_files["core_load"].read_bytes()
    for name in names:
        figures[f"analysis_{Path(name).name}"] = (analysis / name).read_bytes()
    return figures


def training_overrides(settings: Settings, data: str | Path | None) -> list[str]:
    """The config overrides every model of the demo trains with: its epochs, and a user's folder of
    recordings as the data (20 % held out as the test set).

    Raises:
        AsaSnnError: ``data`` is not a folder or holds no recording (checked before any training).
    """
    base = [f"train.epochs={settings.epochs}"]
    if data is None:
        return base
    if not Path(data).is_dir():
        raise AsaSnnError(f"pipeline --data {data}: not a folder of recordings")
    recording_files(Path(data))
    return [*base, "data.kind=folder", f"data.root={Path(data).resolve()}", "data.test_fraction=0.2"]


def inputs_doc(config: str, data: str | Path | None, sim_data: str, settings: Settings) -> dict[str, Any]:
    """What the report says about its inputs: recipe, data, simulation input and settings."""
    return {
        "config": config,
        "data": str(data)
        if data is not None
        else "recipe data; simulation on the embedded synthetic test split",
        "simulation_input": f"{data} (its recordings, labelled by its labels.csv)"
        if data is not None
        else sim_data,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.__dict__.items()},
    }


def run_pipeline(
    out_dir: str | Path,
    train_fn: TrainFn,
    analyze_fn: AnalyzeFn,
    config: str = "synthetic_speck",
    data: str | Path | None = None,
    settings: Settings | None = None,
    progress: Progress = _silent,
) -> PipelineResult:
    """Train, analyse, fold, export, simulate, check and report (module docstring) into ``out_dir``.

    Args:
        out_dir: the report folder (replaced atomically when it exists).
        train_fn: trains one model (:data:`TrainFn`).
        analyze_fn: analyses vanilla against ASA (:data:`AnalyzeFn`).
        config: recipe name or file handed to ``train_fn``.
        data: a folder of the user's recordings with ``labels.csv`` (``data.kind=folder``,
            ``data.root=DATA``, 20 % held out as the test set) instead of the recipe's data. The
            folder itself is also the simulation and budget input, read as labelled data (its
            ``labels.csv`` rows, side files skipped: :func:`~asa_snn.simulators.inputs.folder_recordings`),
            so the backends and the budget report accuracy; its first ``settings.sim_samples``
            rows are simulated, training recordings included. The folded graphs carry the recipe's
            preprocessing (:mod:`asa_snn.data.model_input`), which must suit the recordings. None:
            the recipe's data, simulated on the embedded synthetic test split.
        settings: sizes (:class:`Settings`); None: the defaults.
        progress: told about each of the :data:`STEPS`.

    Raises:
        AsaSnnError: ``data`` is not a folder or holds no recording (checked before training), or
            any step failed (nothing is written then).
    """
    settings = settings or Settings()
    base = training_overrides(settings, data)
    clock = _Clock()

    def step(index: int) -> float:
        progress(index + 1, len(STEPS), STEPS[index])
        return time.perf_counter()

    with staged_folder(Path(out_dir)) as staging:
        sim_data = f"builtin:synthetic:{settings.sim_samples}"
        if data is not None:
            sim_data = str(Path(data).resolve())
        generated = data is None and generated_data(config, base)
        began = step(0)
        trained = train_models(train_fn, config, base, settings, staging / "train")
        clock.lap("train", began)
        began = step(1)
        checkpoints = (Path(trained[name]["checkpoint"]) for name in ("vanilla", "asa"))
        metrics = analyze_fn(*checkpoints, staging / "analysis")
        clock.lap("analyze", began)
        folds = {}
        for index, (target, name) in enumerate(FOLDS, start=2):
            began = step(index)
            checkpoint = trained[name]["checkpoint"]
            folds[target] = fold_for(checkpoint, target, staging / "fold", settings, generated)
            clock.lap(f"fold_{target}", began)
        began = step(4)
        exports = {t: export_all(f.graph, staging / "exports" / t) for t, f in folds.items()}
        clock.lap("export", began)
        began = step(5)
        backends = {
            t: simulate_all(f.graph, sim_data, settings.sim_samples, staging / "simulate")
            for t, f in folds.items()
        }
        clock.lap("simulate", began)
        began = step(6)
        mapping, budget, budget_files = check_chips(folds, sim_data, settings, staging / "budget")
        clock.lap("check", began)
        began = step(7)
        fidelity = {t: fidelity_doc(f.fidelity) for t, f in folds.items()}
        analysis_figures = [f for f in metrics.get("figures", []) if f.endswith(".png")]
        document = {
            **inputs_doc(config, data, sim_data, settings),
            "models": model_docs(trained, metrics, staging),
            "fidelity": fidelity,
            "exports": exports,
            "backends": backends,
            "mapping": mapping,
            "budget": budget.to_dict(),
            "analysis_figures": analysis_figures,
        }
        figures = report_figures(fidelity, backends, budget_files, staging / "analysis", analysis_figures)
        clock.lap("report", began)
        document["runtime_s"] = {**clock.seconds, "total": round(time.perf_counter() - clock.start, 2)}
        write_report(staging, document, figures)
    return PipelineResult(Path(out_dir), document)


__all__ = [
    "EXAMPLE_BUDGET",
    "GENERIC_EXPORTS",
    "AnalyzeFn",
    "PipelineResult",
    "Progress",
    "Settings",
    "TrainFn",
    "export_all",
    "layers_agree",
    "run_pipeline",
    "simulate_all",
]
