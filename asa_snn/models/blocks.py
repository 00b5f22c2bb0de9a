"""Building blocks of the spiking networks: stateless layers applied to every time step, and the
conv / linear blocks with an attention slot.

Tensors are [T, B, C, H, W] (conv) or [T, B, F] (linear), time steps first. A stateless layer
(conv, batch norm, pooling, linear) runs once on the T*B frames stacked together; only the neurons
loop over time.

Conv blocks keep their frames channels-last in memory (strides of [T, B, H, W, C], the logical
shape stays [T, B, C, H, W]): oneDNN, PyTorch's CPU convolution, then needs no reorder of its
input and output. A training step of arch A took 0.80x the time of NCHW frames on a 2-core CPU
(benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from asa_snn.errors import InputFormatError
from asa_snn.models.batch_norm_pool import batch_norm_then_avg_pool


def over_time(module: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Apply a stateless per-frame ``module`` to every step of ``x`` [T, B, ...] at once."""
    steps, batch = x.shape[:2]
    y = module(x.flatten(0, 1))
    return y.unflatten(0, (steps, batch))


def to_memory_format(x: Tensor, memory_format: torch.memory_format) -> Tensor:
    """``x`` [T, B, C, H, W] with each frame laid out in ``memory_format`` (a copy only if needed)."""
    steps, batch = x.shape[:2]
    frames = x.flatten(0, 1).contiguous(memory_format=memory_format)
    return frames.unflatten(0, (steps, batch))


class SumPool2d(nn.Module):
    """Sum pooling over non-overlapping k x k windows: y = k^2 * avgpool_k(x).

    Speck pools by summing spikes (FACTS.md section 3). Shape: [N, C, H, W] -> [N, C, H/k, W/k].
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.pool = nn.AvgPool2d(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x) * (self.kernel_size**2)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


def pool_window(pool: nn.Module | None) -> tuple[int, float] | None:
    """(k, gain) when ``pool`` is ``gain`` times an average over non-overlapping k x k windows
    (exactly an ``AvgPool2d`` with stride = kernel, no padding and no divisor override, or a
    :class:`SumPool2d`), else None."""
    gain = 1.0
    if type(pool) is SumPool2d:
        pool, gain = pool.pool, float(pool.kernel_size**2)
    if type(pool) is not nn.AvgPool2d or not isinstance(pool.kernel_size, int):
        return None
    k = pool.kernel_size
    windows = pool.stride in (k, (k, k)) and pool.padding in (0, (0, 0)) and not pool.ceil_mode
    return (k, gain) if windows and pool.divisor_override is None else None


def make_pool(kind: str | None, kernel_size: int) -> nn.Module | None:
    """``"avg"``, ``"max"``, ``"sum"`` pooling over k x k windows, or None for ``None``."""
    if kind is None:
        return None
    pools = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d, "sum": SumPool2d}
    return pools[kind](kernel_size)


_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks")
_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hooked(module: nn.Module) -> bool:
    """True when a hook (forward, pre-forward or backward; of the module, one of its submodules,
    or every module) would expect ``module``'s own call."""
    if any(getattr(torch.nn.modules.module, name, None) for name in _GLOBAL_HOOKS):
        return True
    return any(getattr(m, name, None) for m in module.modules() for name in _MODULE_HOOKS)


class ConvBlock(nn.Module):
    """One spiking conv layer with its attention slot, in the released code's order::

        [pre_pool] -> conv -> [batch norm] -> [pool] -> attention -> neuron -> [post_pool] -> [dropout]

    ``pool`` (before the neuron) is where the paper's nets average-pool; ``post_pool`` (after the
    neuron) is where a Speck core sum-pools its spikes; ``pre_pool`` is the 5-layer net's max-pool
    in front of the conv. Attention scales the input current after batch norm, before the neuron.
    Batch norm then an average or sum pool run as one step (:mod:`asa_snn.models.batch_norm_pool`):
    pooling first, then the affine, with the same values and gradients. Attention and neuron run
    as one pass where the attention can feed the neuron's loop step by step (ASA's stepwise
    backend on the CPU with a LIF or IAF neuron: ``attend_and_fire``), with the same spikes.

    Shape:
        [T, B, C_in, H, W] -> [T, B, C_out, H', W'].
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        neuron: nn.Module,
        attention: nn.Module,
        batch_norm: bool = True,
        pool: nn.Module | None = None,
        pre_pool: nn.Module | None = None,
        post_pool: nn.Module | None = None,
        dropout: float = 0.0,
        memory_format: torch.memory_format = torch.channels_last,
    ) -> None:
        super().__init__()
        self.memory_format = memory_format
        self.pre_pool = pre_pool
        self.conv = conv
        self.bn = nn.BatchNorm2d(conv.out_channels) if batch_norm else None
        self.pool = pool
        self.attention = attention
        self.neuron = neuron
        self.post_pool = post_pool
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        x = to_memory_format(x, self.memory_format)
        for stage in self._stages_before_attention():
            x = over_time(stage, x)
        x = self._attend_and_fire(x)
        for stage in (self.post_pool, self.dropout):
            if stage is not None:
                x = over_time(stage, x)
        return x

    def _attend_and_fire(self, x: Tensor) -> Tensor:
        """neuron(attention(x)); as one pass where the attention can feed the neuron's loop step by
        step (``attend_and_fire``, ASA's stepwise backend on the CPU) and no hook watches either
        module, which then must see its own call."""
        fire = getattr(self.attention, "attend_and_fire", None)
        if fire is not None and not (_hooked(self.attention) or _hooked(self.neuron)):
            spikes = fire(x, self.neuron)
            if spikes is not None:
                return spikes
        return self.neuron(self.attention(x))

    def _stages_before_attention(self) -> list[Callable[[Tensor], Tensor]]:
        """pre_pool, conv, then batch norm and pool: as one step when they fuse (not when a hook
        watches either module, which then must see its own call)."""
        stages = [self.pre_pool, self.conv]
        window = pool_window(self.pool)
        bn = self.bn
        fusable = type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats
        if window is not None and fusable and not (_hooked(bn) or _hooked(self.pool)):
            stages.append(partial(batch_norm_then_avg_pool, bn=self.bn, k=window[0], gain=window[1]))
        else:
            stages += [self.bn, self.pool]
        return [stage for stage in stages if stage is not None]


class LinearBlock(nn.Module):
    """A spiking fully connected layer: [flatten] -> linear -> neuron -> [dropout].

    Shape:
        [T, B, ...] -> [T, B, out_features] (inputs of rank > 3 are flattened per step).
    """

    def __init__(self, linear: nn.Linear, neuron: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = linear
        self.neuron = neuron
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.neuron(over_time(self.linear, x.flatten(2)))
        return over_time(self.dropout, x) if self.dropout is not None else x


def check_frames(x: Tensor, expected: tuple[int, int, int], owner: str) -> None:
    """Raise :class:`InputFormatError` unless ``x`` is [T, B, C, H, W] with (C, H, W) == ``expected``."""
    if x.ndim != 5 or tuple(x.shape[2:]) != tuple(expected):
        raise InputFormatError(
            f"{owner}: input must be [T, B, C, H, W] with C,H,W = {tuple(expected)}, "
            f"got shape {tuple(x.shape)}"
        )
