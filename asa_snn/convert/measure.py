"""Accuracy, NASFR and per-layer spikes of a trained model (live attention) and of a folded graph
run in float, measured the same way so the fold's stages can be compared.

NASFR here is the released code's (:func:`~asa_snn.models.recording.released_nasfr`: total spikes /
(neurons x T x samples), FACTS.md section 1) with the neuron count of the trained model for every
stage, so a pruned (always silent) channel counts as silent rather than vanishing from the
denominator. The live model's spikes are counted by :func:`~asa_snn.models.recording.count_spikes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.graph_model import FakeQuant, GraphModel
from asa_snn.models.networks import SpikingNetwork
from asa_snn.models.neurons import SpikingNeuron
from asa_snn.models.recording import count_spikes, released_nasfr
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
    """:func:`~asa_snn.models.recording.released_nasfr` of mean spikes per sample (layer name -> spikes)
    with ``neurons`` (layer name -> neurons per step) and ``steps`` T."""
    return released_nasfr(layer_spikes, neurons, steps, samples=1)


@torch.no_grad()
def measure_live(
    stage: str, model: SpikingNetwork, layers: list[str], loader: DataLoader, epochs: int | None = None
) -> tuple[StageMetrics, dict[str, int]]:
    """Accuracy and spikes of the trained model (live attention) on ``loader`` of (frames [B, T, C, H, W],
    labels [B]); ``layers`` names its neurons in module order (a residual block holds several).

    Returns:
        The metrics and the neurons per step of each layer that ran.
    """
    model.eval()
    modules = [module for module in model.blocks.modules() if isinstance(module, SpikingNeuron)]
    neurons_of = dict(zip(layers, modules, strict=True))
    correct, count = 0, 0
    with count_spikes(model, neurons_of) as counts:
        for frames, labels in loader:
            correct += int((model(to_time_major(frames)).argmax(1) == labels).sum())
            count += len(labels)
    per_sample, neurons = counts.per_sample(), counts.neurons
    metrics = StageMetrics(
        stage, correct / max(count, 1), nasfr_of(per_sample, neurons, counts.steps), count, per_sample, epochs
    )
    return metrics, neurons


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
