"""ASA's three passes over the input current X [T, B, C, H, W], each one time step at a time.

ASA (:mod:`asa_snn.models.attention.asa`) reads X three times: channel statistics for the
importance, masked spatial statistics for the two maps, and the final mix. Written with
whole-tensor PyTorch operations, each pass leaves several [T, B, C, H, W] temporaries (masked
copies, max-tie masks, partial gradients) that stream through memory. The functions here compute
the same values and the same gradients (``amax``'s rule included: a gradient is shared evenly by
all entries equal to the max) with a loop over the time steps, whose [B, C, H, W] temporaries
stay in cache, and a backward pass written out by hand. Masks may take any value; ASA's are 0/1.
Sums over steps accumulate in at least float32 and tie counts in int64, as PyTorch's reductions
do, so bfloat16 and float16 inputs lose no more than the reference. Differentiable once.

- :func:`channel_pools`: F_avg, F_max [T, B, C] = mean and max over (H, W).
- :func:`masked_spatial_pools`: the mean and max over (T, C) of X M1 and of X (1 - M1), [B, H, W].
- :func:`mix`: Y = A1 (X M1) + A2 (X (1 - M1)).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def _planes(values: Tensor) -> Tensor:
    """[B, C] -> [B, C, 1, 1], to broadcast over one step's [B, C, H, W]."""
    return values[:, :, None, None]


class _ChannelPools(torch.autograd.Function):
    """F_avg = mean_{h,w} X, F_max = max_{h,w} X; see :func:`channel_pools`."""

    @staticmethod
    def forward(ctx, x):
        f_max = x.amax(dim=(3, 4))
        ctx.save_for_backward(x, f_max)
        return x.mean(dim=(3, 4)), f_max

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_avg, grad_max):
        x, f_max = ctx.saved_tensors
        area = x.shape[3] * x.shape[4]
        grad_x = torch.empty_like(x)
        for t in range(x.shape[0]):
            ties = torch.eq(x[t], _planes(f_max[t]))
            spread = grad_avg[t] / area
            on_max = spread + grad_max[t] / ties.sum((2, 3))
            torch.where(ties, _planes(on_max), _planes(spread), out=grad_x[t])
        return grad_x


def channel_pools(x: Tensor) -> tuple[Tensor, Tensor]:
    """(F_avg, F_max) of X [T, B, C, H, W]: its mean and max over (H, W), each [T, B, C]."""
    return _ChannelPools.apply(x)


class _MaskedSpatialPools(torch.autograd.Function):
    """Mean and max over (T, C) of X M1 and X (1 - M1); see :func:`masked_spatial_pools`."""

    @staticmethod
    def forward(ctx, x, mask, divisors: tuple[float, float]):
        sums, peaks = [None, None], [None, None]
        accumulate = torch.promote_types(x.dtype, torch.float32)
        for t in range(x.shape[0]):
            for group, part in enumerate(_parts(x[t], mask[t])):
                total, peak = part.sum(1, dtype=accumulate), part.amax(1)
                sums[group] = total if sums[group] is None else sums[group].add_(total)
                peaks[group] = peak if peaks[group] is None else torch.maximum(peaks[group], peak)
        steps_channels = x.shape[0] * x.shape[2]
        means = [(total / steps_channels / d).to(x.dtype) for total, d in zip(sums, divisors, strict=True)]
        ctx.save_for_backward(x, mask, *peaks)
        ctx.scale = [1.0 / steps_channels / divisor for divisor in divisors]
        return means[0], peaks[0], means[1], peaks[1]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_mean1, grad_max1, grad_mean2, grad_max2):
        x, mask, *peaks = ctx.saved_tensors
        grad_means = [g * scale for g, scale in zip((grad_mean1, grad_mean2), ctx.scale, strict=True)]
        ties = [torch.zeros_like(peak, dtype=torch.int64) for peak in peaks]
        for t in range(x.shape[0]):
            for group, part in enumerate(_parts(x[t], mask[t])):
                ties[group] += torch.eq(part, peaks[group][:, None]).sum(1)
        on_peaks = [
            mean + g / count for mean, g, count in zip(grad_means, (grad_max1, grad_max2), ties, strict=True)
        ]
        grad_x = torch.empty_like(x)
        grad_mask = torch.empty_like(mask) if ctx.needs_input_grad[1] else None
        for t in range(x.shape[0]):
            grad_parts = [
                torch.where(torch.eq(part, peak[:, None]), on_peak[:, None], grad_mean[:, None])
                for part, peak, on_peak, grad_mean in zip(
                    _parts(x[t], mask[t]), peaks, on_peaks, grad_means, strict=True
                )
            ]
            difference = grad_parts[0].sub_(grad_parts[1])
            torch.addcmul(grad_parts[1], difference, _planes(mask[t]), out=grad_x[t])
            if grad_mask is not None:
                torch.sum(difference.mul_(x[t]), dim=(2, 3), out=grad_mask[t])
        return grad_x, grad_mask, None


