"""The model side of ``asa-snn fold``: checkpoint -> calibration -> fold -> fine-tune -> quantize,
with accuracy, NASFR and per-layer spikes measured on the validation split at every step.

The static fold is rate-matched by default (:class:`~asa_snn.convert.attention_fold.RateMatch`: one
scalar per attention layer so its calibration spike count equals the live model's), and fine-tuning
starts from that rate-matched graph.

NASFR here is the released code's (total spikes / (neurons x T x samples), FACTS.md section 1)
with the neuron count of the trained model for every stage, so a pruned (always silent) channel
counts as silent rather than vanishing from the denominator.
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

from asa_snn.convert.attention_fold import RateMatch
from asa_snn.convert.finetune import finetune
from asa_snn.convert.fold import FoldReport, fold_model
from asa_snn.convert.graph import FoldedGraph, InputSpec
from asa_snn.convert.graph_model import FakeQuant, GraphModel
from asa_snn.convert.quantize import QUANTIZERS, FakeQuantizer, quantize_graph
from asa_snn.errors import AsaSnnError
from asa_snn.models.networks import SpikingNetwork
from asa_snn.train.checkpoint import load_model
from asa_snn.train.config import TrainConfig, load_config
from asa_snn.train.data import DataBundle, build_data
from asa_snn.train.metrics import LOSS_FUNCTIONS, to_time_major


@dataclass
class StageMetrics:
    """One measured stage on the validation data.

    Attributes:
        stage: label, e.g. "1 live attention".
        accuracy: in [0, 1].
        nasfr: spikes / (neurons x T x samples), trained model's neuron counts.
        samples: validation samples.
        layer_spikes: layer name -> mean spikes per sample.
        epochs: training epochs behind this model (None where not meaningful).
    """

    stage: str
    accuracy: float
    nasfr: float
    samples: int
    layer_spikes: dict[str, float]
    epochs: int | None = None


def nasfr_of(layer_spikes: dict[str, float], neurons: dict[str, int], steps: int) -> float:
    """Mean spikes per sample summed over layers / (neurons per step summed over layers x T)."""
    slots = sum(neurons.values()) * steps
    return sum(layer_spikes.values()) / slots if slots else 0.0


@torch.no_grad()
def measure_live(
    stage: str, model: SpikingNetwork, layers: list[str], loader: DataLoader, epochs: int | None = None
) -> tuple[StageMetrics, dict[str, int]]:
    """Accuracy and spikes of the trained model (live attention); ``layers`` names its blocks' neurons.

    Returns the metrics and the neurons per step of each layer.
    """
    model.eval()
    neurons_of = {name: block.neuron for name, block in zip(layers, model.blocks, strict=True)}
    spikes = dict.fromkeys(layers, 0.0)
    sizes: dict[str, int] = {}

    def hook(name: str, output: Tensor) -> None:
        spikes[name] += float(output.sum())
        sizes[name] = int(np.prod(output.shape[2:]))

    handles = [m.register_forward_hook(lambda _m, _i, o, n=n: hook(n, o)) for n, m in neurons_of.items()]
    correct, count, steps = 0, 0, 1
    try:
        for frames, labels in loader:
            x = to_time_major(frames)
            steps = x.shape[0]
            correct += int((model(x).argmax(1) == labels).sum())
            count += len(labels)
    finally:
        for handle in handles:
            handle.remove()
    per_sample = {k: v / max(count, 1) for k, v in spikes.items()}
    metrics = StageMetrics(
        stage, correct / max(count, 1), nasfr_of(per_sample, sizes, steps), count, per_sample, epochs
    )
    return metrics, sizes


@torch.no_grad()
def measure_graph(
    stage: str,
    graph: FoldedGraph,
    loader: DataLoader,
    neurons: dict[str, int],
    fake_quant: FakeQuant | None = None,
    epochs: int | None = None,
) -> StageMetrics:
    """Accuracy and spikes of ``graph`` run by :class:`GraphModel` on ``loader``."""
    model = GraphModel(graph, fake_quant).eval()
    spikes: dict[str, float] = {}
    correct, count, steps = 0, 0, 1
    for frames, labels in loader:
        x = to_time_major(frames)
        steps = x.shape[0]
        run = model.run(x)
        correct += int((run.scores.argmax(1) == labels).sum())
        count += len(labels)
        for name, value in run.channel_spikes.items():
            spikes[name] = spikes.get(name, 0.0) + float(value.sum())
    per_sample = {k: v / max(count, 1) for k, v in spikes.items()}
    return StageMetrics(
        stage, correct / max(count, 1), nasfr_of(per_sample, neurons, steps), count, per_sample, epochs
    )


@dataclass
class FoldRun:
    """Everything the model side produced for one ``asa-snn fold``.

    Attributes:
        static, tuned: float graphs before / after fine-tuning.
        deployed: the quantized graph (the tuned float graph for the generic target).
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


