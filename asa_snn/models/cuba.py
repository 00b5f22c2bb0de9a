"""Current-based LIF neuron (Loihi's neuron model) in floating point."""

from __future__ import annotations

import torch
from torch import Tensor

from asa_snn.errors import AsaSnnError
from asa_snn.models.firing import ResetToZero, SpikeAbove
from asa_snn.models.first_order import widened
from asa_snn.models.recording import SpikingNeuron
from asa_snn.models.surrogate import SingleExponential, Surrogate, surrogate_spike

_SPIKE_ABOVE = SpikeAbove()
_RESET_TO_ZERO = ResetToZero()


class CubaLIF(SpikingNeuron):
    """Current-based leaky integrate-and-fire neuron, float version of Lava's CUBA LIF (FACTS.md section 4).

    .. math::
        u[t] = (1 - d_u) \\, u[t-1] + X[t], \\\\
        v[t] = (1 - d_v) \\, v_r[t-1] + u[t] + b, \\\\
        s[t] = H(v[t] - v_{th}) \\;\\; (\\text{spike only when } v[t] > v_{th}, \\text{ strictly}), \\\\
        v_r[t] = v[t] \\, (1 - s[t]), \\qquad u[-1] = v_r[-1] = 0

    After a spike the voltage restarts from 0 while the current ``u`` keeps its value.

    Mapping to a Loihi / netx neuron group (done by the quantizing stage, stated here so the two
    agree): with integer weights ``round(64 w)`` (weight scale 2^6), ``iDecay = round(4096 d_u)``,
    ``vDecay = round(4096 d_v)`` and ``vThMant = round(64 v_th)``. Lava's bit-accurate model then
    decays ``u`` by ``(4096 - iDecay) / 4096 = 1 - d_u`` and ``v`` by ``1 - d_v`` per step and fires
    when ``v > vThMant << 6``, the same strict comparison as here.

    Args:
        du: current decay fraction per step, in [0, 1] (0 keeps the current forever).
        dv: voltage decay fraction per step, in [0, 1].
        v_th: threshold, > 0 (default 1.0).
        bias: constant input added to ``v`` every step (default 0).
        surrogate: surrogate gradient strategy (default single exponential of width 0.5 v_th).

    Shape:
        Input X: [T, B, ...]. Output s: same shape, 0/1 floats.
    """

    def __init__(
        self,
        du: float,
        dv: float,
        v_th: float = 1.0,
        bias: float = 0.0,
        surrogate: Surrogate = SingleExponential(width=0.5),  # noqa: B008 (frozen dataclass)
    ) -> None:
        super().__init__()
        for field, value in (("du", du), ("dv", dv)):
            if not 0 <= value <= 1:
                raise AsaSnnError(f"CubaLIF.{field} must lie in [0, 1], got {value!r}")
        if not v_th > 0:
            raise AsaSnnError(f"CubaLIF.v_th must be > 0, got {v_th!r}")
        self.du, self.dv, self.v_th, self.bias = du, dv, v_th, bias
        self.surrogate = surrogate

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        wide = widened(x)
        u = torch.zeros_like(wide[0])
        v_kept = torch.zeros_like(wide[0])
        spikes, membrane = [], []
        for x_t in wide:
            u = (1 - self.du) * u + x_t
            v = (1 - self.dv) * v_kept + u + self.bias
            s = surrogate_spike(v, self.v_th, _SPIKE_ABOVE, self.surrogate)
            v_kept = _RESET_TO_ZERO(v, s, self.v_th)
            spikes.append(s)
            if self.record:
                membrane.append(v.detach())
        return self.finish(torch.stack(spikes).to(x.dtype), torch.stack(membrane) if self.record else None)

    def extra_repr(self) -> str:
        return f"du={self.du}, dv={self.dv}, v_th={self.v_th}, bias={self.bias}"
