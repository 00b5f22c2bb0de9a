"""Multi-step loops of first-order spiking neurons (LIF, parametric LIF, IAF share them).

Every one-state neuron of this package is an instance of

.. math::
    v[t] = \\lambda \\, r[t-1] + I[t], \\qquad
    s[t] = \\mathrm{fire}(v[t], v_{th}), \\qquad
    r[t] = \\max(\\mathrm{reset}(v[t], s[t]), v_{min}), \\qquad r[-1] = 0

with leak :math:`\\lambda` (a 0-dim tensor, possibly learnable), input :math:`I` (already scaled
by the neuron, e.g. :math:`X / \\tau` for the parametric LIF) and an optional lower bound
:math:`v_{min}`. ``v`` is the membrane potential before reset, ``r`` the potential kept after it.
Two loops compute it, with the same signature
``loop(inputs, leak, dynamics, keep_membrane) -> (spikes, membrane or None)``:

- :func:`reference_loop`: a plain Python time loop whose autograd graph is built step by step.
  Obviously right; the definition the fused loop is tested against.
- :func:`fused_loop`: one :class:`torch.autograd.Function` running the whole loop without a graph,
  saving only ``v`` for every step, and computing the exact gradient of the loop above
  (surrogate spikes, the non-detached reset, the leak, the bound) in a reverse time loop.

Both use the same floating-point operations in the same order, so their spikes and membranes
agree bit for bit; their gradients agree to rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from asa_snn.models.firing import FiringRule, ResetRule, ResetToZero, SpikeAbove, SpikeAtOrAbove
from asa_snn.models.surrogate import Surrogate, float_mask, surrogate_spike


@dataclass(frozen=True)
class FirstOrderDynamics:
    """The non-learnable parts of a first-order neuron.

    Args:
        v_th: firing threshold (membrane units).
        fire: firing rule, e.g. :class:`~asa_snn.models.firing.SpikeAtOrAbove`.
        surrogate: pseudo-derivative of ``fire`` for the backward pass.
        reset: reset rule, e.g. :class:`~asa_snn.models.firing.ResetToZero`.
        min_v: lower bound applied to the potential kept after reset; None for no bound.
    """

    v_th: float
    fire: FiringRule
    surrogate: Surrogate
    reset: ResetRule
    min_v: float | None = None

    def kept(self, v: Tensor, s: Tensor) -> Tensor:
        """The potential kept after the step: reset, then the lower bound."""
        r = self.reset(v, s, self.v_th)
        return r if self.min_v is None else r.clamp(min=self.min_v)

    @property
    def binary_hard_reset(self) -> bool:
        """True for 0/1 spikes, reset to zero and no bound (the LIF of the paper's nets).

        Then :math:`r = v - v s`, :math:`\\partial r / \\partial v = 1 - s` and
        :math:`\\partial r / \\partial s = -v`, which the fused loop uses directly (fewer passes over
        memory than the general reset and bound).
        """
        binary = isinstance(self.fire, SpikeAtOrAbove | SpikeAbove)
        return binary and isinstance(self.reset, ResetToZero) and self.min_v is None

    def bound_mask(self, v: Tensor, s: Tensor) -> Tensor | float:
        """d(bound)/d(reset output): 1 where the bound lets the value through (as ``clamp`` does)."""
        if self.min_v is None:
            return 1.0
        return float_mask(torch.ge, self.reset(v, s, self.v_th), self.min_v)


HALF_DTYPES = (torch.float16, torch.bfloat16)


def widened(x: Tensor) -> Tensor:
    """``x`` in float32 when it is float16 or bfloat16, else ``x`` itself.

    Neurons integrate, compare with the threshold and evaluate their surrogate gradient on the
    widened input (also inside an autocast region, whose input current may arrive in half
    precision): a half-precision membrane rounds away small inputs, moves the threshold (0.3 is
    0.30078 in bfloat16) and coarsens the surrogate. Spikes go back in the input's dtype, exactly
    (0/1 and small counts are exact in every float type).
    """
    return x.float() if x.dtype in HALF_DTYPES else x


Loop = Callable[[Tensor, Tensor, FirstOrderDynamics, bool], tuple[Tensor, Tensor | None]]
"""``loop(inputs [T, B, ...], leak, dynamics, keep_membrane) -> (spikes, membrane or None)``."""


def reference_loop(
    inputs: Tensor, leak: Tensor, dynamics: FirstOrderDynamics, keep_membrane: bool
) -> tuple[Tensor, Tensor | None]:
    """Step-by-step autograd loop of the first-order neuron (see the module docstring).

    Args:
        inputs: input current I, shape [T, B, ...].
        leak: 0-dim tensor, factor on the kept potential.
        dynamics: threshold, firing, surrogate, reset and bound.
        keep_membrane: also return the detached membrane potential before reset.

    Returns:
        spikes [T, B, ...] and the membrane [T, B, ...] (or None).
    """
    r = torch.zeros_like(inputs[0])
    spikes, membrane = [], []
    for i_t in inputs:
        v = leak * r + i_t
        s = surrogate_spike(v, dynamics.v_th, dynamics.fire, dynamics.surrogate)
        r = dynamics.kept(v, s)
        spikes.append(s)
        if keep_membrane:
            membrane.append(v.detach())
    return torch.stack(spikes), (torch.stack(membrane) if keep_membrane else None)


class _FusedFirstOrder(torch.autograd.Function):
    """Forward loop without a graph; backward is the reverse-time chain rule of that loop.

    With :math:`\\bar{a}` the gradient of the loss with respect to ``a``, :math:`\\sigma` the
    surrogate and :math:`m` the bound mask, the chain rule through the reset and bound,
    :math:`r[t] = \\max(\\mathrm{reset}(v[t], s[t]), v_{min})`, and through the next step,
    :math:`v[t+1] = \\lambda r[t] + I[t+1]`, is

    .. math::
        A[t] = \\sigma(v[t]), \\qquad
        B[t] = \\lambda \\, m[t] \\left(\\frac{\\partial r}{\\partial s} A[t]
               + \\frac{\\partial r}{\\partial v}\\right), \\\\
        \\bar{I}[T-1] = \\bar{v}[T-1] = A[T-1] \\bar{s}[T-1], \\qquad
        \\bar{I}[t] = \\bar{v}[t] = A[t] \\bar{s}[t] + B[t] \\, \\bar{v}[t+1], \\qquad
        \\bar{\\lambda} = \\sum_{t \\ge 1} \\bar{v}[t] \\, r[t-1]

    For 0/1 spikes with a reset to zero and no bound (:attr:`FirstOrderDynamics.binary_hard_reset`)
    this is computed as :math:`\\bar{v}[t] = A[t] (\\bar{s}[t] - v[t] n) + (1 - s[t]) n` with
    :math:`n = \\lambda \\bar{v}[t+1]`: the same value, in about half the passes over memory.

    The membrane output carries no gradient, and none is materialised for it (autograd would
    otherwise fill a [T, B, ...] tensor with zeros at every backward pass).

    Only ``v`` is saved; ``s``, ``A`` and ``B`` are recomputed one step at a time. Whole-[T, ...]
    temporaries are avoided on purpose: on CPU, step-sized temporaries are recycled by the
    allocator and stay in cache, while [T, ...]-sized ones were measured 3x slower.
    """

    @staticmethod
    def forward(ctx, inputs: Tensor, leak: Tensor, dynamics: FirstOrderDynamics):
        membrane = torch.empty_like(inputs)
        spikes = torch.empty_like(inputs)
        integrate(inputs.__getitem__, leak, dynamics, membrane, spikes)
        ctx.save_for_backward(leak, membrane)
        ctx.dynamics = dynamics
        ctx.mark_non_differentiable(membrane)
        ctx.set_materialize_grads(False)
        return spikes, membrane

    @staticmethod
    def backward(ctx, grad_spikes: Tensor, _grad_membrane: Tensor | None):
        leak, membrane = ctx.saved_tensors
        grad_inputs = torch.empty_like(membrane)
        grad_leak = integrate_backward(
            membrane, grad_spikes, leak, ctx.dynamics, grad_inputs.__getitem__, ctx.needs_input_grad[1]
        )
        return grad_inputs, grad_leak, None


def integrate(
    input_at: Callable[[int], Tensor],
    leak: Tensor,
    dynamics: FirstOrderDynamics,
    membrane: Tensor,
    spikes: Tensor,
) -> None:
    """The forward loop of :class:`_FusedFirstOrder`: write v and s of every step into ``membrane``
    and ``spikes`` ([T, B, ...]); ``input_at(t)`` is I[t] [B, ...] (a slice of a whole input, or a
    step computed when asked: the form that lets attention feed the loop without a [T, ...] input)."""
    r = torch.zeros_like(membrane[0])
    binary_hard_reset = dynamics.binary_hard_reset
    for t in range(membrane.shape[0]):
        v = torch.mul(leak, r, out=membrane[t]).add_(input_at(t))
        s = dynamics.fire(v, dynamics.v_th, out=spikes[t])
        r = torch.addcmul(v, v, s, value=-1) if binary_hard_reset else dynamics.kept(v, s)


def integrate_backward(
    membrane: Tensor,
    grad_spikes: Tensor,
    leak: Tensor,
    dynamics: FirstOrderDynamics,
    grad_at: Callable[[int], Tensor],
    need_leak: bool,
    on_step: Callable[[int, Tensor], None] | None = None,
) -> Tensor | None:
    """The reverse loop of :class:`_FusedFirstOrder` (its docstring has the equations).

    Writes dL/dI[t] = dL/dv[t] [B, ...] into ``grad_at(t)`` for t = T-1 .. 0; dL/dv[t + 1] is read
    back from ``grad_at(t + 1)``, so two alternating buffers suffice. ``on_step(t, grad)`` is
    called once each step's gradient is final (where attention turns it into its own gradients
    step by step). Returns dL/d(leak) (``leak``'s shape) when ``need_leak``, else None.
    """
    dyn = dynamics
    grad_leak = torch.zeros_like(membrane[0]) if need_leak else None
    binary_hard_reset = dyn.binary_hard_reset
    steps = membrane.shape[0]
    for t in reversed(range(steps)):
        v = membrane[t]
        direct = dyn.surrogate(v, dyn.v_th)
        if t + 1 == steps:
            grad_v = torch.mul(direct, grad_spikes[t], out=grad_at(t))
        else:
            grad_next = grad_at(t + 1)
            s = dyn.fire(v, dyn.v_th)
            if need_leak:
                grad_leak.addcmul_(grad_next, dyn.kept(v, s))
            if binary_hard_reset:
                scaled_next = grad_next * leak
                grad_v = torch.addcmul(grad_spikes[t], v, scaled_next, value=-1, out=grad_at(t))
                grad_v.mul_(direct).add_(scaled_next.addcmul_(scaled_next, s, value=-1))
            else:
                grad_v = torch.mul(direct, grad_spikes[t], out=grad_at(t))
                dr_dv, dr_ds = dyn.reset.partials(v, s, dyn.v_th)
                through_reset = direct.mul_(dr_ds).add_(dr_dv).mul_(leak * dyn.bound_mask(v, s))
                grad_v.addcmul_(through_reset, grad_next)
        if on_step is not None:
            on_step(t, grad_v)
    return grad_leak.sum().reshape(leak.shape) if need_leak else None


def fused_loop(
    inputs: Tensor, leak: Tensor, dynamics: FirstOrderDynamics, keep_membrane: bool
) -> tuple[Tensor, Tensor | None]:
    """Fused multi-step loop of the first-order neuron; same contract as :func:`reference_loop`.

    Memory kept for backward: the membrane before reset, [T, B, ...]. Spikes, resets and
    surrogates are recomputed from it in the backward pass.
    """
    spikes, membrane = _FusedFirstOrder.apply(inputs, leak, dynamics)
    return spikes, (membrane if keep_membrane else None)


LOOPS: dict[str, Loop] = {"fused": fused_loop, "reference": reference_loop}
"""Loop implementations by backend name."""