def fold_config(checkpoint: str | Path, metadata: dict[str, Any], calib: str | Path | None) -> TrainConfig:
    """The training config whose data calibrates and validates the fold: ``calib`` or the checkpoint's.

    Raises:
        AsaSnnError: neither gives a data config.
    """
    if calib is not None:
        return load_config(calib)
    if not isinstance(metadata.get("config"), dict) or "data" not in metadata["config"]:
        raise AsaSnnError(
            f"checkpoint {checkpoint}: its metadata holds no data config (no 'config.data') and no "
            "calibration data was given; pass --calib CONFIG, a training config whose [data] section "
            "names the calibration / validation data"
        )
    return TrainConfig.from_dict(metadata["config"])


def _digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _stack(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([f for f, _ in items]).numpy(), np.array([label for _, label in items], dtype=np.int64)


def fold_checkpoint(
    checkpoint: str | Path,
    target: str,
    calib: str | Path | None = None,
    finetune_epochs: int = 3,
    n_calib: int = 64,
    approximate: bool = False,
    finetune_lr: float | None = None,
    vanilla: str | Path | None = None,
    batch_size: int = 16,
    rate_match: RateMatch | None = RateMatch(),  # noqa: B008 (frozen dataclass)
) -> FoldRun:
    """Fold a checkpoint for ``target`` and measure stages (1), (2a), (2b) (module docstring).

    Args:
        checkpoint: a training checkpoint (``best.safetensors``).
        target: ``speck``, ``loihi`` or ``generic``.
        calib: a training config naming the data; None: the checkpoint's own config.
        finetune_epochs: fold-aware fine-tuning epochs (0: the static fold alone).
        n_calib: calibration samples (the first ones of the training split).
        approximate: allow LIF -> IAF for Speck.
        finetune_lr: Adam learning rate; None: 0.1 x the checkpoint's learning rate.
        vanilla: optional checkpoint of a vanilla model, measured on the same data for comparison.
        batch_size: evaluation / fine-tuning batch size.
        rate_match: per-layer rate matching of the static fold (None: least-squares gains only).
    """
    model, metadata = load_model(checkpoint)
    config = fold_config(checkpoint, metadata, calib)
    data: DataBundle = build_data(config)
    count = min(n_calib, len(data.train))
    calibration = [
        to_time_major(torch.stack([data.train[i][0] for i in range(start, min(start + batch_size, count))]))
        for start in range(0, count, batch_size)
    ]
    c, h, w = model.input_shape
    spec = InputSpec(
        shape=(c, h, w),
        sensor_size=(w * config.data.downsample, h * config.data.downsample, c),
        downsample=config.data.downsample,
        dt_us=int(data.dt_us or 0),
        n_steps=config.data.n_steps,
    )
    provenance = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": _digest(checkpoint),
        "model_spec": metadata.get("model_spec"),
        "calibration": {"config": str(calib) if calib else "checkpoint metadata", "samples": count},
        "data_fingerprint": data.fingerprint,
        "options": {
            "target": target,
            "finetune_epochs": finetune_epochs,
            "approximate": approximate,
            "rate_match": rate_match is not None,
        },
    }
    static, report = fold_model(
        model, calibration, target, approximate, spec, provenance, rate_match=rate_match
    )
    layers = [fold.layer for fold in report.layers]
    loader = DataLoader(data.val, batch_size=batch_size, shuffle=False)
    epochs = int(metadata.get("epoch", 0))
    live, neurons = measure_live("1 live attention", model, layers, loader, epochs)
    quantizer = QUANTIZERS[target]
    fake = FakeQuantizer(quantizer) if quantizer is not None else None
    stages = [live, measure_graph("2a static fold (float)", static, loader, neurons, epochs=epochs)]
    loss_fn = LOSS_FUNCTIONS[config.train.loss]()
    lr = finetune_lr if finetune_lr is not None else 0.1 * config.optim.lr
    tuned = finetune(
        static, data.train, data.val, finetune_epochs, loss_fn, lr, fake, batch_size, config.train.seed
    )
    stages.append(
        measure_graph(
            "2b fine-tuned fold (float)", tuned.graph, loader, neurons, epochs=epochs + finetune_epochs
        )
    )
    deployed = tuned.graph if quantizer is None else quantize_graph(tuned.graph, quantizer)
    if vanilla is not None:
        vanilla_model, vanilla_meta = load_model(vanilla)
        names = [f"block{i}" for i in range(len(vanilla_model.blocks))]
        if len(vanilla_model.blocks) == len(layers):
            names = layers
        stages.append(
            measure_live(
                "vanilla (no attention)", vanilla_model, names, loader, int(vanilla_meta.get("epoch", 0))
            )[0]
        )
    frames, labels = _stack(data.val)
    return FoldRun(
        static,
        tuned.graph,
        deployed,
        report,
        stages,
        neurons,
        frames,
        labels,
        config.data.n_steps,
        tuned.history,
        provenance,
    )
