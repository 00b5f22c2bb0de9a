"""Fold-aware fine-tuning: train the folded graph itself for a few epochs.

The static fold replaces attention by per-channel gains; the network then sees currents it was not
trained on. Fine-tuning runs :class:`~asa_snn.convert.graph_model.GraphModel` (attention already
folded into the weights), Adam at a small learning rate, in one of two forms:

* float neurons with the target's fake quantization (straight-through rounding, scale recomputed
  every step): the float model, not the one the chip runs;
* the chip's own dynamics (``dynamics`` and ``quantizer``: integer weights, the chip's input,
  synaptic delay, saturation and fixed-point neurons, rounding straight-through), so a lower
  training loss is a better deployed result.

The loss is ``label_weight * loss_fn(scores, labels) + teacher_weight * mse(scores, teacher rates)
+ layer_weight * mean over layers of ((spikes - teacher spikes) / (teacher spikes + 1))^2``: with
:class:`Teacher` targets (the live attention model's output rates and per-layer spike counts on
every training recording) the folded model learns what the attention did, the label term kept.
The epoch chosen on the validation split (epoch 0 = the starting graph included) is written back
into the graph: the one with the best validation accuracy, and among epochs of equal accuracy (on
40 to 80 recordings the accuracy moves in steps of 1 to 2.5 points, so many tie) the one that best
reproduces the live model there (lowest teacher terms on the validation recordings, given a
validation :class:`Teacher`; without one the earliest). ``selection="fidelity"`` ranks by that
agreement alone.
The starting graph is the static fold as :func:`~asa_snn.convert.fold.fold_model` returns it,
i.e. rate-matched by default.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from asa_snn.convert.chip_dynamics import ChipDynamics
from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.graph_model import FakeQuant, GraphModel
from asa_snn.convert.quantize import Quantizer
from asa_snn.errors import AsaSnnError
from asa_snn.train.metrics import MseRate, to_time_major

SELECTED_BY = {
    ("accuracy", False): "validation accuracy",
    ("accuracy", True): "validation accuracy, ties broken by agreement with the live model",
    ("fidelity", True): "agreement with the live model on the validation split",
}
"""(selection, with a validation teacher) -> what chose the epoch, in words."""


@dataclass
class FinetuneResult:
    """The selected graph (float, unrounded weights), the per-epoch log, the chosen epoch (0: none),
    whether it was trained with the chip's dynamics and what chose the epoch."""

    graph: FoldedGraph
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    chip: bool = False
    selected_by: str = "validation accuracy"


@dataclass
class Teacher:
    """Distillation targets from the live attention model, one row per training recording (in order).

    Attributes:
        scores: [N, K] the live model's output rates.
        layer_spikes: spiking layer name -> [N] spikes per recording (summed over T and neurons).
    """

    scores: Tensor
    layer_spikes: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the fine-tuning loss terms (module docstring); teacher terms need a :class:`Teacher`."""

    label: float = 1.0
    teacher: float = 1.0
    layers: float = 0.0


class _Indexed(Dataset):
    """``(frames, label, index)`` of a dataset of ``(frames, label)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Any, int]:
        frames, label = self.dataset[index]
        return frames, label, index


@torch.no_grad()
def validation_accuracy(model: GraphModel, loader: DataLoader, device: torch.device | None = None) -> float:
    """Accuracy in [0, 1] of ``model`` on ``loader`` batches of ([B, T, C, H, W], [B])."""
    model.eval()
    correct, count = 0, 0
    for frames, labels in loader:
        frames, labels = frames.to(device), labels.to(device)
        correct += int((model(to_time_major(frames)).argmax(1) == labels).sum())
        count += len(labels)
    return correct / max(count, 1)


@torch.no_grad()
def validation_fidelity(
    model: GraphModel, dataset: Dataset, teacher: Teacher, weights: LossWeights, device: torch.device | None
) -> float:
    """The teacher terms of the loss (module docstring; label term left out) averaged over the
    recordings of ``dataset``, whose order ``teacher``'s rows follow; 0 = the live model exactly."""
    model.eval()
    teacher_only = LossWeights(0.0, weights.teacher, weights.layers)
    total, count = 0.0, 0
    for frames, labels, index in DataLoader(_Indexed(dataset), batch_size=16, shuffle=False):
        loss = _loss(model, frames.to(device), labels.to(device), index, None, teacher, teacher_only)
        total += float(loss) * len(labels)
        count += len(labels)
    return total / max(count, 1)


