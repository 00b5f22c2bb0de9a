"""Synaptic-operation counts from layer geometry: the one fan-out model of training and chip side (NumPy).

A synaptic op is one input event reaching one synapse. The count depends only on the layer's
geometry and on how many events arrived at each input position, so the training-side analysis
(:mod:`asa_snn.analysis.operations`, input maps recorded by hooks) and the chip side
(:mod:`asa_snn.simulators.operations`, input maps derived from a backend's spike maps) call the
same functions here and agree by construction.

Conv (cross-correlation in torch's convention, zero padding). Along one axis of input size N,
kernel k, stride s, padding p and dilation d::

    N_out    = floor((N + 2p - d (k - 1) - 1) / s) + 1
    count(i) = #{(o, j) : 0 <= o < N_out, 0 <= j < k, o s - p + j d = i}     (0 <= i < N)

count(i) is the number of output positions whose receptive field covers input coordinate i (for a
fixed o at most one tap j hits i). With C_in input and C_out output channels in g groups, an event
at input position (c, y, x) reaches

    fanout(c, y, x) = (C_out / g) * count_y(y) * count_x(x)

synapses: every output channel of its group, at every output position that sees it. The map does
not depend on c, and it is smaller on the border of a padded conv, where part of a receptive field
lies in the padding. A linear layer ``in -> out`` has ``fanout(i) = out`` for every input.

Dense operations per step (every synapse of every output position, padding included)::

    FLOPs(conv) = k_h k_w H_out W_out (C_in / g) C_out,        FLOPs(linear) = in * out

Synaptic ops (SOPs) of an input map E (input events per position)::

    SOP = sum_{c, y, x} E(c, y, x) fanout(c, y, x)
        = (C_out / g) * sum_{y, x} count_y(y) (sum_c E(c, y, x)) count_x(x)

Units: E is whatever the caller sums, and the SOP follows it. The project passes E per sample
summed over the T steps (an event-count frame or a spike map; a sum-pooled or multi-spike input
counts each unit as one event), so SOPs are per sample over one inference of T steps, the unit of
:class:`asa_snn.energy.model.LayerOps`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asa_snn.errors import AsaSnnError


def pair(value: object, name: str) -> tuple[int, int]:
    """An int or a two-element sequence as (h, w) ints; anything else is an error naming ``name``."""
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    if isinstance(value, list | tuple | np.ndarray) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise AsaSnnError(f"{name} is {value!r}; expected an int or a pair [h, w]")


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """N_out = floor((N + 2p - d (k - 1) - 1) / s) + 1 along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class ConvGeometry:
    """Geometry of a 2-D conv on one input frame (torch ``Conv2d`` conventions, zero padding).

    ``kernel_size``, ``stride``, ``padding``, ``dilation`` and ``input_hw`` accept an int or an
    (h, w) pair (list, tuple) and are stored as (h, w) tuples of ints.

    Attributes:
        in_channels, out_channels: C_in, C_out.
        kernel_size: (k_h, k_w).
        input_hw: (H, W) of the input map.
        stride, padding, dilation: (h, w) each; padding is symmetric zero padding.
        groups: g, dividing C_in and C_out.
        name: layer name for error messages.
    """

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    input_hw: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        where = f"conv {self.name!r}" if self.name else "conv"
        for key in ("kernel_size", "input_hw", "stride", "padding", "dilation"):
            object.__setattr__(self, key, pair(getattr(self, key), f"{where}: {key}"))
        for key in ("in_channels", "out_channels", "groups"):
            object.__setattr__(self, key, int(getattr(self, key)))
        positive = {"kernel_size": self.kernel_size, "stride": self.stride, "dilation": self.dilation}
        positive |= {"input_hw": self.input_hw, "groups": (self.groups,)}
        positive |= {"in_channels": (self.in_channels,), "out_channels": (self.out_channels,)}
        for key, values in positive.items():
            if min(values) < 1:
                raise AsaSnnError(f"{where}: {key} must be >= 1, got {values}")
        if min(self.padding) < 0:
            raise AsaSnnError(f"{where}: padding must be >= 0, got {self.padding}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise AsaSnnError(
                f"{where}: groups {self.groups} must divide in_channels {self.in_channels} "
                f"and out_channels {self.out_channels}"
            )
        if min(self.output_hw) < 1:
            raise AsaSnnError(
                f"{where}: input {self.input_hw} is smaller than the dilated kernel "
                f"{self.kernel_size} (dilation {self.dilation}, padding {self.padding}); no output"
            )

    @property
    def output_hw(self) -> tuple[int, int]:
        """(H_out, W_out)."""
        axes = zip(self.input_hw, self.kernel_size, self.stride, self.padding, self.dilation, strict=True)
        height, width = (output_size(*axis) for axis in axes)
        return height, width

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C_in, H, W): the shape of an input map."""
        return (self.in_channels, *self.input_hw)


@dataclass(frozen=True)
class LinearGeometry:
    """Geometry of a fully connected layer ``in_features -> out_features``; ``name`` for messages."""

    in_features: int
    out_features: int
    name: str = ""

    def __post_init__(self) -> None:
        if self.in_features < 1 or self.out_features < 1:
            where = f"linear {self.name!r}" if self.name else "linear"
            raise AsaSnnError(
                f"{where}: in_features and out_features must be >= 1, "
                f"got {self.in_features}, {self.out_features}"
            )

    @property
    def input_shape(self) -> tuple[int]:
        """(in_features,): the shape of an input map."""
        return (self.in_features,)


Geometry = ConvGeometry | LinearGeometry


def axis_fanout(size: int, kernel: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """count(i) of the module docstring: int64 [size], output positions covering input coordinate i."""
    out = output_size(size, kernel, stride, padding, dilation)
    covered = np.arange(max(out, 0))[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    inside = (covered >= 0) & (covered < size)
    return np.bincount(covered[inside], minlength=size).astype(np.int64)


def _axis_counts(geometry: ConvGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(count_y, count_x) of the module docstring."""
    g = geometry
    axes = zip(g.input_hw, g.kernel_size, g.stride, g.padding, g.dilation, strict=True)
    count_y, count_x = (axis_fanout(*axis) for axis in axes)
    return count_y, count_x


