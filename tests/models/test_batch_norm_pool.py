"""Batch norm then pooling as one step: the same values, gradients and running statistics as
``BatchNorm2d`` followed by ``AvgPool2d`` / ``SumPool2d``."""

import pytest
import torch
from torch import nn

from asa_snn.devices import available_devices
from asa_snn.models.batch_norm_pool import batch_norm_then_avg_pool
from asa_snn.models.blocks import ConvBlock, SumPool2d, pool_window
from asa_snn.models.neurons import LIF
from asa_snn.models.registry import ModelSpec, build_model


def _batch_norm(channels: int, momentum: float | None, seed: int) -> nn.BatchNorm2d:
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(channels, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return bn


DEVICES = [pytest.param(device, id=str(device)) for device in available_devices()]


def _pair(channels: int, momentum: float | None = 0.1) -> tuple[nn.BatchNorm2d, nn.BatchNorm2d]:
    return _batch_norm(channels, momentum, 1), _batch_norm(channels, momentum, 1)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize(("k", "gain", "pool"), [(2, 1.0, nn.AvgPool2d(2)), (3, 9.0, SumPool2d(3))])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("device", DEVICES)
def test_training_matches_batch_norm_then_pool(memory_format, k, gain, pool, momentum, device):
    torch.manual_seed(0)
    x = (torch.randn(5, 4, 6 * k // 2, 4 * k // 2, dtype=torch.float64) * 3 + 1).to(device)
    x = x.contiguous(memory_format=memory_format)
    grad_out = torch.randn(5, 4, 3, 2, dtype=torch.float64).to(device)
    fused_bn, plain_bn = (bn.to(device) for bn in _pair(4, momentum))
    for _ in range(2):
        x_fused = x.clone().requires_grad_()
        x_plain = x.clone().requires_grad_()
        fused = batch_norm_then_avg_pool(x_fused, fused_bn, k, gain)
        plain = pool(plain_bn(x_plain))
        fused.backward(grad_out)
        plain.backward(grad_out)
        torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(x_fused.grad, x_plain.grad, rtol=1e-10, atol=1e-12)
        assert x_fused.grad.is_contiguous(memory_format=memory_format)
    assert x_fused.grad.abs().sum() > 0
    for name in ("weight", "bias"):
        torch.testing.assert_close(
            getattr(fused_bn, name).grad, getattr(plain_bn, name).grad, rtol=1e-10, atol=1e-12
        )
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(fused_bn, name), getattr(plain_bn, name), rtol=1e-12, atol=0)
    assert int(fused_bn.num_batches_tracked) == 2


def test_parameter_gradients_without_an_input_gradient():
    fused_bn, plain_bn = _pair(3)
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    batch_norm_then_avg_pool(x, fused_bn, 2).pow(2).sum().backward()
    nn.AvgPool2d(2)(plain_bn(x)).pow(2).sum().backward()
    assert fused_bn.weight.grad.abs().sum() > 0
    torch.testing.assert_close(fused_bn.weight.grad, plain_bn.weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused_bn.bias.grad, plain_bn.bias.grad, rtol=1e-10, atol=1e-12)


def test_gradient_is_the_derivative_of_the_forward_pass():
    torch.manual_seed(1)
    bn = _batch_norm(3, 0.1, 2)
    x = torch.randn(4, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    weight = bn.weight.detach().clone().requires_grad_()
    bias = bn.bias.detach().clone().requires_grad_()
    del bn.weight, bn.bias

    def pooled(x, weight, bias):
        bn.weight, bn.bias = weight, bias
        return batch_norm_then_avg_pool(x, bn, 2)

    assert torch.autograd.gradcheck(pooled, (x, weight, bias))


def test_evaluation_uses_the_running_statistics():
    fused_bn, plain_bn = _pair(4)
    fused_bn.eval()
    plain_bn.eval()
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(batch_norm_then_avg_pool(x, fused_bn, 2), nn.AvgPool2d(2)(plain_bn(x)))
    torch.testing.assert_close(fused_bn.running_mean, plain_bn.running_mean, rtol=0, atol=0)
    assert int(fused_bn.num_batches_tracked) == 0


def test_sizes_that_do_not_tile_fall_back_to_the_two_modules():
    fused_bn, plain_bn = _pair(2)
    x = torch.randn(3, 2, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(batch_norm_then_avg_pool(x, fused_bn, 2), nn.AvgPool2d(2)(plain_bn(x)))
    torch.testing.assert_close(fused_bn.running_var, plain_bn.running_var)


def test_batch_norm_without_running_statistics_is_refused():
    with pytest.raises(ValueError, match="track_running_stats"):
        batch_norm_then_avg_pool(torch.randn(2, 3, 4, 4), nn.BatchNorm2d(3, track_running_stats=False), 2)


@pytest.mark.parametrize(
    ("pool", "window"),
    [
        (nn.AvgPool2d(2), (2, 1.0)),
        (SumPool2d(2), (2, 4.0)),
        (nn.AvgPool2d(3, stride=1), None),
        (nn.AvgPool2d(2, padding=1), None),
        (nn.MaxPool2d(2), None),
        (None, None),
    ],
)
def test_pool_window_recognises_non_overlapping_average_pools(pool, window):
    assert pool_window(pool) == window


def _backward_nodes(tensor: torch.Tensor) -> set[str]:
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack += [next_node for next_node, _ in node.next_functions]
    return {type(node).__name__ for node in seen}


def test_paper_network_fuses_its_pooled_layers():
    model = build_model(ModelSpec("arch_a", "none", 4, (2, 32, 32), 11))
    scores = model(torch.rand(4, 2, 2, 32, 32))
    nodes = _backward_nodes(scores)
    assert "_BatchNormThenAvgPoolBackward" in nodes
    assert "AvgPool2DBackward0" not in nodes


def test_a_hook_on_the_batch_norm_sees_its_call_and_the_block_computes_the_same():
    torch.manual_seed(4)
    fused = ConvBlock(nn.Conv2d(2, 3, 3, padding=1), LIF(), nn.Identity(), pool=nn.AvgPool2d(2)).double()
    hooked = ConvBlock(nn.Conv2d(2, 3, 3, padding=1), LIF(), nn.Identity(), pool=nn.AvgPool2d(2)).double()
    hooked.load_state_dict(fused.state_dict())
    seen = []
    hooked.bn.register_forward_hook(lambda _m, _i, output: seen.append(output.shape))
    x = torch.rand(5, 2, 2, 8, 8, dtype=torch.float64) * 4
    spikes_fused, spikes_hooked = fused(x), hooked(x)
    assert seen == [torch.Size([10, 3, 8, 8])]
    assert spikes_fused.sum() > 0
    torch.testing.assert_close(spikes_fused, spikes_hooked, rtol=0, atol=0)
    spikes_fused.sum().backward()
    spikes_hooked.sum().backward()
    torch.testing.assert_close(fused.conv.weight.grad, hooked.conv.weight.grad, rtol=1e-9, atol=1e-12)


def test_average_pool_with_a_divisor_override_is_not_fused():
    assert pool_window(nn.AvgPool2d(2, divisor_override=1)) is None


class _ShiftedBatchNorm(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 100.0


@pytest.mark.parametrize(
    "watch",
    [
        lambda block: block.bn.register_full_backward_hook(lambda *_: None),
        lambda block: block.pool.register_forward_pre_hook(lambda *_: None),
        lambda block: torch.nn.modules.module.register_module_forward_hook(lambda *_: None),
        lambda block: setattr(block, "bn", _ShiftedBatchNorm(3)),
    ],
    ids=["backward hook", "pool pre-hook", "global hook", "batch norm subclass"],
)
def test_hooks_and_batch_norm_subclasses_get_the_two_modules(watch):
    block = ConvBlock(nn.Conv2d(2, 3, 3, padding=1), LIF(), nn.Identity(), pool=nn.AvgPool2d(2))
    handle = watch(block)
    try:
        stages = block._stages_before_attention()
    finally:
        if handle is not None:
            handle.remove()
    assert block.bn in stages
    assert block.pool in stages


def test_low_precision_input_keeps_its_dtype_as_batch_norm_does():
    fused_bn, plain_bn = _batch_norm(3, 0.1, 5).float(), _batch_norm(3, 0.1, 5).float()
    x = torch.randn(4, 3, 4, 4).bfloat16()
    fused = batch_norm_then_avg_pool(x, fused_bn, 2)
    assert fused.dtype == torch.bfloat16
    torch.testing.assert_close(fused, nn.AvgPool2d(2)(plain_bn(x)), rtol=0, atol=0)


def test_one_value_per_channel_is_refused_as_batch_norm_refuses_it():
    bn = nn.BatchNorm2d(2)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_then_avg_pool(torch.randn(1, 2, 1, 1), bn, 1)
