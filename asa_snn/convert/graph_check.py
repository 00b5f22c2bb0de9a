"""Validation of a folded graph as a whole: structure, shapes, neurons, integers.

:func:`check_graph` runs when a graph is loaded (:func:`asa_snn.convert.graph.load_graph`), so a
hand-edited or corrupted ``graph.json`` is refused with one message naming the layer and field
instead of failing later inside a simulator or exporter. Shapes follow the ops' equations::

    conv2d     H_out = floor((H + 2 p_h - d_h (k_h - 1) - 1) / s_h) + 1   (W likewise)
    sumpool2d  H_out = floor(H / k_h)
    flatten    (C, H, W) -> (C H W,)
    add        two operands of equal shape -> that shape (no neuron, tensors or quantization: the
               sum of two layers' outputs, e.g. a residual block's spikes, read by the next layer)
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from asa_snn.convert.layer_attrs import Conv2dAttrs, LinearAttrs, SumPool2dAttrs
from asa_snn.errors import InputFormatError

if TYPE_CHECKING:
    from asa_snn.convert.graph import FoldedGraph, Layer, LayerQuant, NeuronSpec

READOUTS = ("rate",)
TARGET_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""What a graph's ``target`` must look like: a lowercase identifier (a chip's name, or ``generic``).
Whether it names a known chip is checked where a chip is looked up (convert does not know chips)."""
QUANT_BITS = (2, 32)
"""Bit widths a layer's :class:`~asa_snn.convert.graph.LayerQuant` may give its weights and state
(signed integers; Speck uses 8 / 16, Loihi up to 9 / 24)."""
WEIGHT_EXPONENTS = (-32, 32)
"""Range of a shared weight exponent (Loihi's is -8..7)."""


def _conv_shape(attrs: Conv2dAttrs, shape: tuple[int, ...]) -> tuple[int, ...]:
    _, height, width = shape
    sizes = []
    for size, k, s, p, d in zip(
        (height, width), attrs.kernel_size, attrs.stride, attrs.padding, attrs.dilation, strict=True
    ):
        sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return (attrs.out_channels, *sizes)


