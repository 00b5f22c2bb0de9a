"""The foldability penalty: R of a static gain is 0, of a spatial map is what no gain explains."""

import math

import pytest
import torch

from asa_snn.errors import AsaSnnError
from asa_snn.models.attention import make_attention
from asa_snn.models.registry import ModelSpec, build_model
from asa_snn.train import load_config, train
from asa_snn.train.foldability import FoldabilityPenalty, attention_modules, static_gain_residual


def test_a_per_channel_gain_leaves_nothing_and_a_map_leaves_its_spread():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 5, 6, 6, dtype=torch.float64)
    gains = torch.rand(5, dtype=torch.float64)[None, None, :, None, None]
    assert float(static_gain_residual(x, gains * x)) == pytest.approx(0.0, abs=1e-12)
    # Y = X * m with a map m over (h, w): the best gain per channel is the least-squares
    # average of m, and R is the squared error left, as a share of sum Y^2
    m = torch.rand(6, 6, dtype=torch.float64)
    y = x * m
    expected = 0.0
    for c in range(5):
        xc, yc = x[:, :, c], y[:, :, c]
        g = float((xc * yc).sum() / (xc * xc).sum())
        expected += float(((yc - g * xc) ** 2).sum())
    assert float(static_gain_residual(x, y)) == pytest.approx(expected / float((y * y).sum()), rel=1e-10)
    assert float(static_gain_residual(torch.zeros_like(x), torch.zeros_like(x))) == 0.0
    # the fold clips gains at 0 (an attention never flips its input's sign): Y = -X is all residual
    assert float(static_gain_residual(x, -x)) == pytest.approx(1.0)
    # a channel with no input and some output cannot be reproduced by any gain
    x[:, :, 0] = 0.0
    y = x.clone()
    y[:, :, 0] = 1.0
    assert float(static_gain_residual(x, y)) == pytest.approx(float((y[:, :, 0] ** 2).sum() / (y * y).sum()))


def test_the_penalty_is_differentiable_and_lowers_when_followed():
    torch.manual_seed(1)
    attention = make_attention("asa2", 8, 4).double()
    x = torch.rand(4, 2, 8, 5, 5, dtype=torch.float64)
    before = static_gain_residual(x, attention(x))
    before.backward()
    grads = [p.grad for p in attention.parameters() if p.grad is not None]
    assert before > 0 and grads and any(float(g.abs().sum()) > 0 for g in grads)
    optimizer = torch.optim.SGD(attention.parameters(), lr=5.0)
    for _ in range(30):
        optimizer.zero_grad()
        static_gain_residual(x, attention(x)).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(static_gain_residual(x, attention(x))) < 0.5 * float(before)


def test_the_penalty_collects_training_passes_of_every_attention_layer():
    spec = ModelSpec("speck_net", "asa2", 4, (2, 16, 16), 3, network_options={"channels": [4, 8]})
    model = build_model(spec)
    assert len(attention_modules(model)) == 2
    assert attention_modules(build_model(ModelSpec("speck_net", "none", 4, (2, 16, 16), 3))) == []
    x = (torch.rand(4, 2, 2, 16, 16) < 0.3).float()
    with FoldabilityPenalty(model) as penalty:
        model.train()
        model(x)
        assert len(penalty._residuals) == 2
        taken = penalty.take()
        assert 0 < float(taken.detach()) <= 1 and penalty.take() == 0
        model.eval()
        model(x)
        assert penalty._residuals == []
    assert all(not m._forward_hooks for m in attention_modules(model))


def test_training_with_the_penalty_reports_and_lowers_the_residual(tiny_config_file, tmp_path):
    base = ["train.epochs=2", "model.attention=asa2"]
    plain = train(load_config(tiny_config_file, base), tmp_path / "plain", progress=False)
    assert "train_static_residual" not in plain.history[0]
    pulled = train(
        load_config(tiny_config_file, [*base, "train.foldability=50"]), tmp_path / "pulled", progress=False
    )
    residuals = [epoch["train_static_residual"] for epoch in pulled.history]
    assert all(0 < r < 1 and math.isfinite(r) for r in residuals)
    assert residuals[-1] < residuals[0]
    assert pulled.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def test_a_negative_weight_and_a_model_without_attention_are_refused(tiny_config_file):
    with pytest.raises(AsaSnnError, match=r"'train\.foldability' is -1\.0; expected .* 0 <= value"):
        load_config(tiny_config_file, ["train.foldability=-1"])
    with pytest.raises(AsaSnnError, match=r"'train\.foldability' is 1 but model\.attention is 'none'"):
        load_config(tiny_config_file, ["train.foldability=1"])
