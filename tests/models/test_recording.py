"""The one spike counter and the released code's NASFR: hand-counted spikes of a tiny model, hooks
removed after an error, and one NASFR from training, the fold and the analysis on the same data."""

import pytest
import torch
from torch import Tensor, nn

from asa_snn.analysis import firing
from asa_snn.analysis.recorder import measure
from asa_snn.convert.fold import GENERIC_TARGET, fold_model
from asa_snn.convert.measure import measure_live, nasfr_of
from asa_snn.errors import AsaSnnError
from asa_snn.models.recording import SpikingNeuron, count_spikes, released_nasfr
from asa_snn.models.registry import ModelSpec, build_model
from asa_snn.train.metrics import MseRate, evaluate


class Floor(SpikingNeuron):
    """Stateless multi-spike neuron: emits floor(max(x, 0)) spikes per step."""

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.finish(torch.floor(x.clamp(min=0)), x)


class TwoLayers(nn.Module):
    """``a`` on x [T, B, 2, 1, 2] (4 neurons); ``b`` on half of x summed over H, W, [T, B, 2] (2 neurons)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = Floor()
        self.b = Floor()

    def forward(self, x: Tensor) -> Tensor:
        self.a(x)
        return self.b(x.sum((3, 4)) / 2)


# T = 2 steps, B = 2 samples, [T, B, C=2, H=1, W=2].
X = torch.tensor(
    [
        [[[[1.0, 0.0]], [[0.0, 0.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]],  # t = 0: a 1 + 0 spikes; b 0 + 0
        [[[[1.0, 1.0]], [[2.0, 0.0]]], [[[3.0, 0.0]], [[0.0, 1.0]]]],  # t = 1: a 4 + 4 spikes; b 2 + 1
    ]
)
# b's input at t = 1: sample 0 (2 / 2, 2 / 2) -> 1 + 1 spikes; sample 1 (3 / 2, 1 / 2) -> 1 spike.
A_SPIKES, B_SPIKES = 9.0, 3.0


def test_counter_sums_spikes_neurons_steps_and_samples_per_layer():
    model = TwoLayers()
    with count_spikes(model) as counts:
        model(X)
        model(X[:, :1])  # sample 0 again: a 1 + 4, b 2
    assert list(counts.layers) == ["a", "b"]
    assert counts.spikes == {"a": A_SPIKES + 5.0, "b": B_SPIKES + 2.0}
    assert counts.neurons == {"a": 4, "b": 2}
    assert counts.steps == 2 and counts.samples == 3
    assert counts.per_sample() == {"a": 14.0 / 3, "b": 5.0 / 3}
    # 19 spikes / ((4 + 2) neurons x 2 steps x 3 samples)
    assert counts.nasfr == pytest.approx(19 / 36)
    assert counts.nasfr == released_nasfr(counts.spikes, counts.neurons, 2, 3)
    # the same as per-sample means with samples = 1 (the fold's stages)
    assert nasfr_of(counts.per_sample(), counts.neurons, 2) == pytest.approx(19 / 36)


def test_counter_takes_a_name_to_module_mapping():
    model = TwoLayers()
    with count_spikes(model, {"first": model.a}) as counts:
        model(X)
    assert counts.spikes == {"first": A_SPIKES}
    assert counts.neurons == {"first": 4}
    assert counts.nasfr == pytest.approx(9 / (4 * 2 * 2))


def test_layers_that_never_ran_count_nothing():
    model = TwoLayers()
    with count_spikes(model) as counts:
        pass
    assert counts.spikes == {"a": 0.0, "b": 0.0}
    assert counts.neurons == {} and counts.steps == 0 and counts.samples == 0
    assert counts.per_sample() == {"a": 0.0, "b": 0.0}
    assert counts.nasfr == 0.0


def test_hooks_are_removed_on_exit_and_after_an_exception():
    model = TwoLayers()
    with pytest.raises(RuntimeError, match="boom"), count_spikes(model) as counts:
        model(X)
        raise RuntimeError("boom")
    assert not model.a._forward_hooks and not model.b._forward_hooks
    model(X)
    assert counts.spikes == {"a": A_SPIKES, "b": B_SPIKES}
    with count_spikes(model):
        pass
    assert not model.a._forward_hooks and not model.b._forward_hooks


def test_counter_refuses_what_has_no_single_nasfr():
    with pytest.raises(AsaSnnError, match="Linear has no spiking layer"), count_spikes(nn.Linear(2, 2)):
        pass
    model = TwoLayers()
    with pytest.raises(AsaSnnError, match="layer 'a' output T=3 steps"), count_spikes(model):
        model(X)
        model(torch.zeros(3, 1, 2, 1, 2))
    assert not model.a._forward_hooks


def test_released_nasfr_by_hand():
    # 6 spikes / ((3 + 1) neurons x 5 steps x 2 samples); a layer missing from spikes counts as silent
    assert released_nasfr({"a": 6.0}, {"a": 3, "b": 1}, 5, 2) == pytest.approx(6 / 40)
    assert released_nasfr({}, {}, 5, 2) == 0.0


def _speck_model() -> nn.Module:
    torch.manual_seed(0)
    spec = ModelSpec("speck_net", "asa2", 4, (2, 16, 16), 3, network_options={"channels": [4, 8]})
    model = build_model(spec).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.conv.weight.mul_(3.0)
    return model


def test_trainer_fold_and_analysis_agree_on_nasfr():
    model = _speck_model()
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 3, (6, 4, 2, 16, 16), generator=g).float()  # [N, T, C, H, W]
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    batches = [(frames[:4], labels[:4]), (frames[4:], labels[4:])]  # ([B, T, C, H, W], [B])

    trained = evaluate(model, batches, MseRate())
    calibration = [b.transpose(0, 1).contiguous() for b, _ in batches]  # [T, B, C, H, W]
    _, report = fold_model(model, calibration, GENERIC_TARGET, prune=False)
    layers = [fold.layer for fold in report.layers]
    stage1, neurons = measure_live("1 live attention", model, layers, batches)
    measured = measure(model, list(zip(frames, labels, strict=True)), batch_size=4, progress=False)
    analysed = firing.nasfr_released([s.spikes for s in measured.layers.values()], measured.n_samples)

    assert 0 < trained.nasfr < 1
    assert stage1.nasfr == pytest.approx(trained.nasfr, rel=1e-12)
    assert analysed == pytest.approx(trained.nasfr, rel=1e-12)
    assert len(measured.layers) == len(layers) == len(neurons)
    # the fold's own live count on the same data gives the same spikes per sample
    for fold in report.layers:
        assert fold.spikes_live == pytest.approx(stage1.layer_spikes[fold.layer], rel=1e-12)
