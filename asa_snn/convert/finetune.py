"""Fold-aware fine-tuning: train the folded graph itself, with fake quantization, for a few epochs.

The static fold replaces attention by per-channel gains; the network then sees currents it was not
trained on. Fine-tuning runs :class:`~asa_snn.convert.graph_model.GraphModel` (attention already
folded into the weights) with the target's fake quantization (straight-through rounding, scale
recomputed every step) under the checkpoint's loss, Adam at a small learning rate; the epoch with the
best validation accuracy (epoch 0 = the static fold itself included) is written back into the graph.
The starting graph is the static fold as :func:`~asa_snn.convert.fold.fold_model` returns it, i.e.
rate-matched by default (each attention layer's calibration spike count equal to the live model's).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.graph_model import FakeQuant, GraphModel
from asa_snn.train.metrics import MseRate, to_time_major


@dataclass
class FinetuneResult:
    """The selected graph (float, unrounded weights), the per-epoch log and the chosen epoch (0: none)."""

    graph: FoldedGraph
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def validation_accuracy(model: GraphModel, loader: DataLoader) -> float:
    """Accuracy in [0, 1] of ``model`` on ``loader`` batches of ([B, T, C, H, W], [B])."""
    model.eval()
    correct, count = 0, 0
    for frames, labels in loader:
        correct += int((model(to_time_major(frames)).argmax(1) == labels).sum())
        count += len(labels)
    return correct / max(count, 1)


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
) -> FinetuneResult:
    """Fine-tune ``graph`` for ``epochs`` epochs (see the module docstring).

    Args:
        graph: float folded graph.
        train_set, val_set: datasets of (frames [T, C, H, W], label).
        epochs: passes over ``train_set``; 0 returns the graph unchanged.
        loss_fn: ``(scores [B, K], labels [B]) -> loss`` (default: the paper's MSE on rates).
        lr: Adam learning rate.
        fake_quant: the target's fake quantization, or None (float training).
        batch_size: samples per step.
        seed: seeds the data order.
    """
    loss_fn = loss_fn or MseRate()
    model = GraphModel(graph, fake_quant)
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False)
    best = validation_accuracy(model, val_loader)
    best_state, best_epoch = copy.deepcopy(model.state_dict()), 0
    history = [{"epoch": 0, "val_accuracy": best}]
    if epochs <= 0:
        return FinetuneResult(graph, 0, history)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        for frames, labels in DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator):
            optimizer.zero_grad()
            loss = loss_fn(model(to_time_major(frames)), labels)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(labels)
            count += len(labels)
        accuracy = validation_accuracy(model, val_loader)
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_accuracy": accuracy})
        if accuracy > best:
            best, best_epoch, best_state = accuracy, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return FinetuneResult(model.to_graph(), best_epoch, history)
