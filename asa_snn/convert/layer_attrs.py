"""Typed attributes of the folded graph's ops: plain frozen dataclasses, checked on construction.

Every layer of a :class:`~asa_snn.convert.graph.FoldedGraph` carries one of these; graph.json
stores them as objects by field name, and :func:`layer_attrs` reads and checks them. Counts and
sizes must be integers (JSON ``4.5`` or ``4.0`` is an error, never rounded).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np

from asa_snn.errors import InputFormatError


def _pair(value: object, layer: str, key: str) -> tuple[int, int]:
    """An int or a pair of ints as (h, w); anything else is an error naming layer and attribute."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if (
        not isinstance(pair, (list, tuple))
        or len(pair) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair)
    ):
        raise InputFormatError(
            f"layer {layer!r}: attribute {key} must be an int or [h, w] ints, got {value!r}"
        )
    return int(pair[0]), int(pair[1])


def _count(value: object, layer: str, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputFormatError(
            f"layer {layer!r}: attribute {key} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


@dataclass(frozen=True)
class Conv2dAttrs:
    """conv2d: y[o] = b[o] + sum_{i in group(o), dy, dx} W[o, i, dy, dx] x[i, s y + d dy - p, ...].

    Attributes: channels in / out, and (h, w) pairs of kernel size, stride, padding (zeros on each
    side) and dilation; ``groups`` divides both channel counts.
    """

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def check(self, layer: str) -> Conv2dAttrs:
        """A normalised copy; raises :class:`InputFormatError` naming ``layer`` and the attribute."""
        out = Conv2dAttrs(
            _count(self.in_channels, layer, "in_channels"),
            _count(self.out_channels, layer, "out_channels"),
            _pair(self.kernel_size, layer, "kernel_size"),
            _pair(self.stride, layer, "stride"),
            _pair(self.padding, layer, "padding"),
            _pair(self.dilation, layer, "dilation"),
            _count(self.groups, layer, "groups"),
        )
        if min(*out.kernel_size, *out.stride, *out.dilation) < 1 or min(out.padding) < 0:
            raise InputFormatError(
                f"layer {layer!r}: kernel_size, stride and dilation must be >= 1 and padding >= 0"
            )
        if out.in_channels % out.groups or out.out_channels % out.groups:
            raise InputFormatError(
                f"layer {layer!r}: groups {out.groups} must divide in_channels {out.in_channels} "
                f"and out_channels {out.out_channels}"
            )
        return out


@dataclass(frozen=True)
class LinearAttrs:
    """linear: y = W x + b, W [out_features, in_features]."""

    in_features: int
    out_features: int

    def check(self, layer: str) -> LinearAttrs:
        """A normalised copy; raises :class:`InputFormatError` naming ``layer`` and the attribute."""
        return LinearAttrs(
            _count(self.in_features, layer, "in_features"), _count(self.out_features, layer, "out_features")
        )


@dataclass(frozen=True)
class SumPool2dAttrs:
    """sumpool2d: non-overlapping sums over (kh, kw) windows (stride = kernel, no padding)."""

    kernel_size: tuple[int, int]

    def check(self, layer: str) -> SumPool2dAttrs:
        """A normalised copy; raises :class:`InputFormatError` naming ``layer`` and the attribute."""
        kernel = _pair(self.kernel_size, layer, "kernel_size")
        if min(kernel) < 1:
            raise InputFormatError(f"layer {layer!r}: kernel_size must be >= 1, got {list(kernel)}")
        return SumPool2dAttrs(kernel)


@dataclass(frozen=True)
class NoAttrs:
    """flatten (C, H, W) -> (C*H*W,) and add (elementwise sum of two inputs) take no attributes."""

    def check(self, layer: str) -> NoAttrs:
        """Itself."""
        return self


LayerAttrs = Conv2dAttrs | LinearAttrs | SumPool2dAttrs | NoAttrs
ATTRS: dict[str, type] = {
    "conv2d": Conv2dAttrs,
    "linear": LinearAttrs,
    "sumpool2d": SumPool2dAttrs,
    "flatten": NoAttrs,
    "add": NoAttrs,
}
"""op -> its attribute type."""


def layer_attrs(
    name: str, op: str, attrs: LayerAttrs | dict[str, Any], tensors: dict[str, np.ndarray]
) -> LayerAttrs:
    """The typed, checked attributes of layer ``name``; a dict is read by field name, and a conv's or
    linear's missing channel counts come from its weight [C_out, C_in / groups, kh, kw] / [out, in].

    Raises:
        InputFormatError: an unknown or missing attribute, or a value of the wrong type or range.
    """
    cls = ATTRS[op]
    if isinstance(attrs, cls):
        return attrs.check(name)
    if not isinstance(attrs, dict):
        raise InputFormatError(
            f"layer {name!r}: attrs must be an object for op {op}, got {type(attrs).__name__}"
        )
    data = dict(attrs)
    weight = tensors.get("weight")
    if weight is not None and op == "conv2d" and weight.ndim == 4:
        data.setdefault("out_channels", int(weight.shape[0]))
        groups = data.get("groups", 1)  # a non-integer is refused by Conv2dAttrs.check, not rounded
        whole = isinstance(groups, int | np.integer) and not isinstance(groups, bool)
        data.setdefault("in_channels", int(weight.shape[1]) * (int(groups) if whole else 1))
    if weight is not None and op == "linear" and weight.ndim == 2:
        data.setdefault("out_features", int(weight.shape[0]))
        data.setdefault("in_features", int(weight.shape[1]))
    known = {f.name for f in fields(cls)}
    unknown, missing = (
        sorted(set(data) - known),
        sorted(f.name for f in fields(cls) if f.name not in data and f.default is MISSING),
    )
    if unknown or missing:
        raise InputFormatError(
            f"layer {name!r}: op {op} attributes {sorted(known)}; unknown {unknown}, missing {missing}"
        )
    return cls(**data).check(name)
