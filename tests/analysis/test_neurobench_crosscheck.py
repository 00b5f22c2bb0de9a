"""NeuroBench's metrics as the analysis reports them (:mod:`asa_snn.energy.neurobench`) against the
``neurobench`` package run on the same model and data (its ``Benchmark`` with its own metric
classes): equal where the definitions agree, apart by exactly the documented amount where they do
not (padding in Dense, zero weights, membrane updates of non-snnTorch neurons).

Skipped when neurobench is not installed (the ``dev`` extra installs it)."""

import numpy as np
import pytest
import torch
from torch import nn

from asa_snn.analysis.operations import model_layer_ops
from asa_snn.analysis.recorder import measure
from asa_snn.analysis.report import model_neurobench
from asa_snn.energy.model import LayerOps
from asa_snn.energy.neurobench import membrane_updates
from asa_snn.energy.synapses import ConvGeometry, fanout_map
from asa_snn.models.blocks import ConvBlock, LinearBlock
from asa_snn.models.networks import MeanRate, SpikingNetwork
from asa_snn.models.neurons import IAF, LIF
from asa_snn.models.recording import SpikingNeuron

STEPS, SAMPLES, BATCH = 5, 6, 4


def _neurobench():
    """neurobench's Benchmark, models and metric classes, or a skip saying why they cannot load."""
    try:
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics.static import ConnectionSparsity, Footprint
        from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
        from neurobench.models import SNNTorchModel, TorchModel
    except Exception as exc:  # ImportError, or a compiled dependency built for another torch
        pytest.skip(f"neurobench is not usable here ({type(exc).__name__}: {exc}); pip install -e '.[dev]'")
    static = [Footprint, ConnectionSparsity]
    workload = [ActivationSparsity, SynapticOperations, MembraneUpdates]
    return Benchmark, TorchModel, SNNTorchModel, [static, workload]


class TimeFirst(nn.Module):
    """NeuroBench feeds [B, T, ...]; our networks take [T, B, ...]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(0, 1))


def _network(seed: int = 0) -> SpikingNetwork:
    """conv 2->4 (unpadded, bias, batch norm, LIF) -> conv 4->6 (stride 2, padded, grouped, IAF)
    -> linear 96->5 (LIF) on 10 x 10 frames."""
    torch.manual_seed(seed)
    blocks = [
        ConvBlock(nn.Conv2d(2, 4, 3), LIF(v_th=0.3), nn.Identity(), batch_norm=True),
        ConvBlock(
            nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False),
            IAF(v_th=0.5),
            nn.Identity(),
            batch_norm=False,
        ),
        LinearBlock(nn.Linear(6 * 4 * 4, 5), LIF(v_th=0.3)),
    ]
    return SpikingNetwork(blocks, (2, 10, 10), MeanRate()).eval()


def _frames(seed: int = 1) -> torch.Tensor:
    """[N, T, 2, 10, 10] real values without a zero: NeuroBench counts the first layer as MACs of
    every input, as we do (difference 3 of asa_snn.energy.neurobench vanishes)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((SAMPLES, STEPS, 2, 10, 10), generator=generator) + 0.1


def _ours(network: SpikingNetwork, frames: torch.Tensor) -> tuple[list[LayerOps], dict]:
    dataset = [(frames[i], 0) for i in range(len(frames))]
    ops = model_layer_ops(network, measure(network, dataset, batch_size=BATCH, progress=False))
    return ops, model_neurobench(network, ops)


def _theirs(network: SpikingNetwork, frames: torch.Tensor) -> dict:
    Benchmark, TorchModel, _, metrics = _neurobench()
    model = TorchModel(TimeFirst(network))
    model.add_activation_module(SpikingNeuron)  # our neurons' spikes, for activation sparsity
    loader = torch.utils.data.DataLoader(list(zip(frames, torch.zeros(len(frames)), strict=True)), BATCH)
    results = Benchmark(model, loader, [], [], metrics).run(quiet=True)
    return results


