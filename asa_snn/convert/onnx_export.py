"""Export ONE time step of a folded graph as a stateful ONNX model (opset 17, float32).

Signature (B is a dynamic batch dimension named ``batch``)::

    inputs   frame                [B, C, H, W]   input events per pixel at step t
             state.<layer>.<s>    [B, *shape]    every spiking layer's state at the end of step t-1
    outputs  next.<layer>.<s>     [B, *shape]    the same states after step t (feed them back)
             spikes.<layer>       [B, *shape]    every spiking layer's spikes at step t
             output               [B, K]         the last spiking layer's spikes (flattened)

``<s>`` is ``v`` (iaf, lif) or ``u`` and ``v`` (cuba); all states start at 0. Ops: conv2d ->
Conv, linear -> Flatten + Gemm, sumpool2d -> a grouped Conv with a kernel of ones (an exact sum),
flatten -> Flatten. Neurons, per step with ``I = W x_t + b`` (``theta`` the threshold):

.. math::
    \\text{iaf:}\\quad v \\leftarrow \\mathrm{sat}(v + I),\\; s = [v \\ge \\theta]
        \\text{ or } \\max(\\lfloor v / \\theta \\rfloor, 0) \\text{ (multi spike)}

    \\text{lif:}\\quad v \\leftarrow v + I,\\; s = [v \\ge \\theta], \\text{ reset, floor, then }
        v \\leftarrow \\gamma v \\text{ (the decay after the reset)}

    \\text{cuba:}\\quad u \\leftarrow (1 - d_u) u + W x_t,\\; v \\leftarrow (1 - d_v) v + u + b,\\;
        s = [v > \\theta] \\text{ (strict, as Loihi)}

then reset ``v <- v - s theta`` (``"subtract"``) or ``v <- 0`` where ``s > 0`` (``"zero"``), then
``v <- max(v, min_v)`` when the layer has ``min_v``. ``sat`` clips to the signed
``quant.state_bits`` range in a quantized graph (int16 on Speck) and is absent in a float graph:
the iaf update is the one of :class:`asa_snn.chips.speck.simulator.SpeckSimulator` (time-stepped mode).
All arithmetic is float32, exact for integer-valued graphs while every value stays below 2^24.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from asa_snn.convert.graph import FoldedGraph, Layer, NeuronSpec
from asa_snn.errors import AsaSnnError

OPSET = 17
FRAME = "frame"
OUTPUT = "output"
NEURON_STATES = {"iaf": ("v",), "lif": ("v",), "cuba": ("u", "v")}
"""Neuron kind -> the state variables it carries from step to step."""


def state_name(layer: str, variable: str) -> str:
    """Input name of a state: ``state.<layer>.<variable>``."""
    return f"state.{layer}.{variable}"


def next_state_name(layer: str, variable: str) -> str:
    """Output name of a state after the step: ``next.<layer>.<variable>``."""
    return f"next.{layer}.{variable}"


def spikes_name(layer: str) -> str:
    """Output name of a layer's spikes: ``spikes.<layer>``."""
    return f"spikes.{layer}"


def state_shapes(graph: FoldedGraph) -> dict[str, tuple[int, ...]]:
    """Input state name -> shape per sample (the layer's ``output_shape``), in graph order."""
    return {
        state_name(layer.name, variable): layer.output_shape
        for layer in graph.spiking_layers()
        for variable in NEURON_STATES[layer.neuron.kind]
    }


