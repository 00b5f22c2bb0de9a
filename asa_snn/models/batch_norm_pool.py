"""Batch norm followed by average (or sum) pooling, computed as pooling first, then the affine.

Batch norm is a per-channel affine map of its input and average pooling over non-overlapping
k x k windows is linear, so with batch statistics :math:`\\mu_c, \\sigma_c^2` of the unpooled
input ``x`` [N, C, H, W]

.. math::
    \\mathrm{avgpool}_k(\\gamma \\hat{x} + \\beta) = a \\, p + b, \\qquad
    p = \\mathrm{avgpool}_k(x), \\quad a = \\gamma / \\sqrt{\\sigma^2 + \\epsilon}, \\quad
    b = \\beta - a \\mu

(a sum pool is :math:`k^2` times that). The normalised [N, C, H, W] map is never written: the
forward pass reads ``x`` twice (statistics, pooling) and writes only the pooled map, k^2 times
smaller. With :math:`g` the gradient of the loss with respect to the pooled output,
:math:`M = N H W` and :math:`i = 1/\\sqrt{\\sigma^2 + \\epsilon}`, the backward pass is

.. math::
    \\bar{\\beta} = \\textstyle\\sum g, \\qquad
    \\bar{\\gamma} = i \\left(\\textstyle\\sum g \\, p - \\mu \\textstyle\\sum g\\right), \\qquad
    \\bar{x} = \\frac{\\gamma i}{k^2} \\, \\mathrm{up}_k(g)
        - \\frac{\\gamma i^2 \\bar{\\gamma}}{M} (x - \\mu) - \\frac{\\gamma i \\bar{\\beta}}{M}

(sums over N and the pooled H, W per channel; :math:`\\mathrm{up}_k` repeats each pooled value
over its window): the batch norm gradient of :class:`torch.nn.BatchNorm2d` with the pooling's
gradient folded in, written in one pass over [N, C, H, W]. What it changes in a training step is
measured in benchmarks/README.md (``asa-snn (none, unfused)``).

Running statistics are updated as :class:`torch.nn.BatchNorm2d` updates them (momentum, or the
cumulative average when ``momentum`` is None; unbiased variance), by the same ATen kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def _per_channel(values: Tensor) -> Tensor:
    """[C] -> [C, 1, 1], to broadcast over [N, C, H, W]."""
    return values[:, None, None]


def _windows(x: Tensor, k: int) -> Tensor:
    """View [N, C, H, W] as [N, C, H/k, k, W/k, k] (a view in any memory format)."""
    return x.unflatten(3, (x.shape[3] // k, k)).unflatten(2, (x.shape[2] // k, k))


class _BatchNormThenAvgPool(torch.autograd.Function):
    """Training-mode batch norm then k x k average pooling; see the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, k: int, gain: float):
        scale = weight * invstd * gain
        pooled = F.avg_pool2d(x, k)
        out = torch.addcmul(_per_channel((bias - mean * weight * invstd) * gain), pooled, _per_channel(scale))
        ctx.save_for_backward(x, pooled, weight, mean, invstd)
        ctx.k, ctx.gain = k, gain
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, pooled, weight, mean, invstd = ctx.saved_tensors
        k = ctx.k
        grad = grad_out * ctx.gain
        dims = (0, 2, 3)
        grad_bias = grad.sum(dims)
        grad_weight = invstd * (grad * (pooled - _per_channel(mean))).sum(dims)
        if not ctx.needs_input_grad[0]:
            return None, grad_weight, grad_bias, None, None, None, None
        count = x.shape[0] * x.shape[2] * x.shape[3]
        on_windows = weight * invstd / (k * k)
        on_x = -weight * invstd * invstd * grad_weight / count
        constant = -weight * invstd * grad_bias / count - on_x * mean
        base = torch.addcmul(_per_channel(constant), grad, _per_channel(on_windows))
        grad_x = torch.empty_like(x)
        torch.addcmul(
            base[:, :, :, None, :, None],
            _windows(x, k),
            on_x[:, None, None, None, None],
            out=_windows(grad_x, k),
        )
        return grad_x, grad_weight, grad_bias, None, None, None, None


def batch_norm_then_avg_pool(x: Tensor, bn: nn.BatchNorm2d, k: int, gain: float = 1.0) -> Tensor:
    """``gain * avgpool_k(bn(x))`` for ``x`` [N, C, H, W], pooling over non-overlapping k x k windows.

    Same values, gradients (to rounding) and running-statistics updates as ``bn`` then
    ``nn.AvgPool2d(k)`` (times ``gain``: k^2 for a sum pool), without writing the normalised
    [N, C, H, W] map. ``bn`` must have affine parameters and running statistics. Returns
    [N, C, H // k, W // k] in ``x``'s memory format. The two modules simply run one after the
    other when H or W is not a multiple of k, when ``x``'s dtype is not the parameters' (batch norm
    then computes in the parameters' precision), or for a single value per channel (which batch
    norm refuses). Differentiable once (no gradient of the gradient).
    """
    if not (bn.affine and bn.track_running_stats):
        raise ValueError(f"{bn}: batch_norm_then_avg_pool needs affine=True and track_running_stats=True")
    single_value = x.shape[0] * x.shape[2] * x.shape[3] <= 1
    if x.shape[2] % k or x.shape[3] % k or x.dtype != bn.weight.dtype or single_value:
        return F.avg_pool2d(bn(x), k) * gain
    if not bn.training:
        invstd = torch.rsqrt(bn.running_var + bn.eps)
        scale = bn.weight * invstd * gain
        shift = (bn.bias - bn.running_mean * bn.weight * invstd) * gain
        return torch.addcmul(_per_channel(shift), F.avg_pool2d(x, k), _per_channel(scale))
    momentum = 1.0 / float(bn.num_batches_tracked + 1) if bn.momentum is None else bn.momentum
    with torch.no_grad():
        mean, var = torch.ops.aten.batch_norm_update_stats(x, bn.running_mean, bn.running_var, momentum)
        invstd = torch.rsqrt(var + bn.eps)
    bn.num_batches_tracked.add_(1)
    return _BatchNormThenAvgPool.apply(x, bn.weight, bn.bias, mean, invstd, k, gain)
