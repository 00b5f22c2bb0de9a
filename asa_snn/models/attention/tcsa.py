"""MA-SNN's attention peers (Yao et al., "Attention Spiking Neural Networks", TPAMI 2023): SA and TCSA.

Same slot and layout as ASA: input current X [T, B, C, H, W] after batch norm, before the spiking
neuron; every module returns a tensor of the same shape and computes everything per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asa_snn.models.attention.spatial import SpatialMap, check_input, check_reduction, mean_max_map


class SharedMlpGate(nn.Module):
    """Squeeze-and-excitation gate over the last axis of size n, shared by the mean and max inputs.

        g = sigmoid( W2 ReLU(W1 z_avg) + W2 ReLU(W1 z_max) ),   W1: n -> n/r,  W2: n/r -> n, no bias

    2 n floor(n/r) parameters.

    Args:
        size: n.
        reduction: r, an integer with n // r >= 1.
        module: name used in error messages.
        field: what n counts ("timesteps", "channels"), used in error messages.

    Shape: z_avg, z_max [..., n] -> g [..., n] in (0, 1).
    """

    def __init__(self, size: int, reduction: int, module: str, field: str) -> None:
        super().__init__()
        self.hidden = check_reduction(module, field, size, reduction)
        self.mlp = nn.Sequential(
            nn.Linear(size, self.hidden, bias=False),
            nn.ReLU(),
            nn.Linear(self.hidden, size, bias=False),
        )

    def forward(self, z_avg: Tensor, z_max: Tensor) -> Tensor:
        """Return the gate g for pooled descriptors of shape [..., n]."""
        return torch.sigmoid(self.mlp(z_avg) + self.mlp(z_max))

    def mlp_macs(self, size: int) -> int:
        """MACs of one MLP pass over a length-n vector: 2 n floor(n/r)."""
        return 2 * size * self.hidden


class TemporalAttention(nn.Module):
    """Temporal attention: one weight per (sample, step), an SE gate over T.

        z_avg[t] = mean_{c,h,w} X[t],  z_max[t] = max_{c,h,w} X[t],  g = SharedMlpGate_T(z_avg, z_max)
        Y[t] = g[t] X[t]

    Shape: [T, B, C, H, W] -> same. 2 T floor(T/r) parameters (1800 for T = 60, r = 4).
    """

    def __init__(self, timesteps: int, reduction: int = 4) -> None:
        super().__init__()
        self.timesteps = timesteps
        self.gate = SharedMlpGate(timesteps, reduction, "TemporalAttention(tcsa)", "timesteps")

    def forward(self, x: Tensor) -> Tensor:
        """Scale each step of each sample by its temporal weight."""
        check_input(x, "TemporalAttention(tcsa)", timesteps=self.timesteps)
        z_avg = x.mean(dim=(2, 3, 4)).transpose(0, 1)
        z_max = x.amax(dim=(2, 3, 4)).transpose(0, 1)
        weights = self.gate(z_avg, z_max).transpose(0, 1)
        return weights[..., None, None, None] * x

    def extra_macs(self, T: int, C: int, H: int, W: int) -> int:
        """Two MLP passes (mean, max), one scaling of every entry T*C*H*W (rule: asa.py)."""
        return 2 * self.gate.mlp_macs(T) + T * C * H * W


class ChannelAttention(nn.Module):
    """Channel attention: one weight per (sample, step, channel), an SE gate over C at each step.

        z_avg[t, c] = mean_{h,w} X[t, c],  z_max[t, c] = max_{h,w} X[t, c]
        g[t] = SharedMlpGate_C(z_avg[t], z_max[t]),   Y[t, c] = g[t, c] X[t, c]

    The released MA-SNN code pools over (T, H, W), one weight per channel for all steps; here the
    weights are per step, as specified for this project. Same parameter count either way:
    2 C floor(C/r) (2048 for C = 64, 8192 for C = 128, r = 4).

    Shape: [T, B, C, H, W] -> same.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.channels = channels
        self.gate = SharedMlpGate(channels, reduction, "ChannelAttention(tcsa)", "channels")

    def forward(self, x: Tensor) -> Tensor:
        """Scale each channel of each step of each sample by its channel weight."""
        check_input(x, "ChannelAttention(tcsa)", channels=self.channels)
        weights = self.gate(x.mean(dim=(3, 4)), x.amax(dim=(3, 4)))
        return weights[..., None, None] * x

    def extra_macs(self, T: int, C: int, H: int, W: int) -> int:
        """Two MLP passes (mean, max) per step, one scaling of every entry (rule: asa.py)."""
        return T * 2 * self.gate.mlp_macs(C) + T * C * H * W


class SpatialAttention(nn.Module):
    """MA-SNN's spatial attention (SA): one map per (sample, step) from channel statistics.

        A[t] = sigmoid( f^{7x7}([ mean_c X[t] ; max_c X[t] ]) ),   Y[t] = A[t] X[t]

    f^{7x7}: 2 -> 1 conv, no bias, padding 3: 98 parameters (+294 on three layers, Table 3). The
    released MA-SNN code pools over all T*C entries of a sample (one map for all steps) and
    defaults to a 3x3 kernel; the 98 parameters of Table 3 imply 7x7. No ReLU follows (the
    released code has one, which would clip the negative input current of the next neuron).

    Shape: [T, B, C, H, W] -> same.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.spatial_map = SpatialMap(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """Scale every pixel of each step of each sample by its spatial weight."""
        check_input(x, "SpatialAttention(sa)")
        pooled = mean_max_map(x, (2,))
        maps = self.spatial_map(pooled.flatten(0, 1)).unflatten(0, pooled.shape[:2])
        return maps * x

    def extra_macs(self, T: int, C: int, H: int, W: int) -> int:
        """One 7x7 conv per step, one scaling of every entry (rule: asa.py)."""
        return T * self.spatial_map.extra_macs(H, W) + T * C * H * W


class TemporalChannelSpatialAttention(nn.Module):
    """MA-SNN's TCSA, applied sequentially as in the released MA-SNN code:

        X1 = TA(X) = g_T * X,   X2 = CA(X1) = g_C * X1,   Y = SA(X2) = A * X2

    (the gates of each stage are computed from the previous stage's output). Parameters per layer:
    2 T floor(T/4) + 2 C floor(C/4) + 98; with T = 60 and C = 64, 128, 128 the three layers add
    3 * 1800 + 2048 + 8192 + 8192 + 3 * 98 = 24,126 (Table 3).

    Args:
        channels: C.
        timesteps: T.
        t_reduction: r of the temporal gate (default 4).
        c_reduction: r of the channel gate (default 4).

    Shape: [T, B, C, H, W] -> same.
    """

    def __init__(self, channels: int, timesteps: int, t_reduction: int = 4, c_reduction: int = 4) -> None:
        super().__init__()
        self.temporal = TemporalAttention(timesteps, t_reduction)
        self.channel = ChannelAttention(channels, c_reduction)
        self.spatial = SpatialAttention(7)

    def forward(self, x: Tensor) -> Tensor:
        """Return SA(CA(TA(X)))."""
        return self.spatial(self.channel(self.temporal(x)))

    def extra_macs(self, T: int, C: int, H: int, W: int) -> int:
        """Sum of the three stages' MACs (rule: asa.py)."""
        return sum(stage.extra_macs(T, C, H, W) for stage in (self.temporal, self.channel, self.spatial))
