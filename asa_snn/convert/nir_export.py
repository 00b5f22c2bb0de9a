"""Export a folded graph to NIR (``nir`` 1.0): a :class:`nir.NIRGraph` and its ``.nir`` (HDF5) file.

Node mapping (one NIR node per graph op, one more per neuron)::

    conv2d     -> Conv2d (bias of zeros when the layer has none), then the neuron node
    linear     -> Affine (bias of zeros when the layer has none: sinabs imports Affine, not Linear)
    sumpool2d  -> SumPool2d (stride = kernel, no padding)
    flatten    -> Flatten (start_dim 0: NIR shapes exclude the batch dimension)
    iaf        -> IF      r = 1, v_threshold = theta
    cuba       -> CubaLIF tau_syn = dt / du, tau_mem = dt / dv, w_in = 1 / du, r = 1 / dv, v_leak = 0
    lif        -> LIF     tau = dt / (1 - decay), r = 1 / (1 - decay), v_leak = 0

Every neuron parameter is an array of the layer's output shape, (C, H, W) or (F,), as NIR wants.
Numbers are copied as they are in the graph: a quantized graph's NIR file holds its integers (as
float32) and the integer threshold.

Time convention (the dt / time-constant pitfall of FACTS.md section 5): one graph time step is
``dt = input.dt_us * 1e-6`` seconds, stated in the graph metadata (``dt``, seconds). The time
constants are chosen so that the forward-Euler step of NIR's equations with step ``dt``, the
input held for one step, gives our discrete update:

.. math::
    \\text{LIF:}\\quad v \\leftarrow v + \\tfrac{dt}{\\tau}(-v + R I)
        = \\gamma v + I \\quad\\text{with}\\quad \\tfrac{dt}{\\tau} = 1 - \\gamma,\\;
        R = \\tfrac{1}{1-\\gamma}

    \\text{CubaLIF:}\\quad I \\leftarrow (1 - d_u) I + x,\\; v \\leftarrow (1 - d_v) v + I
        \\quad\\text{with}\\quad \\tfrac{dt}{\\tau_{syn}} = d_u,\\; w_{in} = \\tfrac{1}{d_u},\\;
        \\tfrac{dt}{\\tau_{mem}} = d_v,\\; R = \\tfrac{1}{d_v}

IF has no time constant: ``v <- v + I`` per step whatever dt is. What the importers make of it
(sinabs 3.1.3 ``sinabs/nir.py``, Norse 1.1.0 ``norse/torch/utils/import_nir.py``):

* sinabs: IF -> ``IAFSqueeze`` with ``spike_threshold = v_threshold``, ``min_v_mem =
  -v_threshold``, subtract reset, single spike, spike when ``v >= theta``. It reproduces an
  iaf layer exactly when the layer has ``reset="subtract"``, ``min_v = -theta`` and no
  multi-spike. sinabs reads no CubaLIF; its LIF is an exponential decay ``exp(-1 / tau)`` with
  tau in steps (not this Euler convention) and ignores ``r``.
* Norse: IF -> ``IAFCell``: ``v <- v + I``, spike when ``v > theta`` (strict), reset to 0, no
  lower bound, dt unused. It reproduces an iaf layer with ``reset="zero"``, no ``min_v`` and no
  multi-spike whenever no membrane lands exactly on theta. Its CubaLIF and LIF are the Euler
  steps above, but its LIF ignores ``r`` (the input is then scaled by 1 - decay). Norse's
  Flatten import does not skip the batch dimension: run it on one sample at a time.

What NIR cannot say (reset kind, ``min_v``, multi-spike, quantization scale) travels in each
neuron node's ``metadata`` so nothing is silently lost; importers ignore it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir
import numpy as np

from asa_snn.convert.graph import FoldedGraph, Layer, NeuronSpec
from asa_snn.errors import AsaSnnError

US_PER_S = 1e6


def dt_seconds(graph: FoldedGraph) -> float:
    """One time step of ``graph`` in seconds (``input.dt_us`` is in microseconds)."""
    return graph.input.dt_us / US_PER_S


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def _if_node(layer: Layer, neuron: NeuronSpec, dt: float) -> nir.NIRNode:
    """IF: v <- v + I; spike and subtract theta (dt does not enter)."""
    shape = layer.output_shape
    return nir.IF(r=_full(shape, 1.0), v_threshold=_full(shape, neuron.threshold))


def _fraction(layer: Layer, key: str, value: float | None) -> float:
    if value is None or not 0 < value <= 1:
        raise AsaSnnError(
            f"layer {layer.name!r}: neuron {key} is {value!r}; NIR export needs a decay fraction in (0, 1]"
        )
    return float(value)


def _cuba_node(layer: Layer, neuron: NeuronSpec, dt: float) -> nir.NIRNode:
    """CubaLIF whose Euler step at ``dt`` is I <- (1 - du) I + x, v <- (1 - dv) v + I."""
    du = _fraction(layer, "du", neuron.du)
    dv = _fraction(layer, "dv", neuron.dv)
    shape = layer.output_shape
    return nir.CubaLIF(
        tau_syn=_full(shape, dt / du),
        tau_mem=_full(shape, dt / dv),
        r=_full(shape, 1.0 / dv),
        v_leak=_full(shape, 0.0),
        v_threshold=_full(shape, neuron.threshold),
        w_in=_full(shape, 1.0 / du),
    )


def _lif_node(layer: Layer, neuron: NeuronSpec, dt: float) -> nir.NIRNode:
    """LIF whose Euler step at ``dt`` is v <- decay * v + I."""
    decay = neuron.decay if neuron.decay is not None else 0.0
    leak = _fraction(layer, "1 - decay", 1.0 - decay)
    shape = layer.output_shape
    return nir.LIF(
        tau=_full(shape, dt / leak),
        r=_full(shape, 1.0 / leak),
        v_leak=_full(shape, 0.0),
        v_threshold=_full(shape, neuron.threshold),
    )


NEURON_NODES: dict[str, Callable[[Layer, NeuronSpec, float], nir.NIRNode]] = {
    "iaf": _if_node,
    "cuba": _cuba_node,
    "lif": _lif_node,
}
"""Neuron kind -> builder of its NIR node (strategies, one per kind)."""


def neuron_node_name(layer_name: str) -> str:
    """Name of the NIR node holding ``layer_name``'s neurons."""
    return f"{op_node_name(layer_name)}_neuron"


