"""Firing rules and reset rules, the strategy objects a spiking neuron is built from.

A firing rule maps the membrane potential ``v`` (before reset) and the threshold ``v_th`` to the
spike tensor ``s`` (float, same shape as ``v``), written into ``out`` when one is given. A reset
rule maps ``(v, s, v_th)`` to the potential ``r`` the neuron keeps after firing and also states its
two partial derivatives ``(dr/dv, dr/ds)``, so that the fused backward pass of
:mod:`asa_snn.models.first_order` differentiates the reset exactly as autograd differentiates
:meth:`__call__`. The reset is not detached: gradients flow through ``s`` into the reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from asa_snn.models.surrogate import float_mask


class FiringRule(Protocol):
    """``s = fire(v, v_th, out=None)``: spikes (float, shape of ``v``) from the potential before reset."""

    def __call__(self, v: Tensor, v_th: float, out: Tensor | None = None) -> Tensor: ...


class ResetRule(Protocol):
    """``r = reset(v, s, v_th)``: the potential kept after the spikes ``s``, with its partials."""

    def __call__(self, v: Tensor, s: Tensor, v_th: float) -> Tensor: ...

    def partials(self, v: Tensor, s: Tensor, v_th: float) -> tuple[Tensor | float, Tensor | float]:
        """``(dr/dv, dr/ds)`` elementwise, equal to what autograd computes through ``__call__``."""
        ...


@dataclass(frozen=True)
class SpikeAtOrAbove:
    """Binary spike when the potential reaches the threshold: :math:`s = \\mathbb{1}[v \\ge v_{th}]`."""

    def __call__(self, v: Tensor, v_th: float, out: Tensor | None = None) -> Tensor:
        return float_mask(torch.ge, v, v_th, out)


@dataclass(frozen=True)
class SpikeAbove:
    """Binary spike only strictly above the threshold (Loihi): :math:`s = \\mathbb{1}[v > v_{th}]`."""

    def __call__(self, v: Tensor, v_th: float, out: Tensor | None = None) -> Tensor:
        return float_mask(torch.gt, v, v_th, out)


@dataclass(frozen=True)
class MultiSpike:
    """Several spikes per step: :math:`s = \\lfloor v / v_{th} \\rfloor` when :math:`v \\ge v_{th}`, else 0.

    Paired with :class:`ResetBySubtraction` every emitted spike removes one threshold, so the
    potential kept lies in ``[0, v_th)`` after a step that fired.
    """

    def __call__(self, v: Tensor, v_th: float, out: Tensor | None = None) -> Tensor:
        return torch.div(v, v_th, out=torch.empty_like(v) if out is None else out).floor_().clamp_(min=0)


@dataclass(frozen=True)
class ResetToZero:
    """Hard reset: :math:`r = v - v \\min(s, 1) = v \\, (1 - \\min(s, 1))`, any spike sets the potential to 0.

    For binary spikes this is the ``u (1 - s)`` of the ASA nets (the two forms are equal in floating
    point for s in {0, 1}); the gradient :math:`\\partial r / \\partial s = -v` (for
    :math:`s \\le 1`) is kept, not detached.
    """

    def __call__(self, v: Tensor, s: Tensor, v_th: float) -> Tensor:
        return torch.addcmul(v, v, s.clamp(max=1), value=-1)

    def partials(self, v: Tensor, s: Tensor, v_th: float) -> tuple[Tensor, Tensor]:
        return 1 - s.clamp(max=1), float_mask(torch.le, s, 1.0).mul_(v).neg_()


@dataclass(frozen=True)
class ResetBySubtraction:
    """Soft reset: :math:`r = v - s \\, v_{th}`, one threshold removed per emitted spike."""

    def __call__(self, v: Tensor, s: Tensor, v_th: float) -> Tensor:
        return v - s * v_th

    def partials(self, v: Tensor, s: Tensor, v_th: float) -> tuple[float, float]:
        return 1.0, -v_th
