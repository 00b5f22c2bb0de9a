"""Multi-step spiking neurons: input current [T, B, ...] (time steps first) to spikes of the same shape.

Each forward pass starts from zero state, so samples and calls are independent. The firing rule,
reset and surrogate gradient are strategy objects (:mod:`asa_snn.models.firing`,
:mod:`asa_snn.models.surrogate`). LIF, ParametricLIF and IAF run on the loops of
:mod:`asa_snn.models.first_order` (``backend="fused"`` by default, ``"reference"`` for the plain
autograd loop); CubaLIF lives in :mod:`asa_snn.models.cuba`. Half-precision input (float16,
bfloat16, e.g. inside an autocast region) is integrated in float32, surrogate gradients included
(:func:`asa_snn.models.first_order.widened`); spikes come back in the input's dtype. Recording of
membrane potentials: :func:`record_states`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asa_snn.errors import AsaSnnError
from asa_snn.models.cuba import CubaLIF
from asa_snn.models.firing import FiringRule, ResetBySubtraction, ResetRule, ResetToZero, SpikeAtOrAbove
from asa_snn.models.first_order import LOOPS, FirstOrderDynamics, Loop, fused_loop, widened
from asa_snn.models.recording import NeuronRecord, SpikingNeuron, record_states
from asa_snn.models.surrogate import ATan, Rectangular, SingleExponential, Surrogate

__all__ = ["IAF", "LIF", "CubaLIF", "NeuronRecord", "ParametricLIF", "SpikingNeuron", "record_states"]

_SPIKE_AT_OR_ABOVE = SpikeAtOrAbove()
_RESET_TO_ZERO = ResetToZero()


def _select_loop(owner: str, backend: str) -> Loop:
    if backend not in LOOPS:
        raise AsaSnnError(f"{owner}.backend must be one of {sorted(LOOPS)}, got {backend!r}")
    return LOOPS[backend]


def _fusable(neuron: SpikingNeuron, x: Tensor) -> bool:
    """Whether ``neuron``'s forward on ``x`` is the fused loop on ``x`` unchanged: its fused loop,
    not recording, and ``x`` not widened (float32 or float64)."""
    return neuron.loop is fused_loop and not neuron.record and widened(x) is x


def _check_threshold(owner: str, v_th: float) -> None:
    if not v_th > 0:
        raise AsaSnnError(f"{owner}.v_th must be > 0, got {v_th!r}")


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron of the 3-layer ASA nets (FACTS.md section 2).

    .. math::
        u[t] = h[t-1] + X[t], \\qquad
        s[t] = H(u[t] - v_{th}) \\;\\; (\\text{spike when } u[t] \\ge v_{th}), \\\\
        h[t] = \\gamma \\, u[t] \\, (1 - s[t]), \\qquad h[-1] = 0

    Hard reset to 0, with the decay :math:`\\gamma` applied after the reset; the reset is not
    detached (its gradient :math:`-\\gamma u \\, \\partial s / \\partial u` is kept). The backward pass
    uses ``surrogate`` for :math:`\\partial s / \\partial u` (default: box of width 0.5, height 2).

    Args:
        v_th: threshold (default 0.3).
        decay: leak factor :math:`\\gamma` in [0, 1] (default 0.3).
        surrogate: surrogate gradient strategy.
        reset: reset strategy (default to zero).
        backend: ``"fused"`` (default) or ``"reference"`` (step-by-step autograd).

    Shape:
        Input X: [T, B, ...]. Output s: same shape, 0/1 floats.
    """

    def __init__(
        self,
        v_th: float = 0.3,
        decay: float = 0.3,
        surrogate: Surrogate = Rectangular(width=0.5),  # noqa: B008 (frozen dataclass)
        reset: ResetRule = _RESET_TO_ZERO,
        backend: str = "fused",
    ) -> None:
        super().__init__()
        _check_threshold("LIF", v_th)
        if not 0 <= decay <= 1:
            raise AsaSnnError(f"LIF.decay must lie in [0, 1], got {decay!r}")
        self.v_th, self.decay, self.backend = v_th, decay, backend
        self.dynamics = FirstOrderDynamics(v_th, _SPIKE_AT_OR_ABOVE, surrogate, reset)
        self.loop = _select_loop("LIF", backend)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        wide = widened(x)
        spikes, membrane = self.loop(wide, wide.new_tensor(self.decay), self.dynamics, self.record)
        return self.finish(spikes.to(x.dtype), membrane)

    def first_order_step(self, x: Tensor) -> tuple[Tensor, FirstOrderDynamics] | None:
        """(decay, dynamics) where the fused loop runs on ``x`` as it is (see the base class)."""
        return (x.new_tensor(self.decay), self.dynamics) if _fusable(self, x) else None

    def extra_repr(self) -> str:
        return f"v_th={self.v_th}, decay={self.decay}, backend={self.backend!r}"


