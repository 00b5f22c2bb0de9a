"""A training penalty that pulls each attention output toward its best static per-channel gain.

The fold (:mod:`asa_snn.convert.attention_fold`) replaces an attention module Y = f(X), both
[T, B, C, H, W], by the static per-channel gain that reproduces Y best in the least-squares sense,
Y ~ g_c X. Whatever part of Y no such gain reproduces is lost on the chip. This penalty measures
that part on each training batch and adds it to the loss, so the attention learns a solution the
fold keeps. Per attention layer, with S_ab,c = sum over (t, b, h, w) of a b for channel c and g_c
the fold's own gain from those sums (:mod:`asa_snn.models.attention.static_gain`: least squares,
clipped to >= 0, 1 for a channel whose input is all zero):

.. math::
    R = \\frac{\\sum_c \\sum (Y_c - g_c X_c)^2}{\\sum Y^2} \\in [0, 1]

R is 0 when one gain per channel, shared by the batch's samples and steps, reproduces Y exactly:
the batch stands in for the fold's calibration data. The training loss becomes
``loss + weight * mean over attention layers of R`` (``train.foldability`` is the weight); the
gains are the batch's own least-squares fit, so R is differentiable through X and Y and needs no
state across batches.
"""

from __future__ import annotations

from types import TracebackType

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from asa_snn.models.attention import NoAttention
from asa_snn.models.attention.static_gain import least_squares_gains, squared_error


def static_gain_residual(x: Tensor, y: Tensor) -> Tensor:
    """R (module docstring) for one attention layer: X, Y [T, B, C, H, W] -> a scalar in [0, 1].

    Sums run in float32 at least (also inside an autocast region); Y all zero gives 0.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, y = x.to(dtype), y.to(dtype)
    over = (0, 1, 3, 4)
    xy, xx, yy = (x * y).sum(over), (x * x).sum(over), (y * y).sum(over)
    residual = squared_error(xy, xx, yy, least_squares_gains(xy, xx)).clamp_min(0.0).sum()
    total = yy.sum()
    return torch.where(total > 0, residual / total.clamp_min(torch.finfo(dtype).tiny), 0.0)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules of ``model`` that the fold replaces (every block's ``attention`` slot
    that is not the identity), in module order."""
    found = []
    for module in model.modules():
        slot = getattr(module, "attention", None)
        if isinstance(slot, nn.Module) and not isinstance(slot, NoAttention | nn.Identity):
            found.append(slot)
    return found


class FoldabilityPenalty:
    """Collects R of every attention module during training forward passes.

    Use as a context manager around training; after each forward pass :meth:`take` returns the
    mean R over the attention layers that ran (a scalar tensor; 0 when none ran) and clears it.
    Forward passes in evaluation mode are not collected.
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules = attention_modules(model)
        self._residuals: list[Tensor] = []
        self._handles: list[RemovableHandle] = []

    def _collect(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if module.training:
            self._residuals.append(static_gain_residual(inputs[0], output))

    def __enter__(self) -> FoldabilityPenalty:
        self._handles = [module.register_forward_hook(self._collect) for module in self.modules]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._residuals = [], []

    def take(self) -> Tensor:
        """Mean R of the forward passes since the last call (scalar; 0. without attention)."""
        residuals, self._residuals = self._residuals, []
        if not residuals:
            return torch.zeros(())
        return torch.stack(residuals).mean()
