"""Tests of asa_snn.models.attention: parameter counts, masks, per-sample behaviour, gradients, MACs."""

from __future__ import annotations

import pytest
import torch

from asa_snn.errors import AsaSnnError
from asa_snn.models.attention import (
    ATTENTION_KINDS,
    AdvancedSpatialAttention,
    batch_union_masks,
    make_attention,
    separation_masks,
)
from asa_snn.models.attention.asa import straight_through_topk_mask

T_PAPER = 60
LAYERS = [(64, 32, 32), (128, 16, 16), (128, 8, 8)]
"""(C, H, W) at the three attention slots of the paper's 3-layer net (after the avg-pools)."""

# Importance I[t, c] of one sample, T = 2, C = 4, lambda = 0.5 (k_c = 2, k_t = 1):
#   mask_c (top-2 channels per step): t0 -> c0, c2; t1 -> c1, c0
#   mask_t (top-1 step per channel):  c0 -> t0, c1 -> t1, c2 -> t0, c3 -> t0
#   M1 = mask_c XOR mask_t
IMPORTANCE_A = [[4.0, 1.0, 3.0, 2.0], [3.0, 5.0, 1.0, 0.0]]
M1_A = [[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]
# A batch mate with the same step selections but other channel selections: mask_c t0 -> c0, c1;
# t1 -> c1, c0; mask_t c0 -> t0, c1 -> t1, c2 -> t0, c3 -> t0.
IMPORTANCE_B = [[5.0, 4.0, 1.0, 3.0], [4.0, 6.0, 0.0, 2.0]]
# Union over {A, B}: mask_c = [[1,1,1,0],[1,1,0,0]]; mask_t = [[1,0,1,1],[0,1,0,0]];
# XOR = [[0,1,0,1],[1,0,0,0]]: entry (t0, c1) turns important for sample A.
M1_UNION = [[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def constant_maps(importance: list[list[list[float]]], size: int = 3) -> torch.Tensor:
    """X [T, B, C, size, size] constant over space with X[t, b, c] = importance[b][t][c] / 2,
    so F_avg = F_max = X[t, b, c] and (at init) F_add = 2 X = importance."""
    values = torch.tensor(importance).transpose(0, 1) / 2.0
    return values[..., None, None].expand(-1, -1, -1, size, size).contiguous()


# --- parameter counts (FACTS.md section 1, paper Table 3) -------------------------------------------


@pytest.mark.parametrize(
    ("kind", "c64", "c128"),
    [
        ("none", 0, 0),
        ("sa", 98, 98),
        ("tcsa", 1800 + 2048 + 98, 1800 + 8192 + 98),
        ("asa1", 3638, 3638),
        ("asa2", 38, 38),
        ("asa_reference", 3638, 3638),
    ],
)
def test_parameter_count_per_layer(kind: str, c64: int, c128: int) -> None:
    assert n_params(make_attention(kind, 64, T_PAPER)) == c64
    assert n_params(make_attention(kind, 128, T_PAPER)) == c128


@pytest.mark.parametrize(("kind", "total"), [("sa", 294), ("tcsa", 24_126), ("asa1", 10_914), ("asa2", 114)])
def test_parameter_count_three_layer_net_matches_table3(kind: str, total: int) -> None:
    assert sum(n_params(make_attention(kind, c, T_PAPER)) for c, _, _ in LAYERS) == total


def test_asa1_reduction_four_as_released_recipes() -> None:
    assert n_params(make_attention("asa1", 64, T_PAPER, reduction=4)) == 38 + 2 * 60 * 15


# --- MACs ---------------------------------------------------------------------------------------------


def three_layer_macs(kind: str) -> int:
    return sum(make_attention(kind, c, T_PAPER).extra_macs(T_PAPER, c, h, w) for c, h, w in LAYERS)


def test_sa_macs_reproduce_paper_value() -> None:
    # 98 * H*W * T (7x7 conv per step) + T*C*H*W (scaling), summed: the paper's +14.3M.
    assert three_layer_macs("sa") == 14_292_480


def test_asa_macs_follow_counting_rule() -> None:
    scaling = sum(T_PAPER * c * h * w for c, h, w in LAYERS)
    convs = sum(2 * 18 * h * w for _, h, w in LAYERS)
    f_add = sum(2 * T_PAPER * c for c, _, _ in LAYERS)
    fc = sum(c * 2 * T_PAPER * 30 for c, _, _ in LAYERS)
    assert three_layer_macs("asa2") == scaling + convs + f_add == 6_476_544
    assert three_layer_macs("asa1") == scaling + convs + f_add + fc == 7_628_544
    assert three_layer_macs("none") == 0


def test_macs_of_one_small_module_counted_by_hand() -> None:
    # T = 4 steps, C = 2 channels, 3 x 3 maps.
    # SA: one 7x7 2->1 conv per step at 9 pixels (4 * 98 * 9 = 3528) + re-weighting 4 * 2 * 9 = 72.
    assert make_attention("sa", 2, 4).extra_macs(4, 2, 3, 3) == 3528 + 72
    # ASA-2: F_add weights 2 * 4 * 2 = 16, two 3x3 2->1 convs once per sample 2 * 18 * 9 = 324,
    # re-weighting 72; pooling, sigmoid, top-k and the 0/1 masks are not counted.
    assert make_attention("asa2", 2, 4).extra_macs(4, 2, 3, 3) == 16 + 324 + 72
    # ASA-1 adds the time FC 4 -> 2 -> 4 on each channel: 2 * (4 * 2 + 2 * 4) = 32.
    assert make_attention("asa1", 2, 4).extra_macs(4, 2, 3, 3) == 16 + 324 + 72 + 32


def test_tcsa_macs_follow_counting_rule() -> None:
    c, h, w = LAYERS[0]
    expected = 2 * 2 * 60 * 15 + 60 * 2 * 2 * c * 16 + 60 * 98 * h * w + 3 * 60 * c * h * w
    assert make_attention("tcsa", c, T_PAPER).extra_macs(60, c, h, w) == expected


# --- masks --------------------------------------------------------------------------------------------


def test_separation_masks_hand_computed() -> None:
    m1, m2 = separation_masks(torch.tensor([IMPORTANCE_A]), 0.5)
    assert torch.equal(m1, torch.tensor([M1_A]))
    assert torch.equal(m2, 1.0 - torch.tensor([M1_A]))


def test_straight_through_masks_equal_hard_masks_in_forward() -> None:
    importance = torch.tensor([IMPORTANCE_A, IMPORTANCE_B], requires_grad=True)
    m1_hard, _ = separation_masks(importance, 0.5)
    m1_st, _ = separation_masks(
        importance, 0.5, lambda s, k, d: straight_through_topk_mask(s, k, d, temperature=1.0)
    )
    assert torch.equal(m1_st.detach(), m1_hard)
    m1_st.sum().backward()
    assert importance.grad is not None and importance.grad.abs().sum() > 0


@pytest.mark.parametrize("scores", [[0.5, 3.0, -1.0, 2.0, 2.0, 7.0], [1.0, 2.0, 2.0, 2.0, 0.0, 2.0]])
def test_straight_through_gradient_is_the_sigmoid_slope_at_the_midpoint(scores: list[float]) -> None:
    """dM/dI = S (1 - S) / (tau s), S = sigmoid((I - theta) / (tau s)), theta the midpoint of the
    k-th and (k+1)-th largest score, s the standard deviation (n - 1), by hand, ties included."""
    k, tau = 3, 0.7
    values = torch.tensor([scores, scores[::-1]], dtype=torch.float64, requires_grad=True)
    mask = straight_through_topk_mask(values, k, 1, temperature=tau)
    mask.sum().backward()
    for row, grad in zip(values.detach(), values.grad, strict=True):
        ranked = sorted(row.tolist(), reverse=True)
        theta = 0.5 * (ranked[k - 1] + ranked[k])
        mean = sum(ranked) / len(ranked)
        spread = (sum((v - mean) ** 2 for v in ranked) / (len(ranked) - 1)) ** 0.5
        soft = torch.sigmoid((row - theta) / (tau * spread))
        torch.testing.assert_close(grad, soft * (1 - soft) / (tau * spread), rtol=1e-12, atol=1e-15)
    assert mask.detach().sum(dim=1).tolist() == [k, k]


def test_batch_union_masks_hand_computed() -> None:
    m1, m2 = batch_union_masks(torch.tensor([IMPORTANCE_A, IMPORTANCE_B]), 0.5)
    expected = torch.tensor([M1_UNION, M1_UNION])
    assert torch.equal(m1, expected)
    assert torch.equal(m2, 1.0 - expected)


def test_module_masks_from_constant_maps_use_f_add() -> None:
    module = make_attention("asa2", 4, 2)
    m1, _ = module.masks(constant_maps([IMPORTANCE_A]))
    assert torch.equal(m1.detach(), torch.tensor([M1_A]))


# --- forward behaviour --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shape_and_batch_size_one(kind: str, batch: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(8, batch, 8, 6, 5)
    y = make_attention(kind, 8, 8)(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_none_is_identity() -> None:
    x = torch.randn(4, 2, 3, 5, 5)
    assert make_attention("none", 3, 4)(x) is x


@pytest.mark.parametrize(("kind", "factor"), [("sa", 0.5), ("tcsa", 0.125), ("asa1", 0.5), ("asa2", 0.5)])
def test_zero_weights_give_half_sigmoid_scaling(kind: str, factor: float) -> None:
    # With every conv / FC weight 0, each sigmoid gate is 0.5: Y = 0.5 X per gate (ASA: A1 = A2 = 0.5,
    # and M1 + M2 = 1).
    module = make_attention(kind, 8, 8)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name not in ("alpha", "beta"):
                p.zero_()
    x = torch.randn(8, 2, 8, 4, 4)
    torch.testing.assert_close(module(x), factor * x, rtol=0, atol=1e-6)


def test_sa_map_from_hand_set_kernel() -> None:
    # Kernel: 1 at the centre of the max plane only, so A[t, b] = sigmoid(max_c X[t, b]).
    module = make_attention("sa", 3, 2)
    with torch.no_grad():
        module.spatial_map.conv.weight.zero_()
        module.spatial_map.conv.weight[0, 1, 3, 3] = 1.0
    x = torch.randn(2, 2, 3, 4, 4)
    expected = torch.sigmoid(x.amax(dim=2, keepdim=True)) * x
    torch.testing.assert_close(module(x), expected)


def test_asa_group_maps_from_hand_set_kernel() -> None:
    # Kernel: 1 at the centre of the mean plane only, so A_g = sigmoid(mean_{t,c}(X M_g) / divisor).
    module = make_attention("asa2", 4, 2)
    for spatial_map in (module.important_map, module.subimportant_map):
        with torch.no_grad():
            spatial_map.conv.weight.zero_()
            spatial_map.conv.weight[0, 0, 1, 1] = 1.0
    torch.manual_seed(5)
    x = constant_maps([IMPORTANCE_A]) + 0.02 * torch.randn(2, 1, 4, 3, 3)
    assert torch.equal(module.masks(x)[0].detach(), torch.tensor([M1_A]))
    m1 = torch.tensor([M1_A]).transpose(0, 1)[..., None, None]
    x1, x2 = x * m1, x * (1 - m1)
    a1 = torch.sigmoid(x1.mean(dim=(0, 2)) / 0.5)
    a2 = torch.sigmoid(x2.mean(dim=(0, 2)) / 0.5)
    torch.testing.assert_close(module(x), a1 * x1 + a2 * x2)


@pytest.mark.parametrize("kind", ["asa1", "asa2"])
def test_per_sample_independence(kind: str) -> None:
    torch.manual_seed(1)
    module = make_attention(kind, 8, 6)
    sample = torch.randn(6, 1, 8, 5, 5)
    mates = torch.randn(6, 3, 8, 5, 5) * 3.0
    alone = module(sample)
    in_batch = module(torch.cat([sample, mates], dim=1))[:, :1]
    m1_alone, _ = module.masks(sample)
    m1_batch, _ = module.masks(torch.cat([sample, mates], dim=1))
    assert torch.equal(m1_alone.detach(), m1_batch[:1].detach())
    torch.testing.assert_close(in_batch, alone, rtol=0, atol=1e-6)


def test_reference_output_depends_on_batch_mates() -> None:
    torch.manual_seed(2)
    reference = make_attention("asa_reference", 4, 2, learned=False)
    per_sample = make_attention("asa2", 4, 2)
    per_sample.load_state_dict(reference.state_dict())
    sample, mate = constant_maps([IMPORTANCE_A]), constant_maps([IMPORTANCE_B])
    batch = torch.cat([sample, mate], dim=1)
    # Alone, the union over one sample is its own mask: the two modules agree.
    torch.testing.assert_close(reference(sample), per_sample(sample))
    assert torch.equal(reference.masks(batch)[0][0], torch.tensor(M1_UNION))
    assert not torch.allclose(reference(batch)[:, :1], reference(sample))
    torch.testing.assert_close(per_sample(batch)[:, :1], per_sample(sample), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_deterministic(kind: str) -> None:
    x = torch.randn(6, 2, 8, 4, 4)
    torch.manual_seed(3)
    first = make_attention(kind, 8, 6)
    torch.manual_seed(3)
    second = make_attention(kind, 8, 6)
    assert torch.equal(first(x), second(x))
    assert torch.equal(first(x), first(x))


# --- gradients ----------------------------------------------------------------------------------------


def backward_on_random_loss(module: torch.nn.Module) -> None:
    torch.manual_seed(4)
    x = torch.randn(8, 3, 8, 5, 5)
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()


def test_asa1_selector_receives_gradients() -> None:
    module = make_attention("asa1", 8, 8)
    backward_on_random_loss(module)
    selector_params = [module.alpha, module.beta, *module.importance.parameters()]
    assert len(selector_params) == 4
    for p in [*selector_params, *module.important_map.parameters(), *module.subimportant_map.parameters()]:
        assert p.grad is not None
        assert torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_asa2_alpha_beta_receive_gradients() -> None:
    module = make_attention("asa2", 8, 8)
    backward_on_random_loss(module)
    for p in (module.alpha, module.beta):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs() > 0


def test_reference_selector_receives_no_gradient() -> None:
    module = make_attention("asa_reference", 8, 8)
    backward_on_random_loss(module)
    for p in [module.alpha, module.beta, *module.importance.parameters()]:
        assert p.grad is None or not p.grad.any()
    for p in [*module.important_map.parameters(), *module.subimportant_map.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0


# --- errors -------------------------------------------------------------------------------------------


def test_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(AsaSnnError, match=r"'cbam'.*none, sa, tcsa, asa1, asa2, asa_reference"):
        make_attention("cbam", 8, 8)


def test_unknown_option_is_named() -> None:
    with pytest.raises(AsaSnnError, match=r"'asa2'.*reduction.*lam, temperature"):
        make_attention("asa2", 8, 8, reduction=2)


@pytest.mark.parametrize("kind", ["sa", "tcsa", "asa1", "asa2", "asa_reference", "none"])
def test_wrong_rank_is_rejected(kind: str) -> None:
    with pytest.raises(AsaSnnError, match=r"rank 4 .*expected rank 5 \[T, B, C, H, W\]"):
        make_attention(kind, 8, 8)(torch.randn(8, 8, 4, 4))


def test_reduction_too_large_for_timesteps() -> None:
    with pytest.raises(AsaSnnError, match=r"asa1.*timesteps=3 with reduction=4.*expected timesteps >= 4"):
        make_attention("asa1", 8, 3, reduction=4)
    with pytest.raises(AsaSnnError, match=r"tcsa.*timesteps=2 with reduction=4"):
        make_attention("tcsa", 8, 2)
    with pytest.raises(AsaSnnError, match=r"tcsa.*channels=3 with reduction=4"):
        make_attention("tcsa", 3, 8)


@pytest.mark.parametrize("lam", [0.0, 1.0, -0.2, 1.5])
def test_lambda_outside_unit_interval(lam: float) -> None:
    with pytest.raises(
        AsaSnnError, match=rf"AdvancedSpatialAttention\(asa2\): lambda={lam}.*between 0 and 1"
    ):
        make_attention("asa2", 8, 8, lam=lam)


def test_lambda_selecting_nothing() -> None:
    with pytest.raises(AsaSnnError, match=r"lambda=0.1 keeps floor.*channels=8"):
        make_attention("asa1", 8, 60, lam=0.1)


def test_wrong_timesteps_or_channels_at_forward() -> None:
    module: AdvancedSpatialAttention = make_attention("asa1", 8, 6)
    with pytest.raises(AsaSnnError, match=r"asa1.*T=5 .*expected T=6"):
        module(torch.randn(5, 2, 8, 4, 4))
    with pytest.raises(AsaSnnError, match=r"asa1.*C=7 .*expected C=8"):
        module(torch.randn(6, 2, 7, 4, 4))