def fanout_map(geometry: Geometry) -> np.ndarray:
    """float64 [C_in, H, W] (conv) or [in] (linear): synapses one input event at each position reaches.

    Conv: ``(C_out / g) * count_y(y) * count_x(x)``; linear: ``out_features`` (module docstring).
    """
    if isinstance(geometry, LinearGeometry):
        return np.full(geometry.in_features, float(geometry.out_features))
    count_y, count_x = _axis_counts(geometry)
    per_position = np.outer(count_y, count_x).astype(np.float64) * (geometry.out_channels // geometry.groups)
    return np.broadcast_to(per_position, geometry.input_shape).copy()


def dense_flops(geometry: Geometry) -> int:
    """Dense operations per step: k_h k_w H_out W_out (C_in / g) C_out (conv), in * out (linear)."""
    if isinstance(geometry, LinearGeometry):
        return geometry.in_features * geometry.out_features
    (kh, kw), (h_out, w_out) = geometry.kernel_size, geometry.output_hw
    return kh * kw * h_out * w_out * (geometry.in_channels // geometry.groups) * geometry.out_channels


def synaptic_ops(input_map: np.ndarray, geometry: Geometry) -> float:
    """SOP = sum(input_map * fanout_map(geometry)), computed separably for a conv (module docstring).

    Args:
        input_map: input events per position, shape ``geometry.input_shape`` ([C_in, H, W] or [in]);
            per sample summed over T steps gives SOPs per sample and inference.
        geometry: the layer.

    Raises:
        AsaSnnError: ``input_map`` does not have the layer's input shape.
    """
    events = np.asarray(input_map, dtype=np.float64)
    if events.shape != geometry.input_shape:
        raise AsaSnnError(
            f"{geometry.name or type(geometry).__name__}: input map has shape {events.shape}; "
            f"expected {geometry.input_shape}"
        )
    if isinstance(geometry, LinearGeometry):
        return float(events.sum() * geometry.out_features)
    count_y, count_x = _axis_counts(geometry)
    per_position = count_y.astype(np.float64) @ events.sum(axis=0) @ count_x.astype(np.float64)
    return float(per_position * (geometry.out_channels // geometry.groups))
