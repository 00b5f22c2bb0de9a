"""Surrogate gradients: the derivative the backward pass uses in place of the Heaviside step's.

A surrogate is a small callable ``surrogate(v, v_th) -> ds/dv`` that maps a membrane potential
tensor ``v`` (any shape, same units as the threshold) and the firing threshold ``v_th`` to the
pseudo-derivative of the spike output with respect to ``v``, elementwise. The forward pass always
emits the exact spikes of a firing rule (see :mod:`asa_snn.models.firing`); only the backward pass
sees the surrogate. :func:`surrogate_spike` joins the two into one differentiable operation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from asa_snn.errors import AsaSnnError


class Surrogate(Protocol):
    """Pseudo-derivative ds/dv of a spike function, evaluated elementwise at ``v``.

    Returns a new tensor of ``v``'s shape and dtype (the fused backward pass modifies it in place).
    """

    def __call__(self, v: Tensor, v_th: float) -> Tensor: ...


def float_mask(
    compare: Callable[..., Tensor], a: Tensor, b: Tensor | float, out: Tensor | None = None
) -> Tensor:
    """``compare(a, b)`` (e.g. ``torch.ge``) as a 0/1 tensor of ``a``'s dtype and shape.

    Written straight into a floating output (``out``, or a new tensor): on CPU this is several
    times faster than making a bool tensor and converting it.
    """
    return compare(a, b, out=torch.empty_like(a) if out is None else out)


def _check_positive(owner: str, field: str, value: float) -> None:
    if not value > 0:
        raise AsaSnnError(f"{owner}.{field} must be > 0, got {value!r}")


@dataclass(frozen=True)
class Rectangular:
    """Box-shaped surrogate of the 3-layer ASA nets (FACTS.md section 2).

    .. math::
        \\frac{\\partial s}{\\partial v} = \\frac{1}{w} \\, \\mathbb{1}[|v - v_{th}| < w / 2]

    Args:
        width: full width ``w`` of the box in membrane units (default 0.5, so height 2).
    """

    width: float = 0.5

    def __post_init__(self) -> None:
        _check_positive("Rectangular", "width", self.width)

    def __call__(self, v: Tensor, v_th: float) -> Tensor:
        return float_mask(torch.lt, (v - v_th).abs_(), self.width / 2).div_(self.width)


@dataclass(frozen=True)
class ATan:
    """Arc-tangent surrogate of the 5-layer PLIF nets (the derivative of arctan(pi/2 alpha x)/pi).

    .. math::
        x = v - v_{th}, \\qquad
        \\frac{\\partial s}{\\partial v} = \\frac{\\alpha / 2}{1 + (\\frac{\\pi}{2} \\alpha x)^2}

    Args:
        alpha: sharpness; the peak value at ``v = v_th`` is ``alpha / 2`` (default 2, peak 1).
    """

    alpha: float = 2.0

    def __post_init__(self) -> None:
        _check_positive("ATan", "alpha", self.alpha)

    def __call__(self, v: Tensor, v_th: float) -> Tensor:
        scaled = (math.pi / 2 * self.alpha) * (v - v_th)
        return (self.alpha / 2) / (1 + scaled * scaled)


@dataclass(frozen=True)
class SingleExponential:
    """Exponential surrogate (Shrestha and Orchard, 2018), width relative to the threshold.

    .. math::
        \\frac{\\partial s}{\\partial v}
            = \\frac{c}{w v_{th}} \\exp\\left(-\\frac{|v - v_{th}|}{w v_{th}}\\right)

    Args:
        width: decay length ``w`` as a fraction of the threshold (default 0.5).
        scale: overall factor ``c`` (default 1).
    """

    width: float = 0.5
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_positive("SingleExponential", "width", self.width)

    def __call__(self, v: Tensor, v_th: float) -> Tensor:
        length = self.width * v_th
        return (self.scale / length) * torch.exp(-(v - v_th).abs() / length)


@dataclass(frozen=True)
class PeriodicExponential:
    """Exponential surrogate repeated at every multiple of the threshold, for multi-spike output.

    Every multiple of ``v_th`` is a point where the spike count ``floor(v / v_th)`` steps up, so the
    distance ``d`` is taken to the nearest such point (to ``v_th`` itself below threshold):

    .. math::
        d = \\begin{cases} v - v_{th} & v < v_{th} \\\\
                           v - v_{th} \\operatorname{round}(v / v_{th}) & v \\ge v_{th} \\end{cases}
        \\qquad
        \\frac{\\partial s}{\\partial v} = \\frac{c}{w v_{th}} \\exp\\left(-\\frac{|d|}{w v_{th}}\\right)

    Args:
        width: decay length ``w`` as a fraction of the threshold (default 0.5).
        scale: overall factor ``c`` (default 1).
    """

    width: float = 0.5
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_positive("PeriodicExponential", "width", self.width)

    def __call__(self, v: Tensor, v_th: float) -> Tensor:
        above = v - v_th * torch.round(v / v_th)
        distance = torch.where(v < v_th, v - v_th, above)
        length = self.width * v_th
        return (self.scale / length) * torch.exp(-distance.abs() / length)


class _SurrogateSpike(torch.autograd.Function):
    """Exact spikes forward, ``grad * surrogate(v, v_th)`` backward (no gradient to v_th)."""

    @staticmethod
    def forward(ctx, v: Tensor, v_th: float, fire: Callable[..., Tensor], surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(v)
        ctx.v_th = v_th
        ctx.surrogate = surrogate
        return fire(v, v_th)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> tuple[Tensor, None, None, None]:
        (v,) = ctx.saved_tensors
        return grad_spikes * ctx.surrogate(v, ctx.v_th), None, None, None


def surrogate_spike(v: Tensor, v_th: float, fire: Callable[..., Tensor], surrogate: Surrogate) -> Tensor:
    """Spikes ``fire(v, v_th)`` whose gradient with respect to ``v`` is ``surrogate(v, v_th)``.

    Args:
        v: membrane potential, any shape.
        v_th: firing threshold (same units as ``v``).
        fire: firing rule returning the spike tensor (same shape and dtype as ``v``).
        surrogate: pseudo-derivative used in the backward pass.

    Returns:
        Spike tensor of the shape of ``v``.
    """
    return _SurrogateSpike.apply(v, v_th, fire, surrogate)
