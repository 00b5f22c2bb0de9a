"""Energy presets and Eq. 11 on hand-computed operation counts, and synaptic-op counts against sinabs."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from asa_snn.analysis.operations import model_layer_ops
from asa_snn.analysis.recorder import measure
from asa_snn.chips.loihi.energy import LOIHI_ENERGY
from asa_snn.chips.registry import energy_presets
from asa_snn.chips.speck.energy import SPECK_ENERGY
from asa_snn.energy.model import LayerOps, energy, energy_difference, mac_ops, synaptic_ops
from asa_snn.errors import AsaSnnError
from asa_snn.models.blocks import ConvBlock, LinearBlock
from asa_snn.models.networks import MeanRate, SpikingNetwork
from asa_snn.models.neurons import IAF

FIRST = LayerOps(
    "l1",
    "conv",
    flops=100,
    input_size=10,
    input_events=5,
    input_is_spiking=False,
    timesteps=2,
    neurons=3,
    active_neuron_steps=2,
    output_spikes=2,
)
SECOND = LayerOps("l2", "linear", flops=50, input_size=10, input_events=4, timesteps=2, neurons=1)
ATTENTION = LayerOps("att", "attention", timesteps=2, attention_macs=30)


def test_operation_counts():
    assert mac_ops(FIRST) == 200 and synaptic_ops(FIRST) == 0  # real-valued input: T * FLOPs MACs
    assert synaptic_ops(SECOND) == 20 and mac_ops(SECOND) == 0  # 4 events * 50 / 10 mean fan-out
    assert (
        synaptic_ops(LayerOps("x", "conv", flops=50, input_size=10, input_events=4, event_fanout_sum=7)) == 7
    )
    assert mac_ops(ATTENTION) == 30


@pytest.mark.parametrize(
    ("preset", "expected_j"),
    [
        ("fp32_45nm", (4.6 * 230 + 0.9 * 20) * 1e-12),
        ("int8_45nm", (0.23 * 230 + 0.03 * 20) * 1e-12),
        # synops (200 + 20 + 30) * 23.6; l1: 2 active * 81 + 4 inactive * 52; l2: 2 inactive * 52
        ("loihi", (250 * 23.6 + 2 * 81 + 4 * 52 + 2 * 52) * 1e-12),
        ("speck", 2 * 9.5e-9),  # 2 output spikes, 9.5 nJ each, no duration
    ],
)
def test_presets_on_hand_counts(preset, expected_j):
    report = energy([FIRST, SECOND, ATTENTION], energy_presets()[preset])
    assert report.total_j == pytest.approx(expected_j)
    assert sum(report.layer_total_j.values()) == pytest.approx(expected_j)


def test_speck_resting_power_needs_the_duration():
    assert "duration unknown" in energy([FIRST], SPECK_ENERGY).note
    assert energy([FIRST], SPECK_ENERGY, duration_s=0.1).total_j == pytest.approx(0.42e-3 * 0.1 + 2 * 9.5e-9)


def test_eq_11_energy_difference():
    asa_second = LayerOps("l2", "linear", flops=50, input_size=10, input_events=2, timesteps=2, neurons=1)
    diff = energy_difference([FIRST, SECOND], [FIRST, asa_second, ATTENTION], "fp32_45nm")
    assert diff.delta_mac == 30 and diff.delta_ac == 10  # 20 - 10 saved SOPs
    assert diff.mac_cost_j == pytest.approx(138e-12) and diff.ac_saving_j == pytest.approx(9e-12)
    assert diff.delta_e_j == pytest.approx(129e-12)
    with pytest.raises(AsaSnnError, match="loihi"):
        energy_difference([FIRST], [FIRST], LOIHI_ENERGY)
    with pytest.raises(AsaSnnError, match="fp32_45nm"):
        energy([FIRST], "fp64")


def test_bad_layer_ops_are_rejected():
    with pytest.raises(AsaSnnError, match="kind"):
        LayerOps("x", "dense")
    with pytest.raises(AsaSnnError, match="input_events"):
        LayerOps("x", "conv", input_events=-1)


STEPS, BATCH = 5, 3


@pytest.fixture
def sinabs_pair():
    """The same three layers as our network and as a sinabs Sequential (sharing the modules), and
    spikes [T, B, 2, 8, 8]; weights are multiples of 0.25, so every sum is exact in float32."""
    sinabs_layers = pytest.importorskip("sinabs.layers")
    from sinabs.activation import SingleSpike

    generator = torch.Generator().manual_seed(0)

    def weight(*shape):
        return torch.randint(-3, 6, shape, generator=generator).float() * 0.25

    conv1 = nn.Conv2d(2, 4, 3, padding=1, bias=False)
    # strided, padded, dilated and grouped: 8x8 -> (8 + 4 - 4 - 1) // 2 + 1 = 4x4
    conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False)
    linear = nn.Linear(6 * 4 * 4, 5, bias=False)
    for module in (conv1, conv2, linear):
        module.weight.data = weight(*module.weight.shape)
    ours = SpikingNetwork(
        [
            ConvBlock(conv1, IAF(v_th=1.0), nn.Identity(), batch_norm=False),
            ConvBlock(conv2, IAF(v_th=1.0), nn.Identity(), batch_norm=False),
            LinearBlock(linear, IAF(v_th=1.0)),
        ],
        (2, 8, 8),
        MeanRate(),
    )

    def squeeze_iaf():
        return sinabs_layers.IAFSqueeze(batch_size=BATCH, spike_fn=SingleSpike)

    theirs = nn.Sequential(conv1, squeeze_iaf(), conv2, squeeze_iaf(), nn.Flatten(), linear, squeeze_iaf())
    spikes = (torch.rand((STEPS, BATCH, 2, 8, 8), generator=generator) < 0.3).float()  # [T, B, C, H, W]
    return ours, theirs, spikes


def _run_both(ours, theirs, spikes):
    """Run sinabs on [B*T, ...] (batch major) and measure ours; check the spikes agree; our ops."""
    with torch.no_grad():
        out = theirs(spikes.transpose(0, 1).reshape(BATCH * STEPS, 2, 8, 8))
    dataset = [(spikes[:, b], 0) for b in range(BATCH)]
    ops = model_layer_ops(ours, measure(ours, dataset, batch_size=BATCH, progress=False))
    with torch.no_grad():
        ours_out = ours.blocks[2](ours.blocks[1](ours.blocks[0](spikes)))
    np.testing.assert_array_equal(out.reshape(BATCH, STEPS, 5).transpose(0, 1).numpy(), ours_out.numpy())
    assert out.sum() > 0
    return ops


def test_synops_agree_with_sinabs_hooks(sinabs_pair):
    """sinabs' current synaptic-operation counters (``sinabs.hooks``, which replace the deprecated
    ``SNNAnalyzer``): per step and sample, times T, equal our boundary-exact per-sample count."""
    from sinabs.hooks import register_synops_hooks

    ours, theirs, spikes = sinabs_pair
    register_synops_hooks(theirs)
    ops = _run_both(ours, theirs, spikes)
    per_step = theirs.hook_data["synops_per_timestep"]  # Sequential index -> mean over B*T frames
    assert sorted(per_step) == [0, 2, 5]
    sinabs_synops = [float(per_step[index]) * STEPS for index in (0, 2, 5)]

    exact = [op.event_fanout_sum for op in ops]
    np.testing.assert_allclose(exact, sinabs_synops, rtol=1e-6)
    assert float(theirs.hook_data["total_synops_per_timestep"]) * STEPS == pytest.approx(sum(exact))
    assert min(exact) > 0 and [op.input_is_spiking for op in ops] == [False, True, True]
    assert ops[1].flops == 3 * 3 * 4 * 4 * (4 // 2) * 6  # k^2 H_out W_out C_in / groups C_out
    # the mean-fan-out form counts a border event as if it reached all k^2 * C_out / groups synapses
    dense_form = ops[1].input_events * ops[1].flops / ops[1].input_size
    assert dense_form > ops[1].event_fanout_sum
    assert ops[2].event_fanout_sum == pytest.approx(ops[2].input_events * 5)


def test_synops_agree_with_the_deprecated_snn_analyzer(sinabs_pair):
    """The same comparison through ``SNNAnalyzer``, kept only while the installed sinabs ships it."""
    import sinabs

    analyzer_class = getattr(sinabs, "SNNAnalyzer", None)
    if analyzer_class is None:
        pytest.skip(f"sinabs {getattr(sinabs, '__version__', '?')} no longer ships SNNAnalyzer")
    ours, theirs, spikes = sinabs_pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        analyzer = analyzer_class(theirs)
    ops = _run_both(ours, theirs, spikes)
    sinabs_synops = {
        name: float(v["synops"]) for name, v in analyzer.get_layer_statistics()["parameter"].items()
    }
    exact = [op.event_fanout_sum for op in ops]
    np.testing.assert_allclose(exact, [sinabs_synops["0"], sinabs_synops["2"], sinabs_synops["5"]], rtol=1e-6)
