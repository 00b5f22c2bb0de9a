"""Export a folded graph to sinabs modules shaped for Speck.

The result holds only what ``sinabs.backend.dynapcnn.DynapcnnNetwork`` (sinabs 3.1.3) accepts as
edges (``connectivity_specs.py``): ``Conv2d -> IAFSqueeze``, ``IAFSqueeze -> SumPool2d``,
``SumPool2d -> SumPool2d``, ``IAFSqueeze / SumPool2d -> Conv2d``, and ``sinabs.layers.Merge``, the
one module with two inputs, in front of a ``Conv2d``. A linear layer is written as a ``Conv2d``
whose kernel covers its whole input map (how Speck runs it), so flatten ops disappear and the
output of the last layer is ``[B*T, K, 1, 1]``.

A chain becomes an ``nn.Sequential``; a residual graph (``add`` ops) a :class:`SinabsGraph`, whose
``forward`` feeds each module the outputs of the layers it reads. ``DynapcnnNetwork`` traces it
(nirtorch records which module's output each module receives), drops the ``Merge`` modules and
sends both operands' cores to the core after the merge: a core with two destinations where a
layer has two readers.

Nothing here imports samna or ``sinabs.backend.dynapcnn``. For a quantized graph (integers already
in the chip's units) pass ``discretize=False`` to ``DynapcnnNetwork`` so it keeps the integers.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import sinabs.activation as sa
import sinabs.layers as sl
import torch
from torch import nn

from asa_snn.chips.speck.mapping import STATE_BITS, ChainStep, conv_geometry, pool_size, speck_chain
from asa_snn.convert.graph import FoldedGraph, Layer, NeuronSpec
from asa_snn.errors import AsaSnnError

SPIKE_FNS = {False: sa.SingleSpike, True: sa.MultiSpike}
RESET_FNS = {"subtract": sa.MembraneSubtract, "zero": sa.MembraneReset}


def module_name(layer_name: str) -> str:
    """Name of the module holding ``layer_name``'s op (torch module names take no dots)."""
    return layer_name.replace(".", "_")


def neuron_module_name(layer_name: str) -> str:
    """Name of the ``IAFSqueeze`` module holding ``layer_name``'s neurons."""
    return f"{module_name(layer_name)}_iaf"


def _weight_module(step: ChainStep) -> nn.Conv2d:
    """Conv2d for a conv2d layer, or for a linear layer the conv whose kernel is its input map."""
    layer = step.layer
    c, h, w = step.in_map
    weight = torch.as_tensor(np.asarray(layer.tensors["weight"], dtype=np.float32))
    bias = layer.tensors.get("bias")
    if layer.op == "linear":
        weight = weight.reshape(weight.shape[0], c, h, w)
        geo = {"kernel_size": (h, w), "stride": (1, 1), "padding": (0, 0)}
    else:
        geo = conv_geometry(layer)
    conv = nn.Conv2d(c, weight.shape[0], bias=bias is not None, **geo)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))
    return conv


def _neuron_module(
    layer: Layer, neuron: NeuronSpec, quantized: bool, batch_size: int | None, num_timesteps: int | None
) -> sl.IAFSqueeze:
    """IAFSqueeze with the layer's one threshold, min_v, reset and spike function.

    In a quantized graph an unset ``min_v`` becomes the int16 floor -2^15 (what the chip's state
    can hold and what sinabs' discretization assumes).
    """
    min_v = neuron.min_v
    if quantized and min_v is None:
        min_v = -(2 ** (STATE_BITS - 1))
    if not batch_size and not num_timesteps:
        raise AsaSnnError(f"layer {layer.name!r}: IAFSqueeze needs batch_size or num_timesteps; got neither")
    return sl.IAFSqueeze(
        batch_size=batch_size,
        num_timesteps=num_timesteps,
        spike_threshold=torch.tensor(float(neuron.threshold)),
        min_v_mem=None if min_v is None else float(min_v),
        spike_fn=SPIKE_FNS[bool(neuron.multi_spike)],
        reset_fn=RESET_FNS[neuron.reset](),
    )


class SinabsGraph(nn.Module):
    """A residual graph's sinabs modules run in graph order.

    Args:
        modules: the modules by name (:func:`module_name`, :func:`neuron_module_name`).
        plan: per graph layer, in order: (layer name, the modules it applies in turn, the layers it
            reads); an add applies its ``Merge`` to its two operands, a flatten applies nothing.

    Shape:
        [B*T, C, H, W] -> the last layer's output, e.g. [B*T, K, 1, 1].
    """

    def __init__(
        self, modules: OrderedDict[str, nn.Module], plan: list[tuple[str, tuple[str, ...], tuple[str, ...]]]
    ) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        self.plan = plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = {"": x}
        for layer, names, sources in self.plan:
            read = [outputs[source] for source in sources or ("",)]
            if len(read) == 2:
                y = self.get_submodule(names[0])(*read)
            else:
                y = read[0]
                for name in names:
                    y = self.get_submodule(name)(y)
            outputs[layer] = y
        return y


def to_sinabs(
    graph: FoldedGraph,
    num_timesteps: int | None = None,
    batch_size: int | None = None,
    approximate: bool = False,
) -> nn.Sequential | SinabsGraph:
    """The graph as sinabs Conv2d / IAFSqueeze / SumPool2d modules (and Merge for adds).

    Args:
        graph: a folded graph, float or quantized (integers are kept as float32 values).
        num_timesteps: T per sample, which IAFSqueeze needs to unfold [B*T, ...]; defaults to
            ``graph.input.n_steps`` when ``batch_size`` is not given either.
        batch_size: B, the alternative IAFSqueeze accepts.
        approximate: run lif neurons as iaf (with a warning) instead of refusing them.

    Returns:
        ``nn.Sequential`` (a chain) or :class:`SinabsGraph` (a residual graph) taking [B*T, C, H, W]
        (batch-major, time inner) and returning the last layer's spikes [B*T, K, 1, 1] (or
        [B*T, C, H, W] when the graph ends in a conv). Modules are named after the graph layers
        (:func:`module_name`, :func:`neuron_module_name`; an add's ``Merge`` by :func:`module_name`).

    Raises:
        AsaSnnError: naming the layer, for ops or neurons Speck cannot run (see
            :func:`asa_snn.chips.speck.mapping.speck_chain`).
    """
    if num_timesteps is None and batch_size is None:
        num_timesteps = graph.input.n_steps
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    plan: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    for step in speck_chain(graph, approximate=approximate):
        layer, before = step.layer, len(modules)
        if layer.op in ("conv2d", "linear"):
            modules[module_name(layer.name)] = _weight_module(step)
            modules[neuron_module_name(layer.name)] = _neuron_module(
                layer, step.neuron, graph.quantized, batch_size, num_timesteps
            )
        elif layer.op == "sumpool2d":
            modules[module_name(layer.name)] = sl.SumPool2d(kernel_size=pool_size(layer))
        elif layer.op == "add":
            modules[module_name(layer.name)] = sl.Merge()
        plan.append((layer.name, tuple(modules)[before:], step.sources))
    if any(layer.op == "add" for layer in graph.layers):
        return SinabsGraph(modules, plan)
    return nn.Sequential(modules)