class ParametricLIF(SpikingNeuron):
    """Parametric LIF of the 5-layer ASA nets: one learnable time constant per layer.

    .. math::
        \\frac{1}{\\tau} = \\mathrm{sigmoid}(w), \\qquad
        V[t] = V_r[t-1] + \\frac{X[t] - V_r[t-1]}{\\tau}
             = \\left(1 - \\frac{1}{\\tau}\\right) V_r[t-1] + \\frac{1}{\\tau} X[t], \\\\
        s[t] = H(V[t] - v_{th}) \\;\\; (\\text{spike when } V[t] \\ge v_{th}), \\qquad
        V_r[t] = V[t] \\, (1 - s[t]), \\qquad V_r[-1] = 0

    The input is decayed, the reset (to 0, not detached) is hard; ``w`` receives gradients through
    both the leak and the input gain. Default surrogate: ATan with alpha = 2.

    Args:
        init_tau: initial time constant in steps, > 1 (default 2, i.e. ``w = 0``).
        v_th: threshold (default 1.0).
        surrogate: surrogate gradient strategy.
        reset: reset strategy (default to zero).
        backend: ``"fused"`` (default) or ``"reference"``.

    Shape:
        Input X: [T, B, ...]. Output s: same shape, 0/1 floats.

    Attributes:
        w: learnable scalar, ``tau = 1 / sigmoid(w)``.
    """

    def __init__(
        self,
        init_tau: float = 2.0,
        v_th: float = 1.0,
        surrogate: Surrogate = ATan(alpha=2.0),  # noqa: B008 (frozen dataclass)
        reset: ResetRule = _RESET_TO_ZERO,
        backend: str = "fused",
    ) -> None:
        super().__init__()
        _check_threshold("ParametricLIF", v_th)
        if not init_tau > 1:
            raise AsaSnnError(f"ParametricLIF.init_tau must be > 1 (steps), got {init_tau!r}")
        self.v_th, self.backend = v_th, backend
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1)))
        self.dynamics = FirstOrderDynamics(v_th, _SPIKE_AT_OR_ABOVE, surrogate, reset)
        self.loop = _select_loop("ParametricLIF", backend)

    @property
    def tau(self) -> Tensor:
        """Current time constant in steps, ``1 / sigmoid(w)``."""
        return 1 / torch.sigmoid(self.w.detach())

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        wide = widened(x)
        inv_tau = torch.sigmoid(self.w).to(wide.dtype)
        spikes, membrane = self.loop(wide * inv_tau, 1 - inv_tau, self.dynamics, self.record)
        return self.finish(spikes.to(x.dtype), membrane)

    def extra_repr(self) -> str:
        return f"tau={self.tau.item():.4g}, v_th={self.v_th}, backend={self.backend!r}"


class IAF(SpikingNeuron):
    """Non-leaky integrate-and-fire neuron, the only neuron of a Speck core (FACTS.md section 3).

    .. math::
        v[t] = r[t-1] + X[t], \\qquad s[t] = \\mathrm{fire}(v[t], v_{th}), \\\\
        r[t] = \\max(\\mathrm{reset}(v[t], s[t]), v_{min}), \\qquad r[-1] = 0

    ``fire``: :class:`~asa_snn.models.firing.SpikeAtOrAbove` (binary, default) or
    :class:`~asa_snn.models.firing.MultiSpike` (:math:`\\lfloor v / v_{th} \\rfloor` spikes).
    ``reset``: :class:`~asa_snn.models.firing.ResetBySubtraction` (:math:`v - s v_{th}`, default) or
    :class:`~asa_snn.models.firing.ResetToZero`. The lower bound applies to the kept potential
    after reset, as sinabs' ``min_v_mem`` does.

    Args:
        v_th: threshold (default 1.0).
        fire: firing rule strategy.
        reset: reset strategy.
        min_v: lower bound of the kept potential; None (default) for no bound.
        surrogate: surrogate gradient strategy (default single exponential of width 0.5 v_th;
            :class:`~asa_snn.models.surrogate.PeriodicExponential` suits multi-spike output).
        backend: ``"fused"`` (default) or ``"reference"``.

    Shape:
        Input X: [T, B, ...]. Output s: same shape (spike counts, floats).
    """

    def __init__(
        self,
        v_th: float = 1.0,
        fire: FiringRule = _SPIKE_AT_OR_ABOVE,
        reset: ResetRule = ResetBySubtraction(),  # noqa: B008 (frozen dataclass)
        min_v: float | None = None,
        surrogate: Surrogate = SingleExponential(width=0.5),  # noqa: B008 (frozen dataclass)
        backend: str = "fused",
    ) -> None:
        super().__init__()
        _check_threshold("IAF", v_th)
        if min_v is not None and not min_v < v_th:
            raise AsaSnnError(f"IAF.min_v must be below v_th={v_th!r}, got {min_v!r}")
        self.v_th, self.min_v, self.backend = v_th, min_v, backend
        self.dynamics = FirstOrderDynamics(v_th, fire, surrogate, reset, min_v)
        self.loop = _select_loop("IAF", backend)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        wide = widened(x)
        spikes, membrane = self.loop(wide, wide.new_tensor(1.0), self.dynamics, self.record)
        return self.finish(spikes.to(x.dtype), membrane)

    def first_order_step(self, x: Tensor) -> tuple[Tensor, FirstOrderDynamics] | None:
        """(1, dynamics) where the fused loop runs on ``x`` as it is (see the base class)."""
        return (x.new_tensor(1.0), self.dynamics) if _fusable(self, x) else None

    def extra_repr(self) -> str:
        return f"v_th={self.v_th}, min_v={self.min_v}, backend={self.backend!r}"
