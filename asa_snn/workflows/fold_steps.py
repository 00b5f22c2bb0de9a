"""The steps of ``asa-snn fold`` on the model side, each returning data.

checkpoint -> :func:`calibration_batches` -> :func:`static_fold` (BN, pooling and attention folded,
rate-matched) -> :func:`tune` (fold-aware fine-tuning, by default with the chip's own dynamics and
integers, distilled from the live attention model's rates on every training recording, the epoch
that best reproduces the live model on the validation split) -> quantize (the chip's
:class:`~asa_snn.convert.quantize.Quantizer`) -> stages measured on the test split.

The static fold is rate-matched by default (:class:`~asa_snn.convert.attention_fold.RateMatch`: one
scalar per attention layer so its calibration spike count equals the live model's), and
fine-tuning starts from that rate-matched graph.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from asa_snn.chips.registry import get_chip
from asa_snn.convert.attention_fold import RateMatch
from asa_snn.convert.chip_dynamics import DYNAMICS
from asa_snn.convert.finetune import FinetuneResult, LossWeights, Teacher, finetune
from asa_snn.convert.fold import GENERIC_TARGET, FoldReport, Target, fold_model
from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.measure import StageMetrics, measure_live
from asa_snn.convert.quantize import FakeQuantizer, Quantizer
from asa_snn.devices import resolve_device
from asa_snn.errors import AsaSnnError
from asa_snn.models.networks import SpikingNetwork
from asa_snn.models.recording import SpikingNeuron
from asa_snn.train.checkpoint import check_finite, load_model
from asa_snn.train.metrics import LOSS_FUNCTIONS, to_time_major
from asa_snn.train.run import Run


def fold_target(name: str) -> Target:
    """What the fold may produce for ``name``: the generic target, or a registered chip's neurons
    (one threshold per layer, so per-neuron gain maps are averaged away).

    Raises:
        AsaSnnError: no chip of that name (lists the chips).
    """
    if name == GENERIC_TARGET.name:
        return GENERIC_TARGET
    return Target(name, get_chip(name).neuron_kinds, False)


def quantizer_of(name: str) -> Quantizer | None:
    """The chip's integer rule; None for the generic target or a chip that runs floats."""
    return None if name == GENERIC_TARGET.name else get_chip(name).quantizer


SELECTIONS = ("fidelity", "accuracy")
"""What :class:`TuneOptions` ``select_by`` accepts."""


@dataclass(frozen=True)
class TuneOptions:
    """How :func:`tune` fine-tunes the static fold.

    Attributes:
        chip_dynamics: train and select with the chip's own dynamics and integers
            (:mod:`asa_snn.convert.chip_dynamics`) where the target has them; False: float neurons
            with fake quantization.
        label_weight, teacher_weight, layer_weight: loss weights
            (:class:`~asa_snn.convert.finetune.LossWeights`); teacher and layer terms distil the live
            attention model's output rates and per-layer spike counts on every training recording.
        lr: Adam learning rate; None: the run's own (:func:`finetune_lr`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``: where the live model's
            calibration and teacher passes and fine-tuning run.
        select_by: ``"fidelity"`` (default): when distilling, the fine-tuned epoch that best
            reproduces the live model on the validation split
            (:func:`~asa_snn.convert.finetune.validation_fidelity`), a continuous measure;
            ``"accuracy"`` (and always without a teacher): the best validation accuracy, ties
            broken by agreement with the live model. On 40 to 80 validation recordings accuracy
            moves in steps of 1 to 2.5 points. On the test splits (700 synthetic recordings,
            199 N-MNIST) neither choice was better beyond the seeds' spread (README, "Fold,
            quantize, export").
    """

    chip_dynamics: bool = True
    label_weight: float = 1.0
    teacher_weight: float = 1.0
    layer_weight: float = 1.0
    lr: float | None = None
    device: str = "cpu"
    select_by: str = "fidelity"

    def __post_init__(self) -> None:
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise AsaSnnError(f"fold --lr: {self.lr!r}, expected a finite rate > 0")
        if self.select_by not in SELECTIONS:
            raise AsaSnnError(
                f"fold --select-by: {self.select_by!r}, expected one of {', '.join(SELECTIONS)}"
            )

    @property
    def distils(self) -> bool:
        """Whether a teacher term is on."""
        return self.teacher_weight > 0 or self.layer_weight > 0


@dataclass
class FoldRun:
    """Everything the model side produced for one ``asa-snn fold``.

    Attributes:
        static, tuned: float graphs before / after fine-tuning.
        deployed: the quantized graph (the tuned float graph where the target has no integers).
        report: the fold report.
        stages: measured stages (1) live, (2a) static fold, (2b) fine-tuned, plus the vanilla model
            when given, on the test split.
        neurons: neurons per step of each spiking layer of the trained model.
        test_frames: test-split frames [B, T, C, H, W] (float32 event counts) stage (3) runs on;
            test_labels [B].
        steps: T.
        finetune_history: per-epoch fine-tuning log.
        provenance: what the graph records about its origin.
        splits: which split selected the fine-tuned epoch and which one the stages report, with sizes.
    """

    static: FoldedGraph
    tuned: FoldedGraph
    deployed: FoldedGraph
    report: FoldReport
    stages: list[StageMetrics]
    neurons: dict[str, int]
    test_frames: np.ndarray
    test_labels: np.ndarray
    steps: int
    finetune_history: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, Any] = field(default_factory=dict)


