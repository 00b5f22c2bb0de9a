"""Losses and evaluation loops (accuracy, loss and NASFR).

NASFR is the released code's (FACTS.md section 1), over every spiking layer, output layer included,

    NASFR = sum of all spikes / sum over layers of (neurons x T x samples),

counted by :func:`~asa_snn.models.recording.count_spikes` on every
:class:`~asa_snn.models.recording.SpikingNeuron` of the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from asa_snn.data.frames import majority_vote
from asa_snn.data.model_input import InputSpec, window_frames
from asa_snn.models.recording import count_spikes
from asa_snn.train.data import Mapped


class MseRate:
    """The paper's loss: mean over B x K of (rate - one_hot(label))^2, scores [B, K], labels [B]
    (computed in float32 at least, whatever precision the scores come in)."""

    def __call__(self, scores: Tensor, labels: Tensor) -> Tensor:
        scores = _at_least_float32(scores)
        target = F.one_hot(labels, scores.shape[1]).to(scores.dtype)
        return F.mse_loss(scores, target)


class CrossEntropy:
    """Cross-entropy with the scores [B, K] taken as logits, labels [B] (in float32 at least)."""

    def __call__(self, scores: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(_at_least_float32(scores), labels)


def _at_least_float32(scores: Tensor) -> Tensor:
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16-mixed": torch.float16}
"""``train.precision`` -> the autocast dtype (``"32"``: no autocast)."""


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context of ``precision`` (``"32"``, ``"bf16"``, ``"16-mixed"``) on ``device``."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


LOSS_FUNCTIONS = {"mse_rate": MseRate, "cross_entropy": CrossEntropy}
"""``train.loss`` name -> loss class."""


@dataclass(frozen=True)
class Evaluation:
    """Result of one evaluation pass: mean loss, accuracy in [0, 1], NASFR, the sample count and
    each spiking layer's firing rate (spikes per neuron and step, by module name)."""

    loss: float
    accuracy: float
    nasfr: float
    samples: int
    layer_rates: dict[str, float] = field(default_factory=dict)


def to_time_major(frames: Tensor) -> Tensor:
    """[B, T, C, H, W] -> [T, B, C, H, W] (contiguous)."""
    return frames.transpose(0, 1).contiguous()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    loss_fn: MseRate | CrossEntropy,
    device: torch.device | None = None,
    precision: str = "32",
) -> Evaluation:
    """Loss, accuracy, NASFR and per-layer firing rates of ``model`` (put in eval mode, already on
    ``device``) over ``batches`` of ([B, T, C, H, W], [B]), moved to ``device`` (None: the CPU) and
    run under the autocast of ``precision``."""
    device = device or torch.device("cpu")
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with count_spikes(model) as counts:
        for frames, labels in batches:
            frames = frames.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast(device, precision):
                scores = model(to_time_major(frames))
            total_loss += float(loss_fn(scores, labels)) * len(labels)
            correct += int((scores.argmax(1) == labels).sum())
            count += len(labels)
    rates = {
        name: layer.spikes / (layer.steps * layer.neurons * layer.samples)
        for name, layer in counts.layers.items()
        if layer.samples and layer.steps and layer.neurons
    }
    return Evaluation(total_loss / max(count, 1), correct / max(count, 1), counts.nasfr, count, rates)


@dataclass(frozen=True)
class WindowEvaluation:
    """Multi-window test: recording accuracy by majority vote, per-window accuracy, NASFR."""

    accuracy: float
    window_accuracy: float
    nasfr: float
    samples: int
    windows: int


@torch.no_grad()
def evaluate_windows(
    model: nn.Module, dataset: Mapped, spec: InputSpec, n_windows: int, device: torch.device | None = None
) -> WindowEvaluation:
    """The paper's test protocol (FACTS.md section 2): ``n_windows`` windows of ``n_steps * dt_us``
    microseconds spread over each recording (:func:`~asa_snn.data.model_input.window_frames`); a
    recording is correct when more than half of its windows are
    (:func:`~asa_snn.data.frames.majority_vote`). ``model`` runs on ``device`` (None: the CPU).
    """
    device = device or torch.device("cpu")
    model.eval()
    votes, window_hits = 0, 0
    with count_spikes(model) as counts:
        for index in range(len(dataset)):
            stream, label = dataset.raw(index)
            frames = window_frames(spec, stream, n_windows)
            batch = torch.as_tensor(np.ascontiguousarray(frames), dtype=torch.float32)
            predictions = model(to_time_major(batch.to(device))).argmax(1).cpu().numpy()
            votes += majority_vote(predictions, int(label))
            window_hits += int((predictions == label).sum())
    count = len(dataset)
    return WindowEvaluation(
        votes / max(count, 1), window_hits / max(count * n_windows, 1), counts.nasfr, count, n_windows
    )
