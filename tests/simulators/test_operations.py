"""One operation count for both sides: the same network and spikes give the same synaptic ops in
``analyze``'s path (model_layer_ops on a measured model) and in ``simulate``'s (graph_layer_ops on a
backend result)."""

import pytest
import torch
from torch import nn

from asa_snn.analysis.operations import model_layer_ops
from asa_snn.analysis.recorder import measure
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.chips.speck.sinabs_backend import SinabsBackend
from asa_snn.convert.fold import fold_model
from asa_snn.energy.model import synaptic_ops
from asa_snn.models.blocks import ConvBlock, LinearBlock, SumPool2d
from asa_snn.models.networks import MeanRate, SpikingNetwork
from asa_snn.models.neurons import IAF
from asa_snn.simulators.onnx_backend import OnnxBackend
from asa_snn.simulators.operations import graph_layer_ops
from asa_snn.workflows.fold_steps import fold_target

STEPS, BATCH = 6, 4


def integer_network() -> SpikingNetwork:
    """(2, 13, 13) -> conv 3x3 stride 2 padding 1 (7x7) -> IAF -> sum pool 2 (3x3, row and column 6
    dropped) -> conv 2x2 padding 1 (4x4) -> IAF -> linear 64 -> 5 -> IAF; integer weights, no bias,
    so float32 (torch) and float64 (simulators) sums are exact and the spikes identical."""
    generator = torch.Generator().manual_seed(4)
    conv0 = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)
    conv1 = nn.Conv2d(4, 4, 2, padding=1, bias=False)
    linear = nn.Linear(64, 5, bias=False)
    for module in (conv0, conv1, linear):
        module.weight.data = torch.randint(-1, 4, module.weight.shape, generator=generator).float()
    blocks = [
        ConvBlock(conv0, IAF(v_th=3.0), nn.Identity(), batch_norm=False, post_pool=SumPool2d(2)),
        ConvBlock(conv1, IAF(v_th=4.0), nn.Identity(), batch_norm=False),
        LinearBlock(linear, IAF(v_th=3.0)),
    ]
    return SpikingNetwork(blocks, (2, 13, 13), MeanRate()).eval()


@pytest.mark.parametrize("backend", [SpeckSimulator(), SinabsBackend(), OnnxBackend()], ids=lambda b: b.name)
def test_analysis_and_simulation_count_the_same_synaptic_ops(backend):
    model = integer_network()
    generator = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 3, (STEPS, BATCH, 2, 13, 13), generator=generator).float()  # counts 0..2
    graph, _ = fold_model(model, [frames], fold_target("speck"), prune=False, rate_match=None)
    assert [layer.op for layer in graph.layers] == ["conv2d", "sumpool2d", "conv2d", "flatten", "linear"]

    measured = measure(model, [(frames[:, b], 0) for b in range(BATCH)], batch_size=BATCH, progress=False)
    trained = {op.name: op for op in model_layer_ops(model, measured)}
    result = backend.run(graph, frames.transpose(0, 1).numpy())
    simulated = graph_layer_ops(graph, result, frames.transpose(0, 1).numpy())

    assert len(simulated) == len(trained) == 3
    for chip in simulated:
        ours = trained[graph.layer(chip.name).source]
        assert chip.output_spikes == ours.output_spikes > 0  # the same spikes
        assert chip.active_neuron_steps == ours.active_neuron_steps
        assert (chip.flops, chip.input_size, chip.neurons) == (ours.flops, ours.input_size, ours.neurons)
        assert chip.input_events == ours.input_events
        assert chip.event_fanout_sum == pytest.approx(ours.event_fanout_sum, rel=1e-12)
    # the first layer reads real-valued frames on the training side (MACs there, SOPs on a chip)
    first, *rest = simulated
    assert synaptic_ops(first) == trained["blocks.0.conv"].event_fanout_sum
    for chip in rest:
        assert synaptic_ops(chip) == pytest.approx(synaptic_ops(trained[graph.layer(chip.name).source]))
    # sum pooling 7x7 -> 3x3 dropped the spikes of row / column 6, and border events reach fewer
    # synapses than the mean fan-out says
    assert rest[0].input_events < first.output_spikes
    assert rest[0].event_fanout_sum < rest[0].input_events * rest[0].flops / rest[0].input_size