def expected_shape(layer: Layer, inputs: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape of ``layer`` given its input shapes (module docstring).

    Raises:
        InputFormatError: the inputs do not fit the op (channels, features, operand count, rank).
    """
    attrs, shape = layer.attrs, inputs[0]
    if layer.op == "add":
        if len(inputs) != 2 or inputs[0] != inputs[1]:
            raise InputFormatError(f"layer {layer.name!r}: add needs two inputs of one shape, got {inputs}")
        if layer.neuron is not None or layer.tensors or layer.quant is not None:
            raise InputFormatError(
                f"layer {layer.name!r}: an add sums its inputs only; expected no neuron, tensors or quant"
            )
        return shape
    if len(inputs) != 1:
        raise InputFormatError(f"layer {layer.name!r}: {layer.op} takes one input, got {len(inputs)}")
    if layer.op == "flatten":
        return (int(np.prod(shape)),)
    if layer.op == "linear":
        if shape != (attrs.in_features,):
            raise InputFormatError(
                f"layer {layer.name!r}: linear expects {attrs.in_features} input features, gets shape {shape}"
            )
        return (attrs.out_features,)
    if len(shape) != 3:
        raise InputFormatError(f"layer {layer.name!r}: {layer.op} needs a (C, H, W) input, gets {shape}")
    if isinstance(attrs, SumPool2dAttrs):
        return (shape[0], shape[1] // attrs.kernel_size[0], shape[2] // attrs.kernel_size[1])
    if shape[0] != attrs.in_channels:
        raise InputFormatError(
            f"layer {layer.name!r}: conv2d expects {attrs.in_channels} input channels, gets shape {shape}"
        )
    return _conv_shape(attrs, shape)


def _check_weight(layer: Layer) -> None:
    attrs = layer.attrs
    if isinstance(attrs, Conv2dAttrs):
        expected = (attrs.out_channels, attrs.in_channels // attrs.groups, *attrs.kernel_size)
        bias = attrs.out_channels
    elif isinstance(attrs, LinearAttrs):
        expected, bias = (attrs.out_features, attrs.in_features), attrs.out_features
    else:
        return
    weight = layer.tensors.get("weight")
    if weight is None or tuple(weight.shape) != expected:
        found = None if weight is None else tuple(weight.shape)
        raise InputFormatError(f"layer {layer.name!r}: weight of shape {expected} expected, found {found}")
    if "bias" in layer.tensors and tuple(layer.tensors["bias"].shape) != (bias,):
        raise InputFormatError(f"layer {layer.name!r}: bias of shape ({bias},) expected")
    for key, values in layer.tensors.items():
        if not np.all(np.isfinite(values)):
            raise InputFormatError(f"layer {layer.name!r}: tensor {key} holds NaN or infinite values")


def _check_neuron(layer: Layer, neuron: NeuronSpec) -> None:
    numbers = {"threshold": neuron.threshold, "min_v": neuron.min_v, "du": neuron.du, "dv": neuron.dv}
    numbers["decay"] = neuron.decay
    for key, value in numbers.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise InputFormatError(
                f"layer {layer.name!r}: neuron {key} must be a finite number, got {value!r}"
            )
    if neuron.threshold <= 0:
        raise InputFormatError(f"layer {layer.name!r}: neuron threshold must be > 0, got {neuron.threshold}")
    for key in ("du", "dv", "decay"):
        value = numbers[key]
        if value is not None and not 0.0 <= value <= 1.0:
            raise InputFormatError(f"layer {layer.name!r}: neuron {key} must lie in [0, 1], got {value}")
    if neuron.kind == "cuba" and (neuron.du is None or neuron.dv is None):
        raise InputFormatError(f"layer {layer.name!r}: a cuba neuron needs du and dv")
    if not isinstance(neuron.multi_spike, bool):
        raise InputFormatError(
            f"layer {layer.name!r}: neuron multi_spike is {neuron.multi_spike!r}; expected true or false"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_quant(layer: Layer, quant: LayerQuant) -> None:
    """A finite positive ``scale``; integer bit widths in :data:`QUANT_BITS`; an integer exponent in
    :data:`WEIGHT_EXPONENTS`."""
    scale = quant.scale
    real = isinstance(scale, int | float | np.integer | np.floating) and not isinstance(scale, bool)
    if not real or not math.isfinite(scale) or scale <= 0:
        raise InputFormatError(
            f"layer {layer.name!r}: quant scale is {scale!r}; expected a finite number > 0"
        )
    low, high = QUANT_BITS
    for key in ("weight_bits", "state_bits"):
        value = getattr(quant, key)
        if not _is_int(value) or not low <= value <= high:
            raise InputFormatError(
                f"layer {layer.name!r}: quant {key} is {value!r}; expected an integer {low}..{high}"
            )
    low, high = WEIGHT_EXPONENTS
    if not _is_int(quant.weight_exponent) or not low <= quant.weight_exponent <= high:
        raise InputFormatError(
            f"layer {layer.name!r}: quant weight_exponent is {quant.weight_exponent!r}; expected an "
            f"integer {low}..{high}"
        )


def _check_integers(layer: Layer) -> None:
    quant = layer.quant
    if quant is None:
        return
    _check_quant(layer, quant)
    low, high = -(2 ** (quant.weight_bits - 1)), 2 ** (quant.weight_bits - 1) - 1
    weight = layer.tensors.get("weight")
    if weight is None:
        return
    if not np.issubdtype(weight.dtype, np.integer):
        raise InputFormatError(
            f"layer {layer.name!r}: a quantized weight must hold integers, not {weight.dtype}"
        )
    if weight.size and (weight.min() < low or weight.max() > high):
        raise InputFormatError(
            f"layer {layer.name!r}: weights {int(weight.min())}..{int(weight.max())} outside the "
            f"{quant.weight_bits}-bit range [{low}, {high}]"
        )


def _check_layer(layer: Layer, inputs: list[tuple[int, ...]]) -> tuple[int, ...]:
    """One layer on its own: output shape from ``inputs``, weights, neuron, quantization; returns
    the output shape. Raises :class:`InputFormatError` naming the layer."""
    expected = expected_shape(layer, inputs)
    if tuple(layer.output_shape) != expected:
        raise InputFormatError(
            f"layer {layer.name!r} output_shape {layer.output_shape}, its inputs give {expected}"
        )
    _check_weight(layer)
    if layer.neuron is not None:
        _check_neuron(layer, layer.neuron)
    _check_integers(layer)
    return expected


def check_graph(graph: FoldedGraph, where: str = "graph") -> FoldedGraph:
    """Return ``graph`` unchanged when it is well formed, else raise one :class:`InputFormatError`.

    Checks: at least one layer, unique names; ``inputs`` name earlier layers (``add`` two, other ops
    at most one; none means the previous layer); every output shape follows from its inputs
    (module docstring); weights and biases match the attributes and are finite; neurons have a
    positive threshold and decays in [0, 1]; quantization metadata in range (finite positive scale,
    bit widths in :data:`QUANT_BITS`) and quantized weights integers within their bit width; the last
    layer holds ``num_classes * vote`` units; ``vote``, ``num_classes`` integers >= 1; a known
    readout; ``target`` a lowercase identifier (:data:`TARGET_PATTERN`); ``provenance`` an object.
    """
    if not graph.layers:
        raise InputFormatError(f"{where}: the graph has no layers")
    for key in ("num_classes", "vote"):
        value = getattr(graph, key)
        if not _is_int(value) or value < 1:
            raise InputFormatError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    if graph.readout not in READOUTS or not isinstance(graph.quantized, bool):
        raise InputFormatError(f"{where}: readout must be one of {READOUTS} and quantized a boolean")
    if not isinstance(graph.target, str) or not TARGET_PATTERN.fullmatch(graph.target):
        raise InputFormatError(
            f"{where}: target {graph.target!r:.80} is not a chip name; expected a lowercase identifier "
            "such as 'speck', 'loihi' or 'generic'"
        )
    if not isinstance(graph.provenance, dict):
        raise InputFormatError(
            f"{where}: provenance must be an object, got {type(graph.provenance).__name__}"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    previous = tuple(graph.input.shape)
    for layer in graph.layers:
        if layer.name in shapes:
            raise InputFormatError(f"{where}: two layers are called {layer.name!r}")
        unknown = [name for name in layer.inputs if name not in shapes]
        if unknown:
            raise InputFormatError(
                f"{where}: layer {layer.name!r} reads {unknown}, which are not earlier layers of the graph"
            )
        inputs = [shapes[name] for name in layer.inputs] or [previous]
        try:
            expected = _check_layer(layer, inputs)
        except InputFormatError as exc:
            raise InputFormatError(f"{where}: {exc}") from exc
        shapes[layer.name] = previous = expected
    units = int(np.prod(previous))
    if units != graph.num_classes * graph.vote:
        raise InputFormatError(
            f"{where}: the last layer has {units} units but num_classes x vote = "
            f"{graph.num_classes} x {graph.vote}"
        )
    return graph
