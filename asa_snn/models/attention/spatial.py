"""The spatial-attention (SA) building block shared by ASA and MA-SNN's SA, plus input checks.

All attention modules of this package take the project-wide layout X of shape [T, B, C, H, W]
(time steps first) and sit after batch norm, before the spiking neuron: they scale the input
current (FACTS.md section 2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asa_snn.errors import AsaSnnError


def check_input(x: Tensor, module: str, channels: int | None = None, timesteps: int | None = None) -> None:
    """Raise :class:`AsaSnnError` unless ``x`` has the layout [T, B, C, H, W] the module expects.

    Args:
        x: input current, shape [T, B, C, H, W].
        module: module name used in the message (e.g. ``"AdvancedSpatialAttention(asa1)"``).
        channels: C the module was built for, or None when any C works.
        timesteps: T (steps) the module was built for, or None when any T works.
    """
    if x.dim() != 5:
        raise AsaSnnError(
            f"{module}: input has rank {x.dim()} (shape {tuple(x.shape)}), expected rank 5 [T, B, C, H, W]"
        )
    if timesteps is not None and x.shape[0] != timesteps:
        raise AsaSnnError(
            f"{module}: input has T={x.shape[0]} time steps (shape {tuple(x.shape)}), "
            f"expected T={timesteps} as built"
        )
    if channels is not None and x.shape[2] != channels:
        raise AsaSnnError(
            f"{module}: input has C={x.shape[2]} channels (shape {tuple(x.shape)}), "
            f"expected C={channels} as built"
        )


def mean_max_map(x: Tensor, dims: tuple[int, ...], mean_divisor: float = 1.0) -> Tensor:
    """Stack the mean (divided by ``mean_divisor``) and the max of ``x`` over ``dims``.

    The two statistics land on a new axis placed just before the last two (H, W) axes:
    for x [T, B, C, H, W] and dims (0, 2) the result is [B, 2, H, W]; for dims (2,) it is
    [T, B, 2, H, W].
    """
    mean = x.mean(dim=dims) / mean_divisor
    peak = x.amax(dim=dims)
    return torch.stack([mean, peak], dim=-3)


class SpatialMap(nn.Module):
    """Spatial attention map from pooled statistics (the SA function of ASA, Eq. 10; CBAM's SA).

        A = sigmoid( f^{k x k}( [F_mean ; F_max] ) )

    with f^{k x k} a k x k convolution from 2 channels to 1, no bias, padding k // 2 (so H, W
    are kept). Holds 2 * k * k parameters: 18 for k = 3 (ASA), 98 for k = 7 (MA-SNN).

    Args:
        kernel_size: odd k.

    Shape:
        input [N, 2, H, W] (mean and max planes, see :func:`mean_max_map`); output [N, 1, H, W]
        in (0, 1).
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise AsaSnnError(f"SpatialMap: kernel_size={kernel_size}, expected an odd integer >= 1")
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, pooled: Tensor) -> Tensor:
        """Return the map A, shape [N, 1, H, W], for pooled planes [N, 2, H, W]."""
        return torch.sigmoid(self.conv(pooled))

    def extra_macs(self, H: int, W: int) -> int:
        """Multiply-accumulates of one map: the 2 -> 1 k x k convolution at every pixel."""
        return 2 * self.kernel_size * self.kernel_size * H * W


def check_reduction(module: str, field: str, size: int, reduction: int) -> int:
    """Return ``size // reduction``, the hidden width of a bias-free FC ``size -> size/r -> size``.

    Raises :class:`AsaSnnError` naming ``module`` and ``field`` (e.g. "timesteps") when the
    reduction is not a positive integer or leaves fewer than one hidden unit.
    """
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
        raise AsaSnnError(f"{module}: reduction={reduction!r}, expected an integer >= 1")
    if size // reduction < 1:
        raise AsaSnnError(
            f"{module}: {field}={size} with reduction={reduction} leaves {field} // reduction = 0 hidden "
            f"units, expected {field} >= {reduction}"
        )
    return size // reduction
