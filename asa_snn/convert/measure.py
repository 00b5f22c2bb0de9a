"""Accuracy, NASFR and per-layer spikes of a trained model (live attention) and of a folded graph
run in float, measured the same way so the fold's stages can be compared.

NASFR here is the released code's (total spikes / (neurons x T x samples), FACTS.md section 1)
with the neuron count of the trained model for every stage, so a pruned (always silent) channel
counts as silent rather than vanishing from the denominator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.graph_model import FakeQuant, GraphModel
from asa_snn.models.networks import SpikingNetwork
from asa_snn.train.metrics import to_time_major


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
