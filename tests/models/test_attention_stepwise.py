"""The stepwise ASA backend against the whole-tensor reference: same values, same gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from asa_snn.errors import AsaSnnError
from asa_snn.models.attention import AdvancedSpatialAttention, make_attention
from asa_snn.models.attention.asa import PooledImportance, StraightThroughSelector
from asa_snn.models.attention.stepwise import channel_pools, masked_spatial_pools, mix

SHAPE = (6, 3, 8, 5, 7)
"""[T, B, C, H, W]: odd H and W, more channels than steps."""


def _inputs(kind: str, memory_format: torch.memory_format) -> torch.Tensor:
    torch.manual_seed(7)
    ties = kind == "ties"
    x = torch.randint(-2, 3, SHAPE).double() if ties else torch.randn(SHAPE, dtype=torch.float64)
    frames = x.flatten(0, 1).contiguous(memory_format=memory_format)
    return frames.unflatten(0, SHAPE[:2])


@pytest.mark.parametrize("attention", ["asa1", "asa2", "asa_reference"])
@pytest.mark.parametrize("values", ["continuous", "ties"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_stepwise_matches_reference(attention, values, memory_format):
    torch.manual_seed(0)
    stepwise = make_attention(attention, SHAPE[2], SHAPE[0]).double()
    with torch.no_grad():
        for parameter in stepwise.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    reference = copy.deepcopy(stepwise)
    reference.backend = "reference"
    assert stepwise.backend == "stepwise"
    x = _inputs(values, memory_format)
    weight = torch.randn(SHAPE, dtype=torch.float64)
    x_stepwise, x_reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_stepwise, y_reference = stepwise(x_stepwise), reference(x_reference)
    (y_stepwise * weight).sum().backward()
    (y_reference * weight).sum().backward()
    torch.testing.assert_close(y_stepwise, y_reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_stepwise.grad, x_reference.grad, rtol=1e-10, atol=1e-12)
    assert x_stepwise.grad.abs().sum() > 0
    for (name, a), b in zip(stepwise.named_parameters(), reference.parameters(), strict=True):
        if b.grad is None:
            assert a.grad is None, name
        else:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_channel_pools_gradient():
    x = torch.randn(3, 2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(channel_pools, (x,))


def test_masked_spatial_pools_gradient_with_real_valued_masks():
    x = torch.randn(3, 2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, m: masked_spatial_pools(x, m, 0.3), (x, mask))


def test_mix_gradient():
    x = torch.randn(3, 2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 2, 4, dtype=torch.float64, requires_grad=True)
    maps = [torch.rand(2, 3, 5, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert torch.autograd.gradcheck(mix, (x, mask, *maps))


def test_max_gradient_is_shared_by_ties_as_amax_shares_it():
    x = torch.tensor([[[[[1.0, 3.0], [3.0, 0.0]]]]], dtype=torch.float64, requires_grad=True)
    _, f_max = channel_pools(x)
    f_max.sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 0.5, 0.5, 0.0]


def test_mix_keeps_the_frame_layout():
    x = _inputs("continuous", torch.channels_last)
    y = mix(x, torch.rand(SHAPE[:3], dtype=torch.float64), *torch.rand(2, 3, 5, 7, dtype=torch.float64))
    assert y.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


def test_unknown_backend_is_named():
    with pytest.raises(AsaSnnError, match=r"backend='fast'.*stepwise, reference"):
        AdvancedSpatialAttention(8, 6, PooledImportance(), StraightThroughSelector(), backend="fast")


def test_bfloat16_counts_every_tie_of_the_max():
    """2048 masked zeros tie for the max of X M1 where X < 0: bfloat16 cannot count that far."""
    torch.manual_seed(0)
    x = (-torch.rand(32, 1, 128, 1, 1) - 0.1).bfloat16().requires_grad_()
    mask = (torch.rand(32, 1, 128) < 0.5).bfloat16().requires_grad_()
    _, peak, _, _ = masked_spatial_pools(x, mask, 0.5)
    peak.sum().backward()
    ties = int((mask == 0).sum())
    assert ties > 256
    expected = torch.where(mask == 0, x.detach().float()[..., 0, 0] / ties, 0.0)
    torch.testing.assert_close(mask.grad.float(), expected, rtol=1e-2, atol=1e-6)


def test_second_derivatives_are_refused():
    x = torch.randn(2, 1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    _, f_max = channel_pools(x)
    (grad,) = torch.autograd.grad(f_max.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad"):
        grad.sum().backward()