@dataclass
class _Builder:
    """Collects ONNX nodes and constant initializers with unique names."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    count: int = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint: str, value: Any) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, output: str | None = None, **attrs: Any) -> str:
        output = output or self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output


def _weight_op(b: _Builder, layer: Layer, x: str, with_bias: bool) -> str:
    """conv2d or linear of ``layer`` on ``x``; the bias only when ``with_bias``."""
    weight = b.const(f"{layer.name}.weight", layer.tensors["weight"])
    inputs = [x, weight]
    if with_bias and "bias" in layer.tensors:
        inputs.append(b.const(f"{layer.name}.bias", layer.tensors["bias"]))
    if layer.op == "linear":
        flat = b.op("Flatten", [x], f"{layer.name}.flat", axis=1)
        return b.op("Gemm", [flat, *inputs[1:]], f"{layer.name}.gemm", transB=1)
    attrs = layer.attrs
    ph, pw = attrs.padding
    return b.op(
        "Conv",
        inputs,
        f"{layer.name}.conv",
        kernel_shape=list(attrs.kernel_size),
        strides=list(attrs.stride),
        dilations=list(attrs.dilation),
        group=attrs.groups,
        pads=[ph, pw, ph, pw],
    )


def _bias(b: _Builder, layer: Layer, x: str) -> str:
    """``x`` plus the layer's bias broadcast over the map (x itself when there is none)."""
    if "bias" not in layer.tensors:
        return x
    bias = np.asarray(layer.tensors["bias"], np.float32)
    shape = bias.shape + (1,) * (len(layer.output_shape) - 1)
    return b.op("Add", [x, b.const(f"{layer.name}.bias", bias.reshape(shape))], f"{layer.name}.biased")


def _saturate(b: _Builder, layer: Layer, v: str) -> str:
    if layer.quant is None:
        return v
    half = 2 ** (layer.quant.state_bits - 1)
    return b.op("Clip", [v, b.const("lo", -half), b.const("hi", half - 1)], f"{layer.name}.sat")


def _fire(b: _Builder, layer: Layer, neuron: NeuronSpec, v: str, theta: str, strict: bool) -> str:
    if neuron.multi_spike:
        ratio = b.op("Floor", [b.op("Div", [v, theta], "ratio")], "floor")
        return b.op("Relu", [ratio], f"{layer.name}.spikes")
    compare = b.op("Greater" if strict else "GreaterOrEqual", [v, theta], "above")
    return b.op("Cast", [compare], f"{layer.name}.spikes", to=TensorProto.FLOAT)


def _reset_and_floor(b: _Builder, layer: Layer, neuron: NeuronSpec, v: str, s: str, theta: str) -> str:
    if neuron.reset == "subtract":
        v = b.op("Sub", [v, b.op("Mul", [s, theta], "drop")], "reset")
    else:
        fired = b.op("Greater", [s, b.const("zero", 0.0)], "fired")
        v = b.op("Where", [fired, b.const("zero", 0.0), v], "reset")
    if neuron.min_v is not None:
        v = b.op("Max", [v, b.const("min_v", neuron.min_v)], "floored")
    return v


def _iaf(b: _Builder, layer: Layer, x: str) -> tuple[dict[str, str], str]:
    """v <- sat(v + Wx + b); fire; reset; floor. Returns ({state: new value}, spikes)."""
    neuron = layer.neuron
    theta = b.const("theta", neuron.threshold)
    v = _saturate(b, layer, b.op("Add", [state_name(layer.name, "v"), _weight_op(b, layer, x, True)], "v"))
    s = _fire(b, layer, neuron, v, theta, strict=False)
    return {"v": _reset_and_floor(b, layer, neuron, v, s, theta)}, s


def _lif(b: _Builder, layer: Layer, x: str) -> tuple[dict[str, str], str]:
    """v <- sat(v + Wx + b); fire; reset; floor; v <- decay * v."""
    neuron = layer.neuron
    states, s = _iaf(b, layer, x)
    decay = b.const("decay", 0.0 if neuron.decay is None else neuron.decay)
    return {"v": b.op("Mul", [states["v"], decay], "leaked")}, s


def _cuba(b: _Builder, layer: Layer, x: str) -> tuple[dict[str, str], str]:
    """u <- (1 - du) u + Wx; v <- sat((1 - dv) v + u + b); fire (strict); reset; floor."""
    neuron = layer.neuron
    for key, value in (("du", neuron.du), ("dv", neuron.dv)):
        if value is None:
            raise AsaSnnError(f"layer {layer.name!r}: cuba neuron without {key}; expected a decay fraction")
    u_keep, v_keep = b.const("u_keep", 1.0 - neuron.du), b.const("v_keep", 1.0 - neuron.dv)
    u_old = b.op("Mul", [state_name(layer.name, "u"), u_keep], "u_decayed")
    u = b.op("Add", [u_old, _weight_op(b, layer, x, False)], "u")
    v_old = b.op("Mul", [state_name(layer.name, "v"), v_keep], "v_decayed")
    v = _saturate(b, layer, _bias(b, layer, b.op("Add", [v_old, u], "v")))
    theta = b.const("theta", neuron.threshold)
    s = _fire(b, layer, neuron, v, theta, strict=True)
    return {"u": u, "v": _reset_and_floor(b, layer, neuron, v, s, theta)}, s