def calibration_batches(dataset: Dataset, count: int, batch_size: int) -> list[Tensor]:
    """The first ``count`` samples of ``dataset`` as batches [T, B, C, H, W]."""
    count = min(count, len(dataset))
    return [
        to_time_major(torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, count))]))
        for start in range(0, count, batch_size)
    ]


def provenance_of(run: Run, target: str, calib: str | Path | None, samples: int, options: dict) -> dict:
    """What the graph records about its origin: checkpoint digest, model, data, options."""
    return {
        "checkpoint": str(run.checkpoint),
        "checkpoint_sha256": run.sha256 or hashlib.sha256(run.checkpoint.read_bytes()).hexdigest(),
        "model_spec": run.metadata.get("model_spec"),
        "calibration": {"config": str(calib) if calib else "checkpoint metadata", "samples": samples},
        "data_fingerprint": run.data.fingerprint,
        "options": {"target": target, **options},
    }


def static_fold(
    run: Run,
    target: str,
    calibration: list[Tensor],
    approximate: bool,
    provenance: dict,
    rate_match: RateMatch | None,
    device: torch.device | None = None,
) -> tuple[FoldedGraph, FoldReport]:
    """Step (2a): the float graph of ``run``'s model for ``target``, carrying the run's input spec;
    the live model's calibration pass runs on ``device`` (None: the CPU)."""
    return fold_model(
        run.model,
        calibration,
        fold_target(target),
        approximate,
        run.data.input_spec,
        provenance,
        rate_match=rate_match,
        device=device,
    )


@torch.no_grad()
def teacher_targets(
    model: SpikingNetwork,
    layers: list[str],
    dataset: Dataset,
    batch_size: int,
    device: torch.device | None = None,
) -> Teacher:
    """The live model's output rates [N, K] and per-layer spikes per recording [N] on ``dataset``
    (in order); ``layers`` names its spiking neurons in module order."""
    model.eval().to(device)
    totals: dict[str, list[Tensor]] = {name: [] for name in layers}
    handles = [
        neuron.register_forward_hook(
            lambda _m, _i, out, key=name: totals[key].append(out.sum(0).flatten(1).sum(1).cpu())
        )
        for name, neuron in zip(
            layers, [m for m in model.blocks.modules() if isinstance(m, SpikingNeuron)], strict=True
        )
    ]
    scores = []
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            frames = torch.stack([f for f, _ in items]).to(device)
            scores.append(model(to_time_major(frames)).cpu())
    finally:
        for handle in handles:
            handle.remove()
        model.cpu()
    return Teacher(torch.cat(scores), {name: torch.cat(parts) for name, parts in totals.items()})


def tune(
    run: Run,
    graph: FoldedGraph,
    target: str,
    epochs: int,
    batch_size: int,
    options: TuneOptions = TuneOptions(),
    layers: list[str] | None = None,
) -> FinetuneResult:
    """Step (2b): fold-aware fine-tuning (:class:`TuneOptions`); the epoch chosen on the validation
    split by ``options.select_by`` is kept (epoch 0 is the static fold). ``layers`` names the live
    model's spiking blocks (needed for distillation)."""
    quantizer = quantizer_of(target)
    device = resolve_device(options.device, "fold --device")
    chip = options.chip_dynamics and quantizer is not None and target in DYNAMICS
    dynamics = DYNAMICS[target] if chip else None
    fake = FakeQuantizer(quantizer) if quantizer is not None and not chip else None
    teacher = val_teacher = None
    if options.distils and epochs > 0:
        teacher = teacher_targets(run.model, layers or [], run.data.train, batch_size, device)
        val_teacher = teacher_targets(run.model, layers or [], run.data.val, batch_size, device)
    weights = LossWeights(options.label_weight, options.teacher_weight, options.layer_weight)
    return finetune(
        graph,
        run.data.train,
        run.data.val,
        epochs,
        LOSS_FUNCTIONS[run.config.train.loss](),
        finetune_lr(options, run.config.optim.lr),
        fake,
        batch_size,
        run.config.train.seed,
        dynamics,
        quantizer if chip else None,
        teacher,
        weights,
        device,
        val_teacher,
        options.select_by if val_teacher is not None else "accuracy",
    )


def finetune_lr(options: TuneOptions, run_lr: float) -> float:
    """The Adam rate of fine-tuning: ``options.lr``, else the run's training rate ``run_lr``."""
    return options.lr if options.lr is not None else run_lr


def vanilla_stage(vanilla: str | Path, layers: list[str], loader: DataLoader) -> StageMetrics:
    """A vanilla checkpoint measured on the same data (its layers named like the fold's if they match)."""
    model, metadata = load_model(vanilla)
    check_finite(vanilla, model.state_dict())
    names = layers if len(model.blocks) == len(layers) else [f"block{i}" for i in range(len(model.blocks))]
    return measure_live("vanilla (no attention)", model, names, loader, int(metadata.get("epoch", 0)))[0]


def stack(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Every item of ``dataset`` as frames [B, T, C, H, W] and labels int64 [B]."""
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([f for f, _ in items]).numpy(), np.array([label for _, label in items], dtype=np.int64)