def _padding_synapses(ops: list[LayerOps]) -> float:
    """T x the synapses of the padded conv's padding: FLOPs - sum of the fan-out map (difference 4)."""
    geometry = ConvGeometry(4, 6, 3, (8, 8), stride=2, padding=1, groups=2)
    assert ops[1].flops == 3 * 3 * 4 * 4 * (4 // 2) * 6
    return STEPS * (ops[1].flops - fanout_map(geometry).sum())


def test_metrics_agree_with_the_neurobench_package():
    network, frames = _network(), _frames()
    ops, ours = _ours(network, frames)
    theirs = _theirs(network, frames)
    assert [op.input_is_spiking for op in ops] == [False, True, True]
    assert min(op.event_fanout_sum for op in ops[1:]) > 0  # spikes reach every layer

    assert ours["footprint"] == theirs["Footprint"] > 0  # parameters and batch-norm buffers
    assert ours["connection_sparsity"] == theirs["ConnectionSparsity"] == 0.0
    assert 0 < ours["activation_sparsity"] < 1
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=1e-12)
    synops, their_synops = ours["synaptic_operations"], theirs["SynapticOperations"]
    assert synops["Effective_MACs"] == their_synops["Effective_MACs"] == STEPS * ops[0].flops
    assert synops["Effective_ACs"] == pytest.approx(their_synops["Effective_ACs"], rel=1e-12)
    # Dense: ours counts the padded conv's padding synapses, NeuroBench's all-ones input does not
    assert _padding_synapses(ops) > 0
    assert synops["Dense"] - their_synops["Dense"] == pytest.approx(_padding_synapses(ops))
    # membrane updates: NeuroBench counts snnTorch neurons only; ours every neuron at every step
    assert theirs["MembraneUpdates"] == 0
    assert ours["membrane_updates"] == STEPS * (4 * 8 * 8 + 6 * 4 * 4 + 5)


def test_zero_weights_lower_only_neurobench_effective_operations():
    network, frames = _network(), _frames()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in (network.blocks[1].conv, network.blocks[2].linear):
            module.weight[torch.rand(module.weight.shape, generator=generator) < 0.3] = 0.0
    ops, ours = _ours(network, frames)
    theirs = _theirs(network, frames)
    weights = [m.weight for m in network.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert ours["connection_sparsity"] == pytest.approx(zeros) and zeros > 0.1
    assert theirs["ConnectionSparsity"] == round(ours["connection_sparsity"], 4)  # NeuroBench rounds
    synops, their_synops = ours["synaptic_operations"], theirs["SynapticOperations"]
    # a synapse of weight 0 does no work in NeuroBench's count; it does in ours (difference 1)
    assert their_synops["Effective_ACs"] < 0.9 * synops["Effective_ACs"]
    assert synops["Dense"] - their_synops["Dense"] == pytest.approx(_padding_synapses(ops))  # unchanged


def test_membrane_updates_equal_neurobench_on_leaky_snntorch_neurons():
    """NeuroBench counts the membranes an snnTorch neuron changed; a leaky neuron's membrane moves at
    every step, so the count is every neuron at every step: our definition."""
    Benchmark, _, SNNTorchModel, metrics = _neurobench()
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(20, 8),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(8, 4),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )
    frames = torch.rand((SAMPLES, STEPS, 20)) + 0.1
    loader = torch.utils.data.DataLoader(list(zip(frames, torch.zeros(SAMPLES), strict=True)), BATCH)
    theirs = Benchmark(SNNTorchModel(net), loader, [], [], metrics).run(quiet=True)
    layers = [
        LayerOps("fc1", "linear", flops=160, input_size=20, timesteps=STEPS, neurons=8),
        LayerOps("fc2", "linear", flops=32, input_size=8, timesteps=STEPS, neurons=4),
    ]
    assert theirs["MembraneUpdates"] == membrane_updates(layers) == STEPS * 12
    # the real-valued first layer: MACs of every input, T x FLOPs, as ours
    assert theirs["SynapticOperations"]["Effective_MACs"] == STEPS * 160
    assert np.isfinite(theirs["ActivationSparsity"])