NEURON_STEPS: dict[str, Callable[[_Builder, Layer, str], tuple[dict[str, str], str]]] = {
    "iaf": _iaf,
    "lif": _lif,
    "cuba": _cuba,
}
"""Neuron kind -> the builder of its one-step update (strategies, one per kind)."""


def _plain_op(b: _Builder, layer: Layer, x: str, in_shape: tuple[int, ...]) -> str:
    if layer.op == "sumpool2d":
        kernel = list(layer.attrs.kernel_size)
        ones = b.const(f"{layer.name}.ones", np.ones((in_shape[0], 1, *kernel)))
        return b.op("Conv", [x, ones], layer.name, kernel_shape=kernel, strides=kernel, group=in_shape[0])
    if layer.op == "flatten":
        return b.op("Flatten", [x], layer.name, axis=1)
    if layer.op in ("conv2d", "linear"):
        raise AsaSnnError(f"layer {layer.name!r}: {layer.op} without a neuron; ONNX export needs one")
    raise AsaSnnError(f"layer {layer.name!r}: op {layer.op!r} has no ONNX export here (use a chain network)")


def _value_info(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape])


def to_onnx_model(graph: FoldedGraph) -> onnx.ModelProto:
    """The one-step model of ``graph`` (module docstring), checked with ``onnx.checker``.

    Raises:
        AsaSnnError: naming the layer, for a residual ``add``, a layer not reading the one before
            it, a weight layer without a neuron, a cuba neuron without decays.
    """
    b = _Builder()
    x, shape, previous = FRAME, tuple(graph.input.shape), None
    outputs: list[onnx.ValueInfoProto] = []
    spikes: list[onnx.ValueInfoProto] = []
    for layer in graph.layers:
        if layer.inputs not in ((), (previous,)):
            raise AsaSnnError(
                f"layer {layer.name!r}: reads {list(layer.inputs)}; ONNX export takes each layer's input "
                f"from the layer before it ({previous!r})"
            )
        if layer.neuron is None:
            x = _plain_op(b, layer, x, shape)
        else:
            states, s = NEURON_STEPS[layer.neuron.kind](b, layer, x)
            for variable, value in states.items():
                out = next_state_name(layer.name, variable)
                b.op("Identity", [value], out, output=out)
                outputs.append(_value_info(out, layer.output_shape))
            x = b.op("Identity", [s], spikes_name(layer.name), output=spikes_name(layer.name))
            spikes.append(_value_info(x, layer.output_shape))
        shape, previous = layer.output_shape, layer.name
    if not spikes:
        raise AsaSnnError("graph has no spiking layer; the ONNX model would have no spikes to output")
    b.op("Flatten", [spikes[-1].name], OUTPUT, output=OUTPUT, axis=1)
    last = graph.spiking_layers()[-1].output_shape
    inputs = [_value_info(FRAME, tuple(graph.input.shape))]
    inputs += [_value_info(name, state_shape) for name, state_shape in state_shapes(graph).items()]
    onnx_graph = helper.make_graph(
        b.nodes,
        "asa_snn_step",
        inputs,
        [*outputs, *spikes, _value_info(OUTPUT, (int(np.prod(last)),))],
        b.initializers,
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.doc_string = f"asa-snn one time step ({graph.input.dt_us} us) of a {graph.target} graph"
    onnx.checker.check_model(model, full_check=True)
    return model


def to_onnx(graph: FoldedGraph, path: str | Path) -> Path:
    """Write :func:`to_onnx_model` of ``graph`` to ``path`` (``.onnx``) atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_onnx_model(graph).SerializeToString()
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return path
