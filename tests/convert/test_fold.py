"""Folding: BN, average pooling, attention gains (algebra and statistics), pruning, refusals."""

import numpy as np
import pytest
import torch
from torch import nn

from asa_snn.chips.speck.mapping import check_speck
from asa_snn.convert.attention_fold import AttentionStats, RateMatch, threshold_for_gain
from asa_snn.convert.bn_fold import avg_to_sum_scale, fold_batch_norm
from asa_snn.convert.fold import channel_spikes, fold_model
from asa_snn.convert.graph import NeuronSpec
from asa_snn.convert.graph_model import GraphModel, make_neuron
from asa_snn.devices import available_devices
from asa_snn.errors import AsaSnnError
from asa_snn.models.blocks import SumPool2d
from asa_snn.models.neurons import CubaLIF
from asa_snn.models.registry import ModelSpec, build_model
from asa_snn.workflows.fold_steps import fold_target


def _frames(batches=2, batch=4, steps=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 3, (steps, batch, 2, size, size), generator=g).float() for _ in range(batches)]


def _speck(attention="asa2", boost=3.0):
    torch.manual_seed(0)
    spec = ModelSpec("speck_net", attention, 4, (2, 16, 16), 3, network_options={"channels": [4, 8]})
    model = build_model(spec).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.conv.weight.mul_(boost)
    return model


def test_batch_norm_fold_matches_conv_and_bn_in_eval_mode():
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    bn.eval()
    x = torch.randn(2, 3, 8, 8)
    weight, bias = fold_batch_norm(conv.weight.detach().numpy(), conv.bias.detach().numpy(), bn)
    folded = nn.functional.conv2d(x.double(), torch.from_numpy(weight), torch.from_numpy(bias), padding=1)
    torch.testing.assert_close(folded.float(), bn(conv(x)).detach(), atol=1e-5, rtol=1e-5)


