"""Exact folds of batch norm and average pooling into the weights before them.

Batch norm in eval mode is an affine map per output channel c:

.. math::
    \\mathrm{BN}(z)_c = \\gamma_c \\frac{z_c - \\mu_c}{\\sqrt{\\sigma^2_c + \\epsilon}} + \\beta_c
                    = a_c z_c + (\\beta_c - a_c \\mu_c), \\qquad
    a_c = \\frac{\\gamma_c}{\\sqrt{\\sigma^2_c + \\epsilon}}

so for z = W x + b: W'_c = a_c W_c and b'_c = a_c (b_c - \\mu_c) + \\beta_c give BN(W x + b) = W' x + b'.

Average pooling over non-overlapping k x k windows of a conv output is sum pooling of the same conv
with W / k^2 and b / k^2: avg_k(W x + b) = sum_k((W x + b) / k^2) (FACTS.md section 3).
"""

from __future__ import annotations

import numpy as np
from torch import nn


def fold_batch_norm(
    weight: np.ndarray, bias: np.ndarray | None, bn: nn.BatchNorm2d | nn.BatchNorm1d
) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') with BN(W x + b) = W' x + b' (eval-mode statistics; equation in the module docstring).

    Args:
        weight: [C_out, ...] (conv [C_out, C_in, kh, kw] or linear [out, in]).
        bias: [C_out] or None (zero).
        bn: the batch norm after the op (running mean / var; affine optional).

    Returns:
        float64 weight of ``weight``'s shape and bias [C_out].
    """
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones_like(mean)
    beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros_like(mean)
    a = gamma / np.sqrt(var + bn.eps)
    b = np.zeros_like(mean) if bias is None else np.asarray(bias, dtype=np.float64)
    folded = np.asarray(weight, dtype=np.float64) * a.reshape(-1, *([1] * (weight.ndim - 1)))
    return folded, a * (b - mean) + beta


def avg_to_sum_scale(kernel_size: int) -> float:
    """The factor 1 / k^2 that turns a k x k average pool into a sum pool when applied to the weights."""
    return 1.0 / float(kernel_size) ** 2
