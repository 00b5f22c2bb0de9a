"""What a Speck chip can take: the layer chain its cores run, and the offline mapping check.

A Speck (SynSense DYNAP-CNN) core runs ``conv -> IAF neurons -> optional sum pooling`` and sends
its spikes to at most 2 other cores; 9 cores, each with its own kernel and neuron memory. This
module reads a folded graph only (no sinabs, no samna) and answers two questions:

* :func:`speck_chain`: the graph as the sequence of ops a Speck-style simulator or exporter
  executes, with the (C, H, W) map each op reads and the layers it reads from; ops that no Speck
  can run are an error.
* residual graphs (sinabs 3.1 ``DynapcnnNetwork``): a core may send its spikes to two cores (a
  layer with two readers), and an ``add`` sums the spikes of two cores into the input of the
  weight layer that reads it (on the chip: two cores sending to the same destination core).
* :func:`check_speck`: every documented chip limit (FACTS.md section 3, sinabs 3.1.3), the
  memory each core layer needs, and an assignment of core layers to the 9 cores by maximum
  bipartite matching; problems come back as a list of :class:`Violation`, not as exceptions.
  Its steps return plain data: :func:`core_layers` (the core layers and their maps),
  :func:`core_layer_limits`, :func:`core_memory`, :func:`assign_cores` and :func:`destinations`.

Memory per layer, in words (sinabs ``DynapcnnLayer.memory_summary``), for a weight
(f out, c in, h, w) and a neuron map (f, H, W) (the conv output, before pooling)::

    kernel = c * 2^(ceil(log2(h * w)) + ceil(log2 f))
    neuron = f * 2^(ceil(log2 H) + ceil(log2 W))
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from asa_snn.chips.base import CoreUse, Violation
from asa_snn.convert.graph import FoldedGraph, Layer, NeuronSpec
from asa_snn.errors import AsaSnnError, InputFormatError

KI = 1024
# (kernel words, neuron words) of cores 0..8 (sinabs 3.1.3, FACTS.md section 3).
CORE_MEMORY: tuple[tuple[int, int], ...] = (
    *((16 * KI, 64 * KI),) * 3,
    *((32 * KI, 32 * KI),) * 2,
    *((64 * KI, 16 * KI),) * 2,
    *((16 * KI, 16 * KI),) * 2,
)
BIAS_ENTRIES = 1024
MAX_KERNEL = 16
STRIDES = (1, 2, 4, 8)
MAX_PADDING = 7
POOL_SIZES = (1, 2, 4)
MAX_CHANNELS = 1024
MAX_OUTPUT_MAP = 64
MAX_INPUT_MAP = 128
MAX_DESTINATIONS = 2
WEIGHT_BITS = 8
STATE_BITS = 16
SPIKING_OPS = ("conv2d", "linear")
FLOAT_NOTE = "float graph: Speck needs integers; fold with --target speck before deploying"


@dataclass(frozen=True)
class ChainStep:
    """One op of a Speck chain.

    Attributes:
        layer: the graph layer.
        in_map: (C, H, W) the op reads; a flattened input is seen as the map before flattening and
            the output of a linear layer as (F, 1, 1), the way Speck runs linear layers as convs.
        neuron: the neuron the op ends in (an approximated lif appears here as iaf), or None.
        sources: the layers whose outputs the op reads, in order: one, or the two operands of an
            ``add``; empty for the graph input.
    """

    layer: Layer
    in_map: tuple[int, int, int]
    neuron: NeuronSpec | None
    sources: tuple[str, ...] = ()


def conv_geometry(layer: Layer) -> dict[str, tuple[int, int]]:
    """``kernel_size``, ``stride`` and ``padding`` of a conv2d layer as (h, w) pairs.

    Raises:
        AsaSnnError: a grouped or dilated conv, which a Speck core cannot run.
    """
    attrs = layer.attrs
    if attrs.groups != 1 or attrs.dilation != (1, 1):
        raise AsaSnnError(
            f"layer {layer.name!r}: groups {attrs.groups}, dilation {list(attrs.dilation)}; a Speck core "
            "runs only dense, undilated convs"
        )
    return {"kernel_size": attrs.kernel_size, "stride": attrs.stride, "padding": attrs.padding}


def pool_size(layer: Layer) -> tuple[int, int]:
    """Kernel (= stride) of a sumpool2d layer as (h, w)."""
    return layer.attrs.kernel_size


def _next_map(step_layer: Layer, in_map: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (C, H, W) map after ``step_layer``, checked against its recorded ``output_shape``."""
    c, h, w = in_map
    if step_layer.op == "conv2d":
        geo = conv_geometry(step_layer)
        (kh, kw), (sh, sw), (ph, pw) = geo["kernel_size"], geo["stride"], geo["padding"]
        weight = step_layer.tensors.get("weight")
        if weight is None or weight.ndim != 4 or weight.shape[1] != c or weight.shape[2:] != (kh, kw):
            raise InputFormatError(
                f"layer {step_layer.name!r}: conv2d weight shape "
                f"{None if weight is None else weight.shape}; expected [C_out, {c}, {kh}, {kw}]"
            )
        out = (weight.shape[0], (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    elif step_layer.op == "linear":
        weight = step_layer.tensors.get("weight")
        if weight is None or weight.ndim != 2 or weight.shape[1] != c * h * w:
            raise InputFormatError(
                f"layer {step_layer.name!r}: linear weight shape "
                f"{None if weight is None else weight.shape}; expected [out, {c * h * w}]"
            )
        out = (weight.shape[0], 1, 1)
    elif step_layer.op == "sumpool2d":
        kh, kw = pool_size(step_layer)
        out = (c, h // kh, w // kw)
    else:
        out = in_map
    recorded = step_layer.output_shape
    expected = (out[0] * out[1] * out[2],) if len(recorded) == 1 else out
    if recorded != expected:
        raise InputFormatError(
            f"layer {step_layer.name!r}: output_shape {recorded}, "
            f"but its op on input {in_map} gives {expected}"
        )
    return out


def _speck_neuron(layer: Layer, approximate: bool) -> NeuronSpec | None:
    neuron = layer.neuron
    if layer.op not in SPIKING_OPS:
        return neuron
    if neuron is None:
        raise AsaSnnError(
            f"layer {layer.name!r}: {layer.op} without a neuron; a Speck core always ends a weight "
            "layer in IAF neurons"
        )
    if neuron.kind == "iaf":
        return neuron
    if neuron.kind == "lif" and approximate:
        warnings.warn(
            f"layer {layer.name!r}: lif neuron run as iaf (its leak is dropped); spike counts will differ",
            stacklevel=3,
        )
        return replace(neuron, kind="iaf", decay=None)
    raise AsaSnnError(
        f"layer {layer.name!r}: neuron kind {neuron.kind!r}; Speck has only iaf neurons "
        "(fold with --target speck, or pass approximate=True to run lif as iaf)"
    )


def layer_sources(graph: FoldedGraph) -> dict[str, tuple[str, ...]]:
    """Layer name -> the layers it reads: its ``inputs``, else the layer before it (none for the first)."""
    sources: dict[str, tuple[str, ...]] = {}
    previous: tuple[str, ...] = ()
    for layer in graph.layers:
        sources[layer.name] = tuple(layer.inputs) or previous
        previous = (layer.name,)
    return sources


def _read_map(
    layer: Layer, sources: tuple[str, ...], maps: dict[str, tuple[int, int, int]], input_map: tuple
) -> tuple[int, int, int]:
    """The (C, H, W) map ``layer`` reads from ``sources``; raises :class:`AsaSnnError` naming the
    layer for an unknown source, an ``add`` without two operands of one map, or another op reading
    more than one layer."""
    unknown = [name for name in sources if name not in maps]
    if unknown:
        raise AsaSnnError(f"layer {layer.name!r}: reads {unknown}, which are not earlier layers")
    if layer.op == "add":
        operands = [maps[name] for name in sources]
        if len(operands) != 2 or operands[0] != operands[1]:
            raise AsaSnnError(
                f"layer {layer.name!r}: add reads {list(sources)} with maps {operands}; expected two "
                "operands of one (C, H, W) map"
            )
        return operands[0]
    if len(sources) > 1:
        raise AsaSnnError(
            f"layer {layer.name!r}: {layer.op} reads {list(sources)}; only an add merges two layers"
        )
    return maps[sources[0]] if sources else input_map


def unread_merges(graph: FoldedGraph) -> dict[str, str]:
    """Each ``add`` whose sum does not go (through flattens) only into weight layers -> what reads it.

    On the chip an add is two cores sending to one destination core, so its sum must enter a
    conv2d / linear layer; pooling after it, or a graph ending in it, has no chip form.
    """
    reads = layer_sources(graph)
    ops = {layer.name: layer.op for layer in graph.layers}
    readers: dict[str, list[str]] = {name: [] for name in ops}
    for name, sources in reads.items():
        for source in sources:
            readers[source].append(name)
    found = {}
    for name, op in ops.items():
        if op != "add":
            continue
        ends, pending = [], list(readers[name]) or [None]
        while pending:
            reader = pending.pop()
            if reader is not None and ops[reader] == "flatten":
                pending += readers[reader] or [None]
            else:
                ends.append(reader)
        wrong = [reader or "the graph output" for reader in ends if ops.get(reader) not in SPIKING_OPS]
        if wrong:
            found[name] = ", ".join(wrong)
    return found


def speck_chain(graph: FoldedGraph, approximate: bool = False) -> list[ChainStep]:
    """The graph as Speck-runnable ops in graph order, each with the (C, H, W) map it reads and
    the layers it reads from (a chain, or a residual graph whose ``add`` ops merge two layers).

    Args:
        graph: the folded graph.
        approximate: run ``lif`` neurons as ``iaf`` (with a warning) instead of refusing them.

    Raises:
        AsaSnnError: naming the layer, for an ``add`` that does not sum two layers of one map or
            whose sum goes anywhere but into weight layers (:func:`unread_merges`), a layer reading
            an unknown layer or (not an add) two layers, a weight layer without a neuron, a neuron
            other than iaf.
        InputFormatError: a layer whose weights or output_shape disagree with its input.
    """
    steps: list[ChainStep] = []
    input_map = tuple(int(v) for v in graph.input.shape)
    maps: dict[str, tuple[int, int, int]] = {}
    reads = layer_sources(graph)
    for layer in graph.layers:
        in_map = _read_map(layer, reads[layer.name], maps, input_map)
        neuron = _speck_neuron(layer, approximate)
        steps.append(ChainStep(layer, in_map, neuron, reads[layer.name]))
        maps[layer.name] = _next_map(layer, in_map)
    for name, readers in unread_merges(graph).items():
        raise AsaSnnError(
            f"layer {name!r}: add read by {readers}; on Speck a merge feeds a conv2d / linear layer "
            "(pool each operand in its own core, before the add)"
        )
    return steps


def ceil_log2(n: int) -> int:
    """ceil(log2 n) for an integer n >= 1."""
    return (int(n) - 1).bit_length()


def kernel_memory(c_in: int, c_out: int, kh: int, kw: int) -> int:
    """Kernel memory words: c * 2^(ceil(log2(kh * kw)) + ceil(log2 f))."""
    return c_in * 2 ** (ceil_log2(kh * kw) + ceil_log2(c_out))


def neuron_memory(f: int, h: int, w: int) -> int:
    """Neuron memory words of an (f, H, W) neuron map: f * 2^(ceil(log2 H) + ceil(log2 W))."""
    return f * 2 ** (ceil_log2(h) + ceil_log2(w))


def max_bipartite_matching(fits: list[list[int]], n_right: int) -> list[int | None]:
    """Maximum bipartite matching by augmenting paths (Kuhn's algorithm).

    Args:
        fits: for each left node (layer), the right nodes (cores) it may take, in preference order.
        n_right: number of right nodes.

    Returns:
        For each left node its right node, or None when no maximum matching can include it.
    """
    owner: list[int | None] = [None] * n_right

    def augment(left: int, seen: set[int]) -> bool:
        for right in fits[left]:
            if right in seen:
                continue
            seen.add(right)
            holder = owner[right]
            if holder is None or augment(holder, seen):
                owner[right] = left
                return True
        return False

    for left in range(len(fits)):
        augment(left, set())
    assignment: list[int | None] = [None] * len(fits)
    for right, left in enumerate(owner):
        if left is not None:
            assignment[left] = right
    return assignment


@dataclass(frozen=True)
class CoreRow:
    """One core layer: a weight layer, its neurons and the sum pooling after it.

    Attributes:
        layer: the weight layer's name.
        core: the core assigned (0..8), or None when none is free / fits.
        kernel_words, neuron_words: memory needed (words, formulas in the module docstring).
        bias_entries: bias values the core holds.
        pooling: combined sum-pooling factor of the pooling layers that follow (1: none).
        destinations: number of core layers it sends spikes to (directly or through adds).
        sources: the core layers it receives spikes from; two or more where an add merges them.
    """

    layer: str
    core: int | None
    kernel_words: int
    neuron_words: int
    bias_entries: int
    pooling: int
    destinations: int
    sources: tuple[str, ...] = ()


@dataclass
class MappingReport:
    """Result of :func:`check_speck`: core table, violations and remarks."""

    rows: list[CoreRow]
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no limit is broken and every core layer has a core."""
        return not self.violations

    def table(self) -> str:
        """The core table as aligned text, one line per core layer, then the violations."""
        header = (
            "layer",
            "core",
            "kernel words",
            "neuron words",
            "bias",
            "pool",
            "dest",
            "core limits K/N",
            "from",
        )
        lines = [header]
        for row in self.rows:
            limits = "-" if row.core is None else "{}/{}".format(*CORE_MEMORY[row.core])
            lines.append(
                (
                    row.layer,
                    "-" if row.core is None else str(row.core),
                    str(row.kernel_words),
                    str(row.neuron_words),
                    str(row.bias_entries),
                    str(row.pooling),
                    str(row.destinations),
                    limits,
                    "+".join(row.sources) or "input",
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
        ]
        text += [f"VIOLATION {v.line()}" for v in self.violations]
        return "\n".join(line.rstrip() for line in text)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ok, one row per core layer (every CoreRow field), violations, cores used."""
        return {
            "ok": self.ok,
            "rows": [asdict(row) for row in self.rows],
            "violations": [v.line() for v in self.violations],
            "cores": len([r for r in self.rows if r.core is not None]),
        }


@dataclass(frozen=True)
class CoreLayer:
    """One core layer as the graph lays it out: a weight layer, its neurons and the sum pools after it.

    Attributes:
        layer: the conv2d / linear layer (it has a neuron).
        in_map: (C, H, W) the layer reads (a linear layer: the map before flattening).
        kernel, stride, padding: (h, w) of the conv; a linear layer is a conv whose kernel is its
            whole input map, stride (1, 1), padding (0, 0).
        neuron_map: (f, H, W) of its neurons: the conv output, before pooling.
        pools: the sumpool2d layers that pool its spikes, in order.
        last: the layer its spikes leave the core from: the weight layer, or the last pool or
            flatten right after it.
    """

    layer: Layer
    in_map: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    neuron_map: tuple[int, int, int]
    pools: tuple[Layer, ...]
    last: str

    @property
    def pooling(self) -> int:
        """Combined sum-pooling factor of ``pools`` (the product of their kernel heights; 1: none)."""
        factor = 1
        for pool in self.pools:
            factor *= pool_size(pool)[0]
        return factor

    @property
    def bias_entries(self) -> int:
        """Bias values the core holds (0 without a bias)."""
        bias = self.layer.tensors.get("bias")
        return 0 if bias is None else int(bias.size)


def _core_layer(layer: Layer, in_map: tuple[int, int, int]) -> CoreLayer:
    """The core layer that ``layer`` (conv2d / linear, reading ``in_map``) starts, with no pools yet."""
    _, h, w = in_map
    f = layer.tensors["weight"].shape[0]
    if layer.op == "linear":
        return CoreLayer(layer, in_map, (h, w), (1, 1), (0, 0), (f, 1, 1), (), layer.name)
    geo = conv_geometry(layer)
    (kh, kw), stride, padding = geo["kernel_size"], geo["stride"], geo["padding"]
    neuron_map = (
        f,
        (h + 2 * padding[0] - kh) // stride[0] + 1,
        (w + 2 * padding[1] - kw) // stride[1] + 1,
    )
    return CoreLayer(layer, in_map, (kh, kw), stride, padding, neuron_map, (), layer.name)


def _merge_violation(layer: Layer, operand: str) -> Violation:
    return Violation(
        layer.name,
        "merge operand",
        operand or "input",
        "an add sums the spikes of core layers (a weight layer's neurons or the sum pooling after them)",
    )


def core_layers(graph: FoldedGraph) -> tuple[list[CoreLayer], list[Violation]]:
    """The graph's core layers in order, and a :class:`Violation` for each layer that fits in none.

    A sum pool or flatten reading the ``last`` layer of a core layer joins it; an ``add`` sums the
    spikes of the core layers its operands carry and is free (the chip merges the two event
    streams at the destination core), as is a flatten after it. Violations (in graph order): a
    layer whose shape disagrees with its input, a weight layer without a neuron, sum pooling
    anywhere but after a core layer (after an add too: pool each operand in its own core), an
    ``add`` operand that carries no core layer's spikes (the graph input), an add whose sum goes
    anywhere but into weight layers (:func:`unread_merges`).
    """
    cores: list[CoreLayer] = []
    problems: list[Violation] = []
    owner: dict[str, int] = {}  # layer -> the core layer whose spikes it carries
    merged: set[str] = set()  # adds, and flattens after them
    maps: dict[str, tuple[int, int, int]] = {}
    c, h, w = graph.input.shape
    input_map = (int(c), int(h), int(w))
    reads = layer_sources(graph)
    for layer in graph.layers:
        sources = reads[layer.name]
        source = sources[0] if sources else ""
        try:
            layer_map = _read_map(layer, sources, maps, input_map)
            maps[layer.name] = _next_map(layer, layer_map)
        except (AsaSnnError, InputFormatError) as exc:
            problems.append(Violation(layer.name, "shape", str(exc), "re-fold the graph"))
            continue
        if layer.op == "add":
            problems += [_merge_violation(layer, s) for s in sources if s not in owner and s not in merged]
            merged.add(layer.name)
        elif layer.op in SPIKING_OPS and layer.neuron is None:
            problems.append(Violation(layer.name, "neuron", None, "a weight layer must end in iaf neurons"))
        elif layer.op in SPIKING_OPS:
            owner[layer.name] = len(cores)
            cores.append(_core_layer(layer, layer_map))
        elif source in merged and layer.op == "flatten":
            merged.add(layer.name)
        elif layer.op == "sumpool2d" and (source not in owner or cores[owner[source]].last != source):
            where = "after an add" if source in merged else "not after a weight layer"
            fix = "pool each operand in its own core" if source in merged else "fold into input downsample"
            problems.append(Violation(layer.name, "pooling position", where, fix))
        elif source in owner and cores[owner[source]].last == source:
            index = owner[layer.name] = owner[source]
            pools = (*cores[index].pools, layer) if layer.op == "sumpool2d" else cores[index].pools
            cores[index] = replace(cores[index], pools=pools, last=layer.name)
        elif source in owner:
            problems.append(
                Violation(
                    layer.name,
                    "one pooling chain per core",
                    f"reads {source!r}, before the end of its core's pooling",
                    f"read {cores[owner[source]].last!r}",
                )
            )
    for name, readers in unread_merges(graph).items():
        problems.append(Violation(name, "merge destination", readers, "feed the add into a conv2d / linear"))
    return cores, problems


def _geometry_limits(core: CoreLayer) -> list[Violation]:
    """Kernel, stride, padding, channel and output-map limits of one core layer's weight layer."""
    layer, (kh, kw), stride, padding = core.layer, core.kernel, core.stride, core.padding
    name, found = layer.name, []
    if kh != kw:
        found.append(Violation(name, "kernel square", (kh, kw), "use a square kernel (kh == kw)"))
    if max(kh, kw) > MAX_KERNEL:
        fix = (
            "pool the map further before this linear layer"
            if layer.op == "linear"
            else "use a smaller kernel"
        )
        found.append(Violation(name, f"kernel <= {MAX_KERNEL}", (kh, kw), fix))
    if any(s not in STRIDES for s in stride):
        found.append(Violation(name, "stride in 1/2/4/8", stride, "use stride 1, 2, 4 or 8"))
    if any(not 0 <= p <= MAX_PADDING for p in padding):
        found.append(Violation(name, f"padding 0..{MAX_PADDING}", padding, "reduce the padding"))
    for label, channels in (("input channels", core.in_map[0]), ("output channels", core.neuron_map[0])):
        if channels > MAX_CHANNELS:
            found.append(Violation(name, f"{label} <= {MAX_CHANNELS}", channels, "use fewer channels"))
    if max(core.neuron_map[1:]) > MAX_OUTPUT_MAP:
        limit = f"output map <= {MAX_OUTPUT_MAP}x{MAX_OUTPUT_MAP}"
        found.append(Violation(name, limit, core.neuron_map[1:], "downsample earlier"))
    return found


def _neuron_limits(layer: Layer) -> list[Violation]:
    """One threshold per layer (no per-neuron tensors) and iaf neurons."""
    found = []
    extra = sorted(set(layer.tensors) - {"weight", "bias"})
    threshold = np.asarray(layer.neuron.threshold)
    if extra or threshold.ndim != 0:
        found.append(
            Violation(
                layer.name,
                "one threshold per layer",
                extra or list(threshold.shape),
                "Speck holds one threshold/min_v per layer, no per-neuron parameters",
            )
        )
    if layer.neuron.kind != "iaf":
        found.append(Violation(layer.name, "neuron kind", layer.neuron.kind, "Speck has only iaf neurons"))
    return found


def _int_range(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _value_limits(layer: Layer) -> list[Violation]:
    """Integer weights / state of a quantized layer (int8 weights, int16 state)."""
    found = []
    w_lo, w_hi = _int_range(WEIGHT_BITS)
    s_lo, s_hi = _int_range(STATE_BITS)
    weight = layer.tensors["weight"]
    if not np.issubdtype(weight.dtype, np.integer):
        fix = "quantize: Speck weights are int8"
        found.append(Violation(layer.name, "weight dtype", str(weight.dtype), fix))
    elif weight.size and (weight.min() < w_lo or weight.max() > w_hi):
        value = (int(weight.min()), int(weight.max()))
        found.append(Violation(layer.name, "weight range", value, "weights must fit int8"))
    values = {"threshold": layer.neuron.threshold, "min_v": layer.neuron.min_v}
    bias = layer.tensors.get("bias")
    if bias is not None and bias.size:
        values["bias"] = (float(bias.min()), float(bias.max()))
    for name, value in values.items():
        items = np.atleast_1d(np.asarray(value if value is not None else 0, dtype=float))
        if any(item != np.round(item) or not s_lo <= item <= s_hi for item in items):
            fix = f"must be an integer in [{s_lo}, {s_hi}] (int16 state)"
            found.append(Violation(layer.name, name, value, fix))
    if layer.quant is not None and layer.quant.state_bits > STATE_BITS:
        found.append(Violation(layer.name, "state_bits", layer.quant.state_bits, "Speck state is int16"))
    if layer.quant is not None and layer.quant.weight_bits > WEIGHT_BITS:
        found.append(Violation(layer.name, "weight_bits", layer.quant.weight_bits, "Speck weights are int8"))
    return found


def _pooling_limits(core: CoreLayer) -> list[Violation]:
    """Square sum pools whose combined factor, after each pool, is 1, 2 or 4."""
    found, factor = [], 1
    for pool in core.pools:
        kh, kw = pool_size(pool)
        factor *= kh
        if kh != kw or factor not in POOL_SIZES:
            found.append(
                Violation(pool.name, "sum pooling 1/2/4", (kh, kw), "use square sum pooling of 1, 2 or 4")
            )
    return found


def core_layer_limits(core: CoreLayer, quantized: bool) -> list[Violation]:
    """Every per-layer Speck limit one core layer breaks: geometry, neurons, values, pooling.

    Args:
        core: the core layer.
        quantized: check integer weights and state (int8 / int16) too.
    """
    values = _value_limits(core.layer) if quantized else []
    return [*_geometry_limits(core), *_neuron_limits(core.layer), *values, *_pooling_limits(core)]


def core_memory(core: CoreLayer) -> tuple[int, int]:
    """(kernel words, neuron words) one core layer needs (formulas in the module docstring)."""
    kernel = kernel_memory(core.in_map[0], core.neuron_map[0], *core.kernel)
    return kernel, neuron_memory(*core.neuron_map)


def assign_cores(names: list[str], words: list[tuple[int, int]]) -> tuple[list[int | None], list[Violation]]:
    """Assign core layers to the 9 cores by maximum bipartite matching.

    A layer may take a core whose kernel and neuron memory (``CORE_MEMORY``, words) both hold its own.

    Args:
        names: the core layers' names.
        words: (kernel words, neuron words) each needs (:func:`core_memory`).

    Returns:
        The core of each layer (None: none left for it), and a violation per unassigned layer plus
        one when there are more core layers than cores.
    """
    fits = [
        [j for j, (k_cap, n_cap) in enumerate(CORE_MEMORY) if kernel <= k_cap and neuron <= n_cap]
        for kernel, neuron in words
    ]
    assignment = max_bipartite_matching(fits, len(CORE_MEMORY))
    found = []
    for name, (kernel, neuron), fit, chosen in zip(names, words, fits, assignment, strict=True):
        if chosen is None:
            reason = "fits no core" if not fit else "every core it fits is taken"
            found.append(
                Violation(
                    name,
                    f"core memory ({reason})",
                    {"kernel": kernel, "neuron": neuron},
                    "use fewer channels or a smaller map (a stride or pooling earlier)",
                )
            )
    if len(names) > len(CORE_MEMORY):
        limit = f"core layers <= {len(CORE_MEMORY)}"
        found.append(Violation("graph", limit, len(names), "use fewer weight layers"))
    return assignment, found


def core_inputs(graph: FoldedGraph, cores: list[CoreLayer]) -> dict[str, tuple[int, ...]]:
    """Weight layer -> the core layers (indices into ``cores``) whose spikes it receives: one
    through a chain, two or more through ``add`` ops (a merge); empty for the graph input."""
    index = {core.layer.name: i for i, core in enumerate(cores)}
    carried: dict[str, tuple[int, ...]] = {}
    received: dict[str, tuple[int, ...]] = {}
    reads = layer_sources(graph)
    for layer in graph.layers:
        sources = reads[layer.name]
        feeding = tuple(sorted({i for source in sources for i in carried.get(source, ())}))
        if layer.name in index:
            received[layer.name] = feeding
            carried[layer.name] = (index[layer.name],)
        else:
            carried[layer.name] = feeding
    return received


def destinations(graph: FoldedGraph, cores: list[CoreLayer]) -> list[int]:
    """Number of core layers each core layer sends spikes to, directly or through ``add`` ops
    (a residual block's input core sends to its first conv and to the core after the merge)."""
    counts = [0] * len(cores)
    for feeding in core_inputs(graph, cores).values():
        for i in feeding:
            counts[i] += 1
    return counts


def _input_limits(graph: FoldedGraph) -> list[Violation]:
    """The input map limit (``MAX_INPUT_MAP`` square)."""
    _, h, w = graph.input.shape
    if max(h, w) > MAX_INPUT_MAP:
        limit = f"input <= {MAX_INPUT_MAP}x{MAX_INPUT_MAP}"
        return [Violation("input", limit, (h, w), "downsample the input")]
    return []


def _row_limits(rows: list[CoreRow]) -> list[Violation]:
    """Bias entries and destinations of each core layer, in row order."""
    found = []
    for row in rows:
        if row.bias_entries > BIAS_ENTRIES:
            found.append(Violation(row.layer, f"bias <= {BIAS_ENTRIES}", row.bias_entries, "fewer channels"))
        if row.destinations > MAX_DESTINATIONS:
            limit = f"destinations <= {MAX_DESTINATIONS}"
            found.append(Violation(row.layer, limit, row.destinations, "reduce fan-out"))
    return found


def _in_graph_order(graph: FoldedGraph, violations: list[Violation]) -> list[Violation]:
    """``violations`` (each naming a graph layer) sorted by that layer's position; ties keep their order."""
    position = {layer.name: index for index, layer in enumerate(graph.layers)}
    return sorted(violations, key=lambda v: position[v.layer])


def check_speck(graph: FoldedGraph) -> MappingReport:
    """Check every documented Speck limit on ``graph`` and assign its core layers to the 9 cores.

    A core layer is a conv2d / linear layer with its neurons plus the sum pooling that follows it
    (flatten is free). An ``add`` is free too: its operands' cores both send to the core reading it
    (a merge), which counts towards each sender's destinations (at most 2). A layer fits a core
    when its kernel and neuron memory fit that core's (``CORE_MEMORY``); layers are matched to
    cores by maximum bipartite matching.

    Returns:
        A :class:`MappingReport`; ``report.ok`` is False when any :class:`Violation` was found. The
        violations come as: the input map; each layer's, in graph order; each core layer's bias and
        destinations; the core assignment's.
    """
    notes = [] if graph.quantized else [FLOAT_NOTE]
    cores, misplaced = core_layers(graph)
    limits = [v for core in cores for v in core_layer_limits(core, graph.quantized)]
    words = [core_memory(core) for core in cores]
    assignment, unassigned = assign_cores([core.layer.name for core in cores], words)
    fan_out = destinations(graph, cores)
    fan_in = core_inputs(graph, cores)
    rows = [
        CoreRow(
            core.layer.name,
            chosen,
            kernel,
            neuron,
            core.bias_entries,
            core.pooling,
            sent,
            tuple(cores[i].layer.name for i in fan_in[core.layer.name]),
        )
        for core, chosen, (kernel, neuron), sent in zip(cores, assignment, words, fan_out, strict=True)
    ]
    layer_limits = _in_graph_order(graph, misplaced + limits)
    violations = [*_input_limits(graph), *layer_limits, *_row_limits(rows), *unassigned]
    return MappingReport(rows, violations, notes)


def speck_core_layout(graph: FoldedGraph) -> dict[str, CoreUse]:
    """Spiking layer -> its core use: one layer per core, memory in kernel / neuron words."""
    return {row.layer: CoreUse(1, row.kernel_words, row.neuron_words) for row in check_speck(graph).rows}


def speck_core_options(graph: FoldedGraph) -> dict[str, tuple[int | None, list[int]]]:
    """Weight layer -> (the core the matching gives it, None where none fits; the other cores whose
    kernel and neuron memory (:data:`CORE_MEMORY`) would hold it)."""
    options = {}
    for row in check_speck(graph).rows:
        others = [
            core
            for core, (kernel, neuron) in enumerate(CORE_MEMORY)
            if core != row.core and row.kernel_words <= kernel and row.neuron_words <= neuron
        ]
        options[row.layer] = (row.core, others)
    return options
