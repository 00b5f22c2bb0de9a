"""Attention (ASA-1/2, SA, TCSA) folded into static per-channel gains from a calibration pass.

A chip has no attention unit. The attention module of a layer maps the input current X to Y, both
[T, B, C, H, W]. Over N calibration samples we fit the static gain that best reproduces Y from X in
the least-squares sense:

.. math::
    g_c = \\frac{\\sum_{t,b,h,w} Y_{c} X_{c}}{\\sum_{t,b,h,w} X_{c}^2}
    \\quad (\\text{per channel}), \\qquad
    G_{c,h,w} = \\frac{\\sum_{t,b} Y_{c,h,w} X_{c,h,w}}{\\sum_{t,b} X_{c,h,w}^2}
    \\quad (\\text{per neuron})

(argmin over g of sum (Y - g X)^2). ASA's output is X times sigmoid maps, so g lies in [0, 1];
a negative fit is clipped to 0. How much of the attention's effect the fold keeps, per layer:

.. math::
    \\text{kept} = 1 - \\frac{\\sum (Y - \\hat Y)^2}{\\sum (Y - X)^2}, \\qquad \\hat Y = g \\odot X

(1: the static gain reproduces the attention exactly; 0: no better than dropping the attention).
Both sums come from the per-(c, h, w) sums of XY, X^2 and Y^2 accumulated in one pass.

Why a per-channel gain on the input current is a per-channel threshold (and can be folded into
the weights). IAF (FACTS.md section 3), gain g > 0 on the current, threshold theta, lower bound m:

.. math::
    v_g[t] = r_g[t-1] + g I[t], \\; s = [v_g \\ge \\theta], \\;
    r_g = \\max(v_g - s\\theta, m).

Divide by g: with v = v_g / g the same spikes follow from v[t] = r[t-1] + I[t], s = [v >= theta / g],
r = max(v - s theta / g, m / g). So a gain g equals threshold theta / g with reset-by-subtraction
amount theta / g and lower bound m / g (reset to zero is scale-free). CUBA (Loihi):
u[t] = (1 - d_u) u + g I, v[t] = (1 - d_v) v_r + u + g b are linear in (I, b), so u_g = g u and
v_g = g v, and v_g > theta iff v > theta / g: the gain equals threshold theta / g with bias b / g.
Since a chip holds one threshold per layer (FACTS.md sections 3, 4), the fold puts g into the
weights instead: W_c <- g_c W_c, b_c <- g_c b_c, which gives the neuron exactly the current g I.

Spatial maps: Speck and Loihi hold no per-neuron gain or threshold, so the map G is averaged away
(the per-channel g_c is the least-squares average of the map); the generic target keeps the
residual map G / g_c as a ``gain_map`` tensor [C, H, W] multiplying the current of each neuron.

Rate matching. The least-squares gains reproduce the attention's output current on average, but a
per-channel gain cannot suppress background the way ASA's spatial maps do, so a folded layer tends to
fire more than the live one. After the gains are folded, each attention layer in order (earlier
layers already matched) gets one more scalar s > 0 on all its folded gains, W_c <- s g_c W_c and
b_c <- s b_c, chosen so that the layer's total spike count over the calibration data, N(s), equals
the live model's count N_live on the same samples. By the gain / threshold identity above, scaling the
current by s is the threshold theta / s (IAF: lower bound m / s; CUBA: the bias stays b), so

.. math::
    N(s) = N_{\\theta / s}(I), \\qquad s^* : N(s^*) = N_{live}

is searched by bisection on s, running only the layer's neuron on its cached input current with
threshold theta / s. N(s) is non-decreasing in s for non-negative currents (a higher threshold
never adds spikes there); with negative currents it need not be, so the s whose count is closest to
N_live is kept. Speck and Loihi hold one threshold per layer, so the per-layer s is exactly
representable (folded into the weights like g, or equivalently as that layer's threshold theta / s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from asa_snn.convert.graph import NeuronSpec
from asa_snn.models.attention.static_gain import least_squares_gains, squared_error

GAIN_FLOOR = 1e-6
"""Gains below this (relative to the layer's largest gain) count as silenced channels."""


@dataclass
class AttentionStats:
    """Running sums over calibration data for one attention module, each [C, H, W] float64.

    Attributes:
        xy, xx, yy: sums over (t, b) of X*Y, X^2, Y^2.
        samples: calibration samples seen.
    """

    xy: np.ndarray
    xx: np.ndarray
    yy: np.ndarray
    samples: int = 0

    @classmethod
    def empty(cls, shape: tuple[int, int, int]) -> AttentionStats:
        """Zero sums for a [C, H, W] layer."""
        return cls(np.zeros(shape), np.zeros(shape), np.zeros(shape))

    def add(self, x: Tensor, y: Tensor) -> None:
        """Accumulate one batch: X, Y [T, B, C, H, W]."""
        x64, y64 = x.detach().double(), y.detach().double()
        self.xy += (x64 * y64).sum(dim=(0, 1)).cpu().numpy()
        self.xx += (x64 * x64).sum(dim=(0, 1)).cpu().numpy()
        self.yy += (y64 * y64).sum(dim=(0, 1)).cpu().numpy()
        self.samples += int(x.shape[1])

    def channel_gains(self) -> np.ndarray:
        """g_c [C] (module docstring), clipped to >= 0; 1 for a channel whose input was always 0
        (:func:`~asa_snn.models.attention.static_gain.least_squares_gains`)."""
        xy, xx = (torch.from_numpy(a.sum(axis=(1, 2))) for a in (self.xy, self.xx))
        return least_squares_gains(xy, xx).numpy()

    def neuron_gains(self) -> np.ndarray:
        """G [C, H, W] (module docstring), clipped to >= 0; the channel gain where X was always 0 there."""
        channel = np.broadcast_to(self.channel_gains()[:, None, None], self.xx.shape)
        fitted = least_squares_gains(torch.from_numpy(self.xy), torch.from_numpy(self.xx)).numpy()
        return np.where(self.xx > 0, fitted, channel)

    def kept_fraction(self, gains: np.ndarray) -> float:
        """1 - sum (Y - g X)^2 / sum (Y - X)^2 for gains [C] or [C, H, W]; 1.0 when Y == X."""
        g = torch.from_numpy(gains.reshape(-1, 1, 1) if gains.ndim == 1 else gains)
        sums = [torch.from_numpy(a) for a in (self.xy, self.xx, self.yy)]
        residual = float(squared_error(*sums, g).sum())
        effect = float(squared_error(*sums, torch.ones(())).sum())
        return 1.0 - residual / effect if effect > 0 else 1.0


def collect_attention_stats(
    model: nn.Module, attention: dict[str, nn.Module], batches: list[Tensor]
) -> dict[str, AttentionStats]:
    """Run ``model`` (eval mode, no gradient) on ``batches`` of frames [T, B, C, H, W] and sum the
    statistics of every attention module in ``attention`` (layer name -> module)."""
    stats: dict[str, AttentionStats] = {}

    def hook(name: str, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        x = inputs[0]
        if name not in stats:
            stats[name] = AttentionStats.empty(tuple(x.shape[2:]))
        stats[name].add(x, output)

    handles = [
        module.register_forward_hook(lambda _m, i, o, n=name: hook(n, i, o))
        for name, module in attention.items()
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for frames in batches:
                model(frames)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return stats


def threshold_for_gain(spec: NeuronSpec, gain: float) -> NeuronSpec:
    """The neuron that, fed the current I, spikes as ``spec`` fed g I (g > 0; module docstring).

    IAF: threshold theta / g (the subtracted amount follows it), min_v m / g. CUBA: threshold
    theta / g (the bias scales with the current, see :func:`fold_gain_into_weights`).
    """
    min_v = None if spec.min_v is None else spec.min_v / gain
    return replace(spec, threshold=spec.threshold / gain, min_v=min_v)


def fold_gain_into_weights(
    weight: np.ndarray, bias: np.ndarray | None, gains: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """W_c <- g_c W_c and b_c <- g_c b_c for gains [C_out] (weight [C_out, ...], bias [C_out])."""
    scaled = weight * gains.reshape(-1, *([1] * (weight.ndim - 1)))
    return scaled, None if bias is None else bias * gains


@dataclass(frozen=True)
class RateMatch:
    """Bisection for the per-layer rate-matching scalar s (module docstring, "Rate matching").

    Attributes:
        rel_tol: stop once |N(s) - N_live| <= rel_tol * N_live.
        iterations: at most this many bisection steps after bracketing.
        max_scale: the largest s tried when the fold under-fires (s doubles from 1 up to this).
    """

    rel_tol: float = 0.002
    iterations: int = 30
    max_scale: float = 64.0

    def solve(self, count: Callable[[float], float], target: float) -> tuple[float, float]:
        """The s (> 0) whose ``count(s)`` (spikes with gain s) is closest to ``target``, and that count.

        ``count(1.0)`` is the unmatched fold; ``target <= 0`` (a silent live layer) keeps s = 1.
        """
        start = count(1.0)
        best = (abs(start - target), 1.0, start)
        if target <= 0 or best[0] <= self.rel_tol * target:
            return 1.0, start
        lo, hi = (0.0, 1.0) if start > target else (1.0, 2.0)
        if start < target:
            high = count(hi)
            best = min(best, (abs(high - target), hi, high))
            while high < target and hi < self.max_scale:
                lo, hi = hi, 2.0 * hi
                high = count(hi)
                best = min(best, (abs(high - target), hi, high))
        for _ in range(self.iterations):
            if best[0] <= self.rel_tol * target:
                break
            mid = 0.5 * (lo + hi)
            value = count(mid)
            best = min(best, (abs(value - target), mid, value))
            lo, hi = (lo, mid) if value > target else (mid, hi)
        return best[1], best[2]
