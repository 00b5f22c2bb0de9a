"""The steps of ``asa-snn fold`` on the model side, each returning data.

checkpoint -> :func:`calibration_batches` -> :func:`static_fold` (BN, pooling and attention folded,
rate-matched) -> :func:`tune` (fold-aware fine-tuning with the chip's fake quantization) ->
quantize (the chip's :class:`~asa_snn.convert.quantize.Quantizer`) -> :func:`measure_stages`.

The static fold is rate-matched by default (:class:`~asa_snn.convert.attention_fold.RateMatch`: one
scalar per attention layer so its calibration spike count equals the live model's), and
fine-tuning starts from that rate-matched graph.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from asa_snn.chips.registry import get_chip
from asa_snn.convert.attention_fold import RateMatch
from asa_snn.convert.finetune import FinetuneResult, finetune
from asa_snn.convert.fold import GENERIC_TARGET, FoldReport, Target, fold_model
from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.measure import StageMetrics, measure_live
from asa_snn.convert.quantize import FakeQuantizer, Quantizer
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


@dataclass
class FoldRun:
    """Everything the model side produced for one ``asa-snn fold``.

    Attributes:
        static, tuned: float graphs before / after fine-tuning.
        deployed: the quantized graph (the tuned float graph where the target has no integers).
        report: the fold report.
        stages: measured stages (1) live, (2a) static fold, (2b) fine-tuned, plus the vanilla model
            when given.
        neurons: neurons per step of each spiking layer of the trained model.
        val_frames: validation frames [B, T, C, H, W] (float32 event counts); val_labels [B].
        steps: T.
        finetune_history: per-epoch fine-tuning log.
        provenance: what the graph records about its origin.
    """

    static: FoldedGraph
    tuned: FoldedGraph
    deployed: FoldedGraph
    report: FoldReport
    stages: list[StageMetrics]
    neurons: dict[str, int]
    val_frames: np.ndarray
    val_labels: np.ndarray
    steps: int
    finetune_history: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


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
) -> tuple[FoldedGraph, FoldReport]:
    """Step (2a): the float graph of ``run``'s model for ``target``, carrying the run's input spec."""
    return fold_model(
        run.model,
        calibration,
        fold_target(target),
        approximate,
        run.data.input_spec,
        provenance,
        rate_match=rate_match,
    )


def tune(
    run: Run, graph: FoldedGraph, target: str, epochs: int, lr: float | None, batch_size: int
) -> FinetuneResult:
    """Step (2b): fold-aware fine-tuning with the target's fake quantization; the epoch with the best
    validation accuracy is kept (epoch 0 is the static fold). ``lr`` None: 0.1 x the run's rate."""
    quantizer = quantizer_of(target)
    fake = FakeQuantizer(quantizer) if quantizer is not None else None
    loss_fn = LOSS_FUNCTIONS[run.config.train.loss]()
    lr = lr if lr is not None else 0.1 * run.config.optim.lr
    return finetune(
        graph, run.data.train, run.data.val, epochs, loss_fn, lr, fake, batch_size, run.config.train.seed
    )


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