def _parts(x_t: Tensor, mask_t: Tensor) -> tuple[Tensor, Tensor]:
    """One step's X M1 and X (1 - M1), for X_t [B, C, H, W] and M1_t [B, C]."""
    return x_t * _planes(mask_t), x_t * _planes(1.0 - mask_t)


def masked_spatial_pools(x: Tensor, mask: Tensor, lam: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Statistics of the two groups for ASA's maps, for X [T, B, C, H, W] and M1 [T, B, C].

    Returns (mean_{t,c}(X M1) / lam, max_{t,c}(X M1), mean_{t,c}(X M2) / (1 - lam),
    max_{t,c}(X M2)), each [B, H, W], with M2 = 1 - M1.
    """
    return _MaskedSpatialPools.apply(x, mask, (lam, 1.0 - lam))


class _Mix(torch.autograd.Function):
    """Y = X (A2 + M1 (A1 - A2)); see :func:`mix`."""

    @staticmethod
    def forward(ctx, x, mask, map1, map2):
        difference = map1 - map2
        y = torch.empty_like(x)
        for t in range(x.shape[0]):
            torch.mul(x[t], _gain(mask[t], map2, difference), out=y[t])
        ctx.save_for_backward(x, mask, map2, difference)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, mask, map2, difference = ctx.saved_tensors
        grad_x = torch.empty_like(x)
        grad_mask = torch.empty_like(mask) if ctx.needs_input_grad[1] else None
        accumulate = torch.promote_types(x.dtype, torch.float32)
        grad_map1 = torch.zeros_like(map2, dtype=accumulate)
        grad_total = torch.zeros_like(map2, dtype=accumulate)
        for t in range(x.shape[0]):
            torch.mul(grad_y[t], _gain(mask[t], map2, difference), out=grad_x[t])
            weighted = grad_y[t] * x[t]
            grad_map1 += torch.einsum("bchw,bc->bhw", weighted, mask[t])
            grad_total += weighted.sum(1)
            if grad_mask is not None:
                torch.sum(weighted.mul_(difference[:, None]), dim=(2, 3), out=grad_mask[t])
        return grad_x, grad_mask, grad_map1.to(map2.dtype), (grad_total - grad_map1).to(map2.dtype)


def _gain(mask_t: Tensor, map2: Tensor, difference: Tensor) -> Tensor:
    """One step's A2 + M1 (A1 - A2), [B, C, H, W], for M1_t [B, C] and maps [B, H, W]."""
    return torch.addcmul(map2[:, None], _planes(mask_t), difference[:, None])


def mix(x: Tensor, mask: Tensor, map1: Tensor, map2: Tensor) -> Tensor:
    """Y = A1 (X M1) + A2 (X (1 - M1)) for X [T, B, C, H, W], M1 [T, B, C], A1, A2 [B, H, W].

    Returns Y [T, B, C, H, W] in X's memory format.
    """
    return _Mix.apply(x, mask, map1, map2)