def _loss(
    model: GraphModel,
    frames: Tensor,
    labels: Tensor,
    index: Tensor,
    loss_fn: Any,
    teacher: Teacher | None,
    weights: LossWeights,
) -> Tensor:
    run = model.run(to_time_major(frames))
    loss = weights.label * loss_fn(run.scores, labels) if weights.label else run.scores.new_zeros(())
    if teacher is None:
        return loss
    target = teacher.scores[index.cpu()].to(run.scores)
    loss = loss + weights.teacher * F.mse_loss(run.scores, target)
    if weights.layers and teacher.layer_spikes:
        terms = []
        for name, expected in teacher.layer_spikes.items():
            spikes = run.channel_spikes[name].sum(1)
            reference = expected[index.cpu()].to(spikes)
            terms.append((((spikes - reference) / (reference + 1)) ** 2).mean())
        loss = loss + weights.layers * torch.stack(terms).mean()
    return loss


def finetune(
    graph: FoldedGraph,
    train_set: Dataset,
    val_set: Dataset,
    epochs: int,
    loss_fn: Any = None,
    lr: float = 3e-4,
    fake_quant: FakeQuant | None = None,
    batch_size: int = 16,
    seed: int = 0,
    dynamics: ChipDynamics | None = None,
    quantizer: Quantizer | None = None,
    teacher: Teacher | None = None,
    weights: LossWeights = LossWeights(),
    device: torch.device | None = None,
    val_teacher: Teacher | None = None,
    selection: str = "accuracy",
) -> FinetuneResult:
    """Fine-tune ``graph`` for ``epochs`` epochs (see the module docstring).

    Args:
        graph: float folded graph.
        train_set, val_set: datasets of (frames [T, C, H, W], label); ``teacher`` rows follow
            ``train_set``'s order.
        epochs: passes over ``train_set``; 0 returns the graph unchanged.
        loss_fn: ``(scores [B, K], labels [B]) -> loss`` (default: the paper's MSE on rates).
        lr: Adam learning rate.
        fake_quant: the target's fake quantization for float neurons, or None.
        batch_size: samples per step.
        seed: seeds the data order.
        dynamics, quantizer: train and select with the chip's dynamics and integers (both or neither).
        teacher: the live model's targets for distillation, or None (labels only).
        weights: weights of the loss terms.
        device: where the model and batches run (None: CPU).
        val_teacher: the live model's targets on ``val_set`` (in order), for
            :func:`validation_fidelity`: breaks ties of the accuracy, or ranks alone.
        selection: ``"accuracy"`` (ties broken by agreement with ``val_teacher``, if given) or
            ``"fidelity"`` (agreement with ``val_teacher`` alone; needs it).
    """
    loss_fn = loss_fn or MseRate()
    model = GraphModel(graph, None if dynamics else fake_quant, dynamics, quantizer).to(device)
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False)
    if (selection, val_teacher is not None) not in SELECTED_BY:
        raise AsaSnnError(
            f"fine-tuning: selection={selection!r} with{'' if val_teacher else 'out'} a validation teacher; "
            "expected 'accuracy', or 'fidelity' with a teacher"
        )
    selected_by = SELECTED_BY[selection, val_teacher is not None]

    def judge(epoch: int, entry: dict[str, Any]) -> tuple[tuple[float, ...], dict[str, Any]]:
        accuracy = validation_accuracy(model, val_loader, device)
        entry = {"epoch": epoch, **entry, "val_accuracy": accuracy}
        if val_teacher is None:
            return (accuracy,), entry
        fidelity = validation_fidelity(model, val_set, val_teacher, weights, device)
        entry["val_fidelity_loss"] = fidelity
        return ((-fidelity,) if selection == "fidelity" else (accuracy, -fidelity)), entry

    best, first = judge(0, {})
    best_state, best_epoch, history = copy.deepcopy(model.state_dict()), 0, [first]
    if epochs <= 0:
        return FinetuneResult(graph, 0, history, dynamics is not None, selected_by)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    indexed = _Indexed(train_set)
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        for frames, labels, index in DataLoader(
            indexed, batch_size=batch_size, shuffle=True, generator=generator
        ):
            optimizer.zero_grad()
            loss = _loss(model, frames.to(device), labels.to(device), index, loss_fn, teacher, weights)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(labels)
            count += len(labels)
        score, entry = judge(epoch, {"train_loss": total / max(count, 1)})
        history.append(entry)
        if score > best:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return FinetuneResult(model.to_graph(), best_epoch, history, dynamics is not None, selected_by)