def op_node_name(layer_name: str) -> str:
    """Name of the NIR node holding ``layer_name``'s op (dots become underscores: torch module names)."""
    return layer_name.replace(".", "_")


def _neuron_metadata(layer: Layer, neuron: NeuronSpec) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "kind": neuron.kind,
        "reset": neuron.reset,
        "multi_spike": int(neuron.multi_spike),
        "threshold": float(neuron.threshold),
    }
    if neuron.min_v is not None:
        meta["min_v"] = float(neuron.min_v)
    if layer.quant is not None:
        meta["scale"] = float(layer.quant.scale)
    return meta


def _op_node(layer: Layer, in_shape: tuple[int, ...]) -> nir.NIRNode:
    """The NIR node of ``layer``'s op reading ``in_shape`` (C, H, W) or (F,)."""
    if layer.op in ("conv2d", "linear"):
        weight = np.asarray(layer.tensors["weight"], dtype=np.float32)
        bias = layer.tensors.get("bias")
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32)
        if layer.op == "linear":
            return nir.Affine(weight=weight, bias=bias)
        attrs = layer.attrs
        return nir.Conv2d(
            input_shape=tuple(int(v) for v in in_shape[1:]),
            weight=weight,
            stride=attrs.stride,
            padding=attrs.padding,
            dilation=attrs.dilation,
            groups=attrs.groups,
            bias=bias,
        )
    if layer.op == "sumpool2d":
        kernel = np.asarray(layer.attrs.kernel_size, dtype=np.int64)
        return nir.SumPool2d(kernel_size=kernel, stride=kernel, padding=np.zeros(2, np.int64))
    if layer.op == "flatten":
        return nir.Flatten(input_type={"input": np.asarray(in_shape)}, start_dim=0, end_dim=-1)
    raise AsaSnnError(
        f"layer {layer.name!r}: op {layer.op!r} has no NIR export here "
        "(residual adds are not exported; use a chain network)"
    )


def to_nir(graph: FoldedGraph) -> nir.NIRGraph:
    """The graph as a NIR graph: Input -> ops and neurons in order -> Output.

    Node names are the layer names (dots as underscores) and ``<name>_neuron``; see the module
    docstring for the node mapping and the dt convention. Graph metadata: ``dt`` (seconds per
    step), ``n_steps``, ``quantized``, ``target``, ``num_classes``, ``vote``.

    Raises:
        AsaSnnError: naming the layer, for a residual ``add``, a layer that does not read the
            layer before it, or a neuron whose decay cannot be written.
    """
    dt = dt_seconds(graph)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.asarray(graph.input.shape)})}
    edges: list[tuple[str, str]] = []
    tail, previous = "input", None
    shape: tuple[int, ...] = tuple(graph.input.shape)
    for layer in graph.layers:
        if layer.inputs not in ((), (previous,)):
            raise AsaSnnError(
                f"layer {layer.name!r}: reads {list(layer.inputs)}; NIR export takes each layer's input "
                f"from the layer before it ({previous!r})"
            )
        name = op_node_name(layer.name)
        nodes[name] = _op_node(layer, shape)
        edges.append((tail, name))
        tail, previous, shape = name, layer.name, layer.output_shape
        if layer.neuron is not None:
            node = NEURON_NODES[layer.neuron.kind](layer, layer.neuron, dt)
            node.metadata = _neuron_metadata(layer, layer.neuron)
            nodes[neuron_node_name(layer.name)] = node
            edges.append((tail, neuron_node_name(layer.name)))
            tail = neuron_node_name(layer.name)
    nodes["output"] = nir.Output(output_type={"output": np.asarray(shape)})
    edges.append((tail, "output"))
    metadata = {
        "dt": dt,
        "n_steps": int(graph.input.n_steps),
        "quantized": int(graph.quantized),
        "target": graph.target,
        "num_classes": int(graph.num_classes),
        "vote": int(graph.vote),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(graph: FoldedGraph, path: str | Path) -> Path:
    """Write :func:`to_nir` of ``graph`` to ``path`` (a ``.nir`` HDF5 file), atomically.

    The file is written beside ``path`` under a temporary name and then renamed over it, so an
    interrupted export never leaves a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir_graph = to_nir(graph)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        nir.write(staging, nir_graph)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return path