def test_average_pool_equals_sum_pool_of_scaled_conv():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    x = torch.randn(3, 2, 8, 8)
    scale = avg_to_sum_scale(2)
    assert scale == 0.25
    scaled = nn.functional.conv2d(x, conv.weight * scale, conv.bias * scale, padding=1)
    torch.testing.assert_close(SumPool2d(2)(scaled), nn.AvgPool2d(2)(conv(x)), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("gain", [0.25, 0.5, 2.0])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_gain_on_current_equals_threshold_over_gain_for_iaf(gain, reset):
    x = torch.randint(-2, 5, (12, 3, 40)).float() * 0.25
    spec = NeuronSpec("iaf", 1.0, reset=reset, min_v=-0.5)
    scaled = make_neuron(spec, "a")(gain * x)
    moved = make_neuron(threshold_for_gain(spec, gain), "a")(x)
    assert scaled.sum() > 10
    torch.testing.assert_close(scaled, moved, atol=0, rtol=0)


@pytest.mark.parametrize("gain", [0.5, 4.0])
def test_gain_on_current_equals_threshold_over_gain_for_cuba(gain):
    x = torch.randint(0, 4, (16, 2, 30)).float() * 0.5
    bias = 0.25
    scaled = CubaLIF(du=0.5, dv=0.25, v_th=1.0, bias=bias * gain)(gain * x)
    spec = threshold_for_gain(NeuronSpec("cuba", 1.0, reset="zero", du=0.5, dv=0.25), gain)
    moved = CubaLIF(du=0.5, dv=0.25, v_th=spec.threshold, bias=bias)(x)
    assert scaled.sum() > 10
    torch.testing.assert_close(scaled, moved, atol=0, rtol=0)


def test_least_squares_gain_and_kept_fraction_by_hand():
    stats = AttentionStats.empty((2, 1, 2))
    x = torch.tensor([[1.0, 2.0], [1.0, -1.0]]).reshape(1, 1, 2, 1, 2)
    y = x * torch.tensor([0.5, 0.0]).reshape(1, 1, 2, 1, 1)
    y[0, 0, 0, 0, 1] = 0.0  # channel 0: Y = (0.5, 0) for X = (1, 2)
    stats.add(x, y)
    gains = stats.channel_gains()
    np.testing.assert_allclose(gains, [0.5 / 5, 0.0])
    # effect: ch0 (0.5-1)^2 + (0-2)^2 = 4.25, ch1 1 + 1 = 2; residual ch0 (0.5-0.1)^2 + (0.2)^2 = 0.2
    assert stats.kept_fraction(gains) == pytest.approx(1 - 0.2 / 6.25)
    assert stats.kept_fraction(stats.neuron_gains()) == pytest.approx(1.0)


def test_attention_fold_keeps_shapes_and_reports_kept_fraction():
    model = _speck()
    graph, report = fold_model(model, _frames(), fold_target("speck"), prune=False)
    assert [layer.output_shape for layer in graph.layers] == [
        (4, 16, 16),
        (4, 8, 8),
        (8, 8, 8),
        (8, 4, 4),
        (3, 1, 1),
    ]
    assert [f.attention for f in report.layers] == ["AdvancedSpatialAttention"] * 2 + ["none"]
    for fold in report.layers[:2]:
        assert 0.0 < fold.kept_fraction <= fold.kept_fraction_map <= 1.0
        assert 0.0 <= fold.gain_min <= fold.gain_mean <= fold.gain_max <= 1.0
    assert not any("gain_map" in layer.tensors for layer in graph.layers)
    assert check_speck(graph).ok
    generic, _ = fold_model(model, _frames(), fold_target("generic"), prune=False)
    assert generic.layers[0].tensors["gain_map"].shape == (4, 16, 16)
    assert not check_speck(generic).ok


def test_pruned_graph_gives_the_same_spikes_on_calibration_data():
    model = _speck("none")
    with torch.no_grad():
        model.blocks[0].conv.weight[1] = 0.0
        model.blocks[1].conv.weight[5] = 0.0
    frames = _frames()
    full, _ = fold_model(model, frames, fold_target("speck"), prune=False)
    pruned, report = fold_model(model, frames, fold_target("speck"))
    assert report.layers[0].pruned == [1] and 5 in report.layers[1].pruned
    assert (
        pruned.layers[0].tensors["weight"].shape[0] == 3 and pruned.layers[2].tensors["weight"].shape[1] == 3
    )
    for batch in frames:
        with torch.no_grad():
            a, b = GraphModel(full).run(batch), GraphModel(pruned).run(batch)
        torch.testing.assert_close(a.scores, b.scores, atol=0, rtol=0)
        for name, spikes in a.channel_spikes.items():
            assert float(spikes.sum()) == float(b.channel_spikes[name].sum())
        assert float(a.channel_spikes["conv0"][:, 0].sum() + a.channel_spikes["conv0"][:, 2:].sum()) > 0


def test_refusals_name_the_block_and_reason():
    arch_b = build_model(
        ModelSpec(
            "arch_b",
            "none",
            4,
            (2, 32, 32),
            2,
            neuron="lif",
            network_options={"channels": 4, "hidden": 8, "vote": 2},
        )
    )
    with pytest.raises(AsaSnnError, match=r"blocks\.1.*max pooling"):
        fold_model(arch_b, [torch.zeros(4, 1, 2, 32, 32)], fold_target("generic"))
    lif = build_model(ModelSpec("speck_net", "none", 4, (2, 16, 16), 3, neuron="lif"))
    with pytest.raises(AsaSnnError, match=r"blocks\.0.*'lif'.*approximate=True"):
        fold_model(lif, _frames(1), fold_target("speck"))
    with pytest.warns(UserWarning, match="leaky LIF"):
        graph, report = fold_model(lif, _frames(1), fold_target("speck"), approximate=True)
    assert graph.layers[0].neuron.kind == "iaf" and "accuracy drops" in report.notes[0]
    with pytest.raises(AsaSnnError, match="target 'loihi'"):
        fold_model(_speck(), _frames(1), fold_target("loihi"))
    with pytest.raises(AsaSnnError, match="no calibration frames"):
        fold_model(_speck(), [], fold_target("speck"))


def test_rate_match_bisection_finds_the_step_of_a_monotone_count_by_hand():
    # count(s) = floor(100 s): target 37 is reached exactly for s in [0.37, 0.38)
    scale, count = RateMatch(rel_tol=0.0).solve(lambda s: float(np.floor(100 * s)), 37.0)
    assert count == 37.0 and 0.37 <= scale < 0.38
    # under-firing: doubling brackets s = 3.0 (count 300), then bisection settles on [2.5, 2.51)
    scale, count = RateMatch(rel_tol=0.0).solve(lambda s: float(np.floor(100 * s)), 250.0)
    assert count == 250.0 and 2.5 <= scale < 2.51
    assert RateMatch().solve(lambda s: 10 * s, 0.0) == (1.0, 10.0)


def test_rate_matching_brings_an_over_firing_fold_to_the_live_spike_count():
    model, frames = _speck(boost=5.0), _frames()
    plain, plain_report = fold_model(model, frames, fold_target("speck"), prune=False, rate_match=None)
    graph, report = fold_model(
        model, frames, fold_target("speck"), prune=False, rate_match=RateMatch(rel_tol=0.002)
    )
    conv1 = report.layers[1]
    assert plain_report.layers[1].spikes_folded > 1.04 * conv1.spikes_live  # the static fold over-fires
    assert conv1.rate_spikes_before == pytest.approx(plain_report.layers[1].spikes_folded, rel=0.05)
    assert conv1.rate_scale < 1.0
    for fold in report.layers[:2]:
        assert abs(fold.spikes_folded - fold.spikes_live) <= 0.01 * fold.spikes_live
        assert fold.rate_spikes_after == fold.spikes_folded  # threshold search == weights folded
    assert report.layers[2].rate_scale == 1.0 and report.layers[2].rate_spikes_before is None
    samples = sum(int(f.shape[1]) for f in frames)
    counts = channel_spikes(graph, frames)
    assert float(counts["conv1"].sum()) / samples == conv1.spikes_folded
    for index, fold in ((0, report.layers[0]), (2, conv1)):
        np.testing.assert_allclose(
            graph.layers[index].tensors["weight"], plain.layers[index].tensors["weight"] * fold.rate_scale
        )
    assert graph.provenance["fold"]["rate_match"] == {
        "conv0": report.layers[0].rate_scale,
        "conv1": conv1.rate_scale,
    }
    assert any("rate matching" in note and "'conv1'" in note for note in report.notes)


@pytest.mark.parametrize("device", available_devices(), ids=str)
def test_calibration_on_a_device_folds_what_the_cpu_folds_and_leaves_the_model_where_it_was(device):
    model = _speck()
    cpu_graph, _ = fold_model(model, _frames(), fold_target("speck"), prune=False)
    graph, _ = fold_model(model, _frames(), fold_target("speck"), prune=False, device=device)
    assert next(model.parameters()).device == torch.device("cpu")
    for ours, reference in zip(graph.layers, cpu_graph.layers, strict=True):
        assert ours.neuron == reference.neuron
        for key, tensor in reference.tensors.items():
            np.testing.assert_allclose(ours.tensors[key], tensor, rtol=1e-5, atol=1e-6)
