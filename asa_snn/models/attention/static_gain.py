"""The static gain that best reproduces an attention output from its input: the one formula the
fold (:mod:`asa_snn.convert.attention_fold`) and the foldability penalty
(:mod:`asa_snn.train.foldability`) share.

From the sums S_xy, S_xx, S_yy of X Y, X^2 and Y^2 over the samples a gain is fitted to (per
channel, or per neuron), the least-squares gain clipped to >= 0 (an attention scales its input
by sigmoid maps, so a negative gain is no attention's) and the squared error it leaves:

.. math::
    g = \\max(S_{xy} / S_{xx}, 0) \\; (1 \\text{ where } S_{xx} = 0), \\qquad
    \\sum (Y - g X)^2 = S_{yy} - 2 g S_{xy} + g^2 S_{xx}

Both work on torch tensors of any shape (elementwise), so the penalty's gradient flows through them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def least_squares_gains(xy: Tensor, xx: Tensor) -> Tensor:
    """g (module docstring) for sums S_xy, S_xx of the same shape; 1 where S_xx is 0."""
    fitted = (xy / torch.where(xx > 0, xx, torch.ones_like(xx))).clamp_min(0.0)
    return torch.where(xx > 0, fitted, torch.ones_like(fitted))


def squared_error(xy: Tensor, xx: Tensor, yy: Tensor, gains: Tensor) -> Tensor:
    """sum (Y - g X)^2 = S_yy - 2 g S_xy + g^2 S_xx, elementwise (``gains`` broadcast to the sums)."""
    return yy - 2 * gains * xy + gains * gains * xx
