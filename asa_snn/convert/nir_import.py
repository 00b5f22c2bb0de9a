"""Import a NIR graph (``nir`` 1.0) as a folded graph: the inverse of :mod:`asa_snn.convert.nir_export`.

Pure: a :class:`nir.NIRGraph` (from :func:`read_nir` or straight from ``sinabs.to_nir``, Norse or
snnTorch) and :class:`ImportOptions` in, an :class:`ImportResult` (the float graph, the dt used and
notes) out. Quantization, calibration and files are the workflow's (``asa_snn.workflows.import_nir``).

Structure. The graph must be one chain ``Input -> ... -> Output``: every node one input and one
output edge, no branch, join (NIR sums the inputs of a node), cycle or nested graph. Nodes group into
layers::

    Conv2d                     -> conv2d (padding "valid" / "same" / pairs; no dilation limit)
    Linear, Affine             -> linear (reads a 1-d input: Flatten first)
    SumPool2d                  -> sumpool2d (stride = kernel, no padding)
    AvgPool2d                  -> sumpool2d, and 1 / (kh kw) folded into the next layer's weights
    Flatten                    -> flatten ((C, H, W) -> (C H W,); on a 1-d input it is dropped)
    Scale                      -> folded: right after a conv2d / linear into its rows (weights, bias),
                                  elsewhere into the next conv2d / linear's input columns
    IF, LIF, CubaLIF           -> the neuron of the conv2d / linear before it
    CubaLI, LI (non-spiking)   -> a read-out of currents: generic target with ``approximate`` only

Neurons, discretised at one step ``dt`` with the forward-Euler convention of ``nir_export``
(the input current ``I`` held for the step; spikes of the layer before are the input ``S``):

.. math::
    \\text{IF:}\\quad v \\leftarrow v + R I \\qquad
    \\text{LIF:}\\quad v \\leftarrow \\gamma v + g I,\\;
        \\gamma = 1 - \\tfrac{dt}{\\tau},\\; g = \\tfrac{dt}{\\tau} R

    \\text{CubaLIF:}\\quad I \\leftarrow (1 - d_u) I + d_u w_{in} S,\\;
        v \\leftarrow (1 - d_v) v + d_v R I \\quad\\text{with}\\quad
        d_u = \\tfrac{dt}{\\tau_{syn}},\\; d_v = \\tfrac{dt}{\\tau_{mem}}

The input gains (``R`` for IF, ``g`` for LIF, ``d_u w_in d_v R`` for CubaLIF) multiply the rows of
the weights and bias before the neuron (one per output channel of a conv, so they may vary by
channel but not by position), leaving the folded neurons with unit gain: ``iaf`` (v += I),
``lif`` (decay = gamma) and ``cuba`` (du, dv). A gain within 1e-6 of 1 is taken as 1 (the file
stores float32). Time constants, thresholds and leaks must be equal over a layer's neurons (Speck
and Loihi hold one per layer): a spread is refused with the range found. A time constant shorter
than dt (decay < 0) is refused; a leak per step below 1e-4 gets a note (sinabs writes LIF ``tau`` in
steps, not seconds: pass ``dt_us = 1e6`` for such files).

Reset and threshold. NIR 1.0's equations subtract the threshold and fire at ``v > theta``; newer
NIR files carry ``v_reset`` (reset to that value: only 0 is held). ``iaf`` and ``lif`` fire at
``v >= theta`` (Speck's rule and sinabs'), ``cuba`` at ``v > theta`` and always resets to zero
(Loihi). So an import reproduces sinabs' IAF exactly and Norse's IF except where a membrane lands
exactly on theta (said in the notes). Where the file says more in a neuron's ``metadata`` (written
by ``nir_export``: ``kind``, ``reset``, ``min_v``, ``multi_spike``, ``threshold``), that is taken.

Changing the dynamics for the target is refused unless ``approximate``, and each approximation is
named with its expected effect in the notes: LIF or CubaLIF onto Speck's IAF (leak dropped), IF or
LIF onto Loihi's CUBA neuron (reset to zero, strict threshold), a subtracting CubaLIF onto a CUBA
neuron (which resets to zero), a CubaLIF bias from another tool (NIR puts it into the synaptic
current; the folded cuba adds it to the voltage: scaled to the same steady state), a CubaLI / LI
read-out (generic target: class scores become mean currents).

Round trip: a graph written by ``nir_export.write_nir`` comes back with the same layers, tensors
and neurons. NIR stores float32; decays and thresholds are restored as the simplest value the
stored float32 reproduces (a multiple of 1/4096, Loihi's decay unit, else the shortest decimal),
so the exporter's 0.3 comes back as 0.3, not 0.30000001; thresholds and ``min_v`` come exactly
from the neuron metadata. A quantized file (metadata ``quantized``) gets integer tensors back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import nir
import numpy as np

from asa_snn.convert.graph import NEURON_KINDS, FoldedGraph, Layer, LayerQuant, NeuronSpec
from asa_snn.convert.graph_check import check_graph
from asa_snn.convert.layer_attrs import Conv2dAttrs, LinearAttrs
from asa_snn.data.formats._common import check_decoded_size
from asa_snn.data.model_input import InputSpec, centre_crop
from asa_snn.errors import AsaSnnError, InputFormatError

US_PER_S = 1e6
DEFAULT_DT_US = 1000
"""Step length when neither the caller nor the file's metadata (``dt``, seconds) gives one."""
DEFAULT_STEPS = 16
"""Steps per inference when neither the caller nor the file's metadata (``n_steps``) gives one."""
GENERIC = "generic"
UNIT_TOLERANCE = 1e-6
"""Relative spread below which per-neuron values count as equal and a gain as 1 (float32 storage)."""
SMALL_LEAK = 1e-4
SUPPORTED = (
    "Input", "Output", "Conv2d", "Linear", "Affine", "Scale", "SumPool2d", "AvgPool2d", "Flatten",
    "IF", "LIF", "CubaLIF", "CubaLI", "LI",
)  # fmt: skip


@dataclass(eq=False)
class CubaLI:
    """NIR's current-based leaky integrator (newer ``nir`` releases; read here where ``nir`` lacks it).

    .. math::
        \\tau_{syn} \\dot I = -I + w_{in} S, \\qquad \\tau_{mem} \\dot v = (v_{leak} - v) + R I

    A non-spiking read-out: its output is ``v``.
    """

    tau_syn: np.ndarray
    tau_mem: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray
    w_in: np.ndarray = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportOptions:
    """What the import may produce and the input contract NIR cannot state.

    Attributes:
        target: ``"generic"`` or a chip name (recorded in the graph; read-outs need ``generic``).
        neuron_kinds: neuron kinds the target holds (a chip's ``neuron_kinds``; all for generic).
        dt_us: microseconds per step; None: the file's metadata ``dt`` (seconds), else 1000.
        n_steps: steps per inference; None: the file's metadata ``n_steps``, else 16.
        sensor: (W, H, P) of the event sensor; None: the input's (W, H, C).
        approximate: allow conversions that change the dynamics (each named in the notes).
        quant_bits: (weight bits, state bits) of the target's integers, to restore the
            quantization metadata of a quantized file; None: no metadata restored.
        multi_spike: IF neurons emit floor(v / theta) spikes per step (sinabs' default IAF) instead
            of at most one (NIR's equation); a neuron's own metadata wins.
    """

    target: str = GENERIC
    neuron_kinds: tuple[str, ...] = NEURON_KINDS
    dt_us: int | None = None
    n_steps: int | None = None
    sensor: tuple[int, int, int] | None = None
    approximate: bool = False
    quant_bits: tuple[int, int] | None = None
    multi_spike: bool = False


@dataclass
class ImportResult:
    """The imported graph and what the import decided.

    Attributes:
        graph: the folded graph (float unless the file held a quantized asa-snn graph).
        dt_us: microseconds per step used for the time constants and the input spec.
        dt_source: where ``dt_us`` came from (option, file metadata or default), as a phrase.
        notes: conventions applied, gains folded, approximations and their expected effects.
        approximations: the subset of ``notes`` that changed the dynamics.
    """

    graph: FoldedGraph
    dt_us: int
    dt_source: str
    notes: list[str] = field(default_factory=list)
    approximations: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading a file


def _type_name(node: object) -> str:
    return type(node).__name__


def _dataset_sizes(handle: Any, path: Path) -> tuple[int, int]:
    """(declared, stored) bytes of every dataset in the open HDF5 file, from metadata only."""
    import h5py

    declared, stored = 0, 0

    def visit(name: str, item: Any) -> None:
        nonlocal declared, stored
        if not isinstance(item, h5py.Dataset):
            return
        plist = item.id.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count() > 0:
            raise InputFormatError(f"{path}: HDF5 dataset {name!r} keeps its data outside the file")
        declared += math.prod(item.shape or ()) * item.dtype.itemsize
        stored += item.id.get_storage_size()

    handle.visititems(visit)
    return declared, stored


KEPT_EXTRAS = ("v_reset", "metadata")
"""Fields of newer NIR files kept as attributes where the installed ``nir`` class lacks them."""


def _node_from_dict(name: str, data: dict[str, Any], path: Path) -> object:
    kind = _text(data.get("type"))
    if kind == "NIRGraph":
        return _graph_from_dict(data, path, name)
    cls = CubaLI if kind == "CubaLI" and not hasattr(nir, "CubaLI") else getattr(nir, kind, None)
    if not isinstance(cls, type) or (kind not in (*SUPPORTED, *REJECTED) and cls is not CubaLI):
        raise AsaSnnError(
            f"{path}: node {name!r} has NIR type {kind!r}, which this import does not read; "
            f"supported: {', '.join(SUPPORTED)}"
        )
    known = {f.name for f in fields(cls)} | {"type", "shape"}
    unknown = sorted(set(data) - known - {"input_type", "output_type", *KEPT_EXTRAS})
    if unknown:
        raise InputFormatError(
            f"{path}: node {name!r} ({kind}) has field(s) {unknown} that nir {nir.version} does not "
            "know; expected the fields of NIR 1.0"
        )
    extras = {key: data.pop(key) for key in KEPT_EXTRAS if key in data and key not in known}
    try:
        node = (
            cls(**{k: v for k, v in data.items() if k != "type"}) if cls is CubaLI else nir.dict2NIRNode(data)
        )
    except (AssertionError, TypeError, ValueError, KeyError) as exc:
        raise InputFormatError(f"{path}: node {name!r} (NIR type {kind!r}) is malformed ({exc})") from exc
    for key, value in extras.items():
        setattr(node, key, value)
    return node


def _graph_from_dict(data: dict[str, Any], path: Path, name: str = "graph") -> nir.NIRGraph:
    if not isinstance(data.get("nodes"), dict) or "edges" not in data:
        raise InputFormatError(f"{path}: {name} is not a NIR graph (no nodes / edges)")
    nodes = {str(k): _node_from_dict(str(k), v, path) for k, v in data["nodes"].items()}
    try:
        edges = [(_text(a), _text(b)) for a, b in np.asarray(data["edges"]).reshape(-1, 2)]
    except ValueError as exc:
        raise InputFormatError(f"{path}: {name}: edges are not (source, target) pairs ({exc})") from exc
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(data.get("metadata", {})))


def _text(value: object) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_nir(path: str | Path) -> nir.NIRGraph:
    """The NIR graph in ``path`` (a ``.nir`` HDF5 file, as ``nir.write`` writes it).

    Like ``nir.read``, plus: sizes checked before anything is read (a decompression bomb is refused),
    a ``CubaLI`` node read even where the installed ``nir`` lacks the type, and errors that name the
    file and the node.

    Raises:
        InputFormatError: no such file, not HDF5, not a NIR file, a malformed node.
        AsaSnnError: a node type this import does not read.
    """
    import h5py
    from nir.serialization import hdf2dict

    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: no such NIR file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputFormatError(f"{path}: not a NIR file (not HDF5: {exc})") from exc
    with handle:
        if not isinstance(handle.get("node"), h5py.Group):
            raise InputFormatError(f"{path}: not a NIR file (no 'node' group)")
        declared, stored = _dataset_sizes(handle, path)
        check_decoded_size(declared, stored, path, "the NIR graph")
        data = hdf2dict(handle["node"])
    if data.get("type") != "NIRGraph":
        raise InputFormatError(f"{path}: the top NIR node is {data.get('type')!r}; expected a NIRGraph")
    return _graph_from_dict(data, path)


# ---------------------------------------------------------------- graph structure


def chain_of(graph: nir.NIRGraph) -> tuple[tuple[str, object], list[tuple[str, object]]]:
    """(input node, the nodes from the input to the output in order, Output included).

    Raises:
        AsaSnnError: not one Input and one Output, an edge to an unknown node, a branch, a join,
            a cycle, a nested graph or a node off the chain (each named).
    """
    nodes = graph.nodes
    for a, b in graph.edges:
        for end in (a, b):
            if end not in nodes:
                raise InputFormatError(f"NIR edge ({a!r}, {b!r}) names node {end!r}, which the graph lacks")
    for kind in ("Input", "Output"):
        found = [name for name, node in nodes.items() if _type_name(node) == kind]
        if len(found) != 1:
            raise AsaSnnError(
                f"the NIR graph has {len(found)} {kind} node(s) {found}; the folded graph takes one input "
                "and gives one output"
            )
    successors: dict[str, list[str]] = {name: [] for name in nodes}
    predecessors: dict[str, list[str]] = {name: [] for name in nodes}
    for a, b in dict.fromkeys((str(a), str(b)) for a, b in graph.edges):
        successors[a].append(b)
        predecessors[b].append(a)
    for name, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise AsaSnnError(
                f"node {name!r}: a nested NIR graph (a recurrent layer such as snnTorch's RLeaky); the "
                "folded graph is a feed-forward chain"
            )
        if len(predecessors[name]) > 1:
            raise AsaSnnError(
                f"node {name!r} ({_type_name(node)}) has {len(predecessors[name])} inputs "
                f"{predecessors[name]} (NIR sums them: a residual join); the import takes chains only"
            )
        if len(successors[name]) > 1:
            raise AsaSnnError(
                f"node {name!r} ({_type_name(node)}) feeds {len(successors[name])} nodes "
                f"{successors[name]} (a branch); the import takes chains only"
            )
    start = next(name for name, node in nodes.items() if _type_name(node) == "Input")
    order, seen, current = [], {start}, start
    while successors[current]:
        current = successors[current][0]
        if current in seen:
            raise AsaSnnError(
                f"node {current!r} lies on a cycle (a recurrent edge); the folded graph is feed-forward"
            )
        seen.add(current)
        order.append((current, nodes[current]))
    if not order or _type_name(order[-1][1]) != "Output":
        raise AsaSnnError(f"the chain from Input {start!r} ends at {current!r}, not at the Output node")
    off = sorted(set(nodes) - seen)
    if off:
        raise AsaSnnError(f"node(s) {off} lie off the chain from Input {start!r} to the Output node")
    return (start, nodes[start]), order


# ---------------------------------------------------------------- numbers


def _array(node_name: str, key: str, value: object) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputFormatError(f"node {node_name!r}: {key} is not numeric ({exc})") from exc
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise InputFormatError(f"node {node_name!r}: {key} is empty or holds NaN / infinite values")
    return array


def _spread_ok(array: np.ndarray) -> bool:
    low, high = float(array.min()), float(array.max())
    return high - low <= UNIT_TOLERANCE * max(abs(low), abs(high), 1e-30)


def uniform(node_name: str, key: str, value: object, why: str = "") -> float:
    """The one value of a per-neuron parameter; a spread is an error naming node, key and range."""
    array = _array(node_name, key, value)
    if not _spread_ok(array):
        raise AsaSnnError(
            f"node {node_name!r}: per-neuron {key} from {array.min():g} to {array.max():g} (spread "
            f"{np.ptp(array):g}); the folded graph holds one {key} per layer"
            + (f" ({why})" if why else " (Speck and Loihi hold one per layer)")
        )
    return float(array.flat[0])


def simplest(value: float, reproduces: Callable[[float], bool]) -> float:
    """The simplest number the stored float32 reproduces: a multiple of 1/4096 (Loihi's decay unit),
    else the shortest decimal; ``value`` itself when none does."""
    for bits in range(13):
        candidate = round(value * 2**bits) / 2**bits
        if candidate != 0 and reproduces(candidate):
            return candidate
    for digits in range(1, 18):
        candidate = float(f"{value:.{digits}g}")
        if candidate != 0 and reproduces(candidate):
            return candidate
    return value


def _stored(value: float) -> np.float32:
    return np.float32(value)


@dataclass
class NeuronImport:
    """What one neuron node becomes: the neuron, its input gain per neuron, a bias rule and notes."""

    neuron: NeuronSpec | None
    gain: np.ndarray
    bias_per_step: float = 1.0
    notes: list[str] = field(default_factory=list)
    approximations: list[str] = field(default_factory=list)


def _threshold(name: str, node: Any) -> float:
    stored = uniform(name, "threshold", node.v_threshold)
    meta = getattr(node, "metadata", None) or {}
    exact = meta.get("threshold")
    if exact is not None and _stored(float(exact)) == _stored(stored):
        return float(exact)
    return simplest(stored, lambda c: _stored(c) == _stored(stored))


def _reset(name: str, node: Any) -> str:
    meta = getattr(node, "metadata", None) or {}
    if "reset" in meta:
        return str(meta["reset"])
    v_reset = getattr(node, "v_reset", None)
    if v_reset is None:
        return "subtract"
    if uniform(name, "v_reset", v_reset) != 0.0:
        raise AsaSnnError(
            f"node {name!r}: v_reset {uniform(name, 'v_reset', v_reset):g}; the folded graph resets to 0 or "
            "subtracts the threshold"
        )
    return "zero"


def _no_leak_voltage(name: str, node: Any) -> None:
    v_leak = getattr(node, "v_leak", None)
    if v_leak is not None and uniform(name, "v_leak", v_leak) != 0.0:
        raise AsaSnnError(
            f"node {name!r}: v_leak {uniform(name, 'v_leak', v_leak):g} (a resting potential other than 0); "
            "the folded graph's neurons rest at 0"
        )


def _leak(name: str, key: str, tau: object, dt: float, notes: list[str]) -> float:
    """dt / tau as a fraction per step, the simplest the stored float32 tau reproduces."""
    tau_value = uniform(name, key, tau)
    if tau_value <= 0:
        raise InputFormatError(f"node {name!r}: {key} {tau_value:g} s must be > 0")
    fraction = dt / tau_value
    if fraction > 1:
        raise AsaSnnError(
            f"node {name!r}: {key} {tau_value:g} s is shorter than the step dt = {dt:g} s (decay "
            f"{1 - fraction:g} per step); pass a smaller --dt-us"
        )
    if fraction < SMALL_LEAK:
        notes.append(
            f"node {name!r}: {key} {tau_value:g} s leaks only {fraction:.2g} per step at dt = {dt:g} s; "
            "if the file stores tau in steps (sinabs does), import with --dt-us 1000000"
        )
    return simplest(fraction, lambda c: _stored(dt / c) == _stored(tau_value))


def _multi(meta: dict[str, Any], default: bool = False) -> bool:
    return bool(int(meta.get("multi_spike", default)))


def _min_v(meta: dict[str, Any]) -> float | None:
    return None if meta.get("min_v") is None else float(meta["min_v"])


def _gain(*factors: object) -> np.ndarray:
    gain = np.ones(1)
    for factor in factors:
        gain = gain * np.asarray(factor, dtype=np.float64)
    return gain


def _if(name: str, node: Any, dt: float, options: ImportOptions) -> NeuronImport:
    meta = getattr(node, "metadata", None) or {}
    threshold, reset = _threshold(name, node), _reset(name, node)
    gain = _gain(_array(name, "r", node.r))
    if "iaf" in options.neuron_kinds:
        spec = NeuronSpec("iaf", threshold, reset, _min_v(meta), _multi(meta, options.multi_spike))
        return NeuronImport(spec, gain)
    effect = (
        f"node {name!r}: IF run as a CUBA neuron with du = 1, dv = 0 (Loihi's only kind): it resets to 0 "
        "instead of subtracting the threshold and fires only above it, so strongly driven neurons lose "
        "their surplus and fire less"
    )
    return _approximated(
        name, "IF", options, NeuronSpec("cuba", threshold, "zero", du=1.0, dv=0.0), gain, effect
    )


def _approximated(
    name: str,
    kind: str,
    options: ImportOptions,
    spec: NeuronSpec,
    gain: np.ndarray,
    effect: str,
    bias: float = 1.0,
) -> NeuronImport:
    if not options.approximate:
        raise AsaSnnError(
            f"node {name!r}: {kind} neurons cannot run unchanged on {options.target} (it holds "
            f"{', '.join(options.neuron_kinds)}); pass --approximate to accept: {effect.split(': ', 1)[1]}"
        )
    return NeuronImport(spec, gain, bias, approximations=[f"approximation: {effect}"])


def _lif(name: str, node: Any, dt: float, options: ImportOptions) -> NeuronImport:
    meta = getattr(node, "metadata", None) or {}
    _no_leak_voltage(name, node)
    threshold, reset, notes = _threshold(name, node), _reset(name, node), []
    tau = uniform(name, "tau", node.tau)
    decay = simplest(1.0 - dt / tau, lambda c: c < 1 and _stored(dt / (1 - c)) == _stored(tau))
    leak = _leak(name, "tau", node.tau, dt, notes)
    gain = _gain(leak, _array(name, "r", node.r))
    if "lif" in options.neuron_kinds:
        result = NeuronImport(NeuronSpec("lif", threshold, reset, decay=decay), gain, notes=notes)
        return result
    if "iaf" in options.neuron_kinds:
        effect = (
            f"node {name!r}: LIF (decay {decay:g} per step) run as IAF: the leak is dropped, so membranes "
            "keep their charge between steps and spike counts rise, most for sparse input"
        )
        spec = NeuronSpec("iaf", threshold, reset, _min_v(meta), _multi(meta))
        result = _approximated(name, "LIF", options, spec, gain, effect)
    else:
        effect = (
            f"node {name!r}: LIF run as a CUBA neuron with du = 1, dv = {leak:g}: it resets to 0 instead of "
            "subtracting the threshold and fires only above it; strongly driven neurons fire less"
        )
        result = _approximated(
            name, "LIF", options, NeuronSpec("cuba", threshold, "zero", du=1.0, dv=leak), gain, effect
        )
    result.notes = notes
    return result


def _cuba(name: str, node: Any, dt: float, options: ImportOptions) -> NeuronImport:
    meta = getattr(node, "metadata", None) or {}
    _no_leak_voltage(name, node)
    threshold, reset, notes = _threshold(name, node), _reset(name, node), []
    du = _leak(name, "tau_syn", node.tau_syn, dt, notes)
    dv = _leak(name, "tau_mem", node.tau_mem, dt, notes)
    w_in, r = _array(name, "w_in", node.w_in), _array(name, "r", node.r)
    ours = meta.get("kind") == "cuba"
    if "cuba" in options.neuron_kinds and (ours or reset == "zero"):
        # NIR adds a bias to the synaptic current, the folded cuba to the voltage: 1 / du keeps the
        # steady state (an asa-snn file already holds the voltage bias)
        spec = NeuronSpec("cuba", threshold, reset if ours else "zero", du=du, dv=dv)
        return NeuronImport(spec, _gain(du, dv, w_in, r), 1.0 if ours else 1.0 / du, notes=notes)
    gain, bias = _gain(du, dv, w_in, r), 1.0 / du
    if "cuba" in options.neuron_kinds:
        effect = (
            f"node {name!r}: CubaLIF that subtracts its threshold run as a CUBA neuron, which resets to 0: "
            "strongly driven neurons lose their surplus and fire less"
        )
        spec = NeuronSpec("cuba", threshold, "zero", du=du, dv=dv)
    else:
        # without the synaptic filter an input delivers its whole charge at once: w_in dv R per unit
        gain, bias = _gain(w_in, r, dv), du if ours else 1.0
        if "iaf" in options.neuron_kinds:
            effect = (
                f"node {name!r}: CubaLIF (du {du:g}, dv {dv:g}) run as IAF: the synaptic filter and the leak "
                "are dropped, so each input acts at once and in full and spike counts rise"
            )
            spec = NeuronSpec("iaf", threshold, reset, _min_v(meta), _multi(meta))
        else:
            effect = (
                f"node {name!r}: CubaLIF (du {du:g}) run as LIF with decay {1 - dv:g}: the synaptic filter "
                "is dropped, so each input acts at once"
            )
            spec = NeuronSpec("lif", threshold, reset, decay=1 - dv)
    result = _approximated(name, "CubaLIF", options, spec, gain, effect, bias)
    result.notes = notes
    return result


def _readout(name: str, node: Any, dt: float, options: ImportOptions) -> NeuronImport:
    kind = _type_name(node)
    _no_leak_voltage(name, node)
    notes: list[str] = []
    if kind == "CubaLI":
        _leak(name, "tau_syn", node.tau_syn, dt, notes)
        dv = _leak(name, "tau_mem", node.tau_mem, dt, notes)
        gain = _gain(dv, _array(name, "w_in", node.w_in), _array(name, "r", node.r))
    else:
        dv = _leak(name, "tau", node.tau, dt, notes)
        gain = _gain(dv, _array(name, "r", node.r))
    if options.target != GENERIC:
        raise AsaSnnError(
            f"node {name!r}: a {kind} read-out (non-spiking) cannot be held by {options.target}, whose "
            "layers all end in spiking neurons; end the network in IF / LIF / CubaLIF neurons"
        )
    effect = (
        f"node {name!r}: the {kind} read-out is dropped; the last layer's currents, averaged over the T "
        "steps, become the class scores instead of the integrator's final potential (recent steps no "
        "longer weigh more)"
    )
    if not options.approximate:
        raise AsaSnnError(
            f"node {name!r}: a {kind} read-out has no folded form; pass --approximate to accept: "
            f"{effect.split(': ', 1)[1]}"
        )
    return NeuronImport(None, gain, notes=notes, approximations=[f"approximation: {effect}"])


NEURONS: dict[str, Callable[[str, Any, float, ImportOptions], NeuronImport]] = {
    "IF": _if,
    "LIF": _lif,
    "CubaLIF": _cuba,
    "CubaLI": _readout,
    "LI": _readout,
}
"""NIR neuron type -> what it becomes (strategies, one per type)."""


# ---------------------------------------------------------------- layers


def _pair(node_name: str, key: str, value: object) -> tuple[int, int]:
    array = np.asarray(value).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, 2)
    if array.size != 2 or not np.all(array == np.round(array)):
        raise InputFormatError(f"node {node_name!r}: {key} {value!r}; expected an int or an (h, w) pair")
    return int(array[0]), int(array[1])


def _conv_padding(
    name: str, node: Any, kernel: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int]:
    padding = node.padding
    if isinstance(padding, (str, bytes)):
        padding = _text(padding)
        if padding == "valid":
            return 0, 0
        if padding == "same" and all(d * (k - 1) % 2 == 0 for k, d in zip(kernel, dilation, strict=True)):
            return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))  # type: ignore[return-value]
        raise AsaSnnError(
            f"node {name!r}: padding {padding!r} with kernel {list(kernel)}; expected 'valid', numbers, or "
            "'same' with an odd kernel (equal padding on both sides)"
        )
    return _pair(name, "padding", padding)


class _Builder:
    """Walks the chain, turning NIR nodes into layers (one method per node kind)."""

    def __init__(self, shape: tuple[int, ...], dt: float, options: ImportOptions) -> None:
        self.shape = shape
        self.dt = dt
        self.options = options
        self.layers: list[Layer] = []
        self.open: Layer | None = None  # conv2d / linear waiting for its neuron
        self.open_node = ""
        self.pending: np.ndarray | None = None  # input scale waiting for the next conv2d / linear
        self.pending_from: list[str] = []
        self.notes: list[str] = []
        self.approximations: list[str] = []

    # ---- helpers

    def _close(self, name: str, kind: str) -> None:
        """A non-neuron node follows: the open weight layer stays without neurons only as a read-out."""
        if self.open is not None:
            raise AsaSnnError(
                f"node {name!r} ({kind}) follows {self.open_node!r} before any neuron; the folded graph ends "
                "each conv2d / linear in neurons (pool the spikes after the neurons instead)"
            )

    def _scale_columns(self, name: str, weight: np.ndarray, groups: int) -> np.ndarray:
        """Fold the pending input scale into the columns of a weight reading ``self.shape``."""
        if self.pending is None:
            return weight
        scale = self.pending
        self.notes.append(
            f"{', '.join(repr(n) for n in self.pending_from)} folded into the input weights of {name!r}"
        )
        self.pending, self.pending_from = None, []
        if weight.ndim == 2:
            return (weight * scale.reshape(1, -1)).astype(np.float32)
        per_channel = self._per_channel(scale, name, "an input scale before a conv")
        cin = weight.shape[1]
        columns = np.repeat(per_channel.reshape(groups, cin), weight.shape[0] // groups, axis=0)
        return (weight * columns[:, :, None, None]).astype(np.float32)

    @staticmethod
    def _per_channel(array: np.ndarray, name: str, what: str) -> np.ndarray:
        """(C,) of a (C, H, W) array constant over positions; an error otherwise."""
        rows = array.reshape(array.shape[0], -1)
        bad = [c for c, row in enumerate(rows) if not _spread_ok(row)]
        if bad:
            row = rows[bad[0]]
            raise AsaSnnError(
                f"node {name!r}: {what} varies over positions within channel {bad[0]} ({row.min():g} .. "
                f"{row.max():g}); a conv shares its weights over positions, so only one value per channel "
                "can be folded"
            )
        return rows[:, 0].copy()

    def _broadcast(self, name: str, value: object, key: str) -> np.ndarray:
        array = _array(name, key, value)
        if array.ndim == 1 and len(self.shape) == 3 and array.size == self.shape[0]:
            array = array.reshape(-1, 1, 1)
        try:
            return np.broadcast_to(array, self.shape).astype(np.float64)
        except ValueError as exc:
            raise InputFormatError(
                f"node {name!r}: {key} of shape {array.shape} does not fit the layer's shape {self.shape}"
            ) from exc

    # ---- node kinds

    def conv(self, name: str, node: Any) -> None:
        self._close(name, "Conv2d")
        if len(self.shape) != 3:
            raise AsaSnnError(f"node {name!r}: Conv2d reads a {self.shape} input; expected a (C, H, W) map")
        weight = np.asarray(node.weight, dtype=np.float32)
        if weight.ndim != 4:
            raise InputFormatError(f"node {name!r}: Conv2d weight of shape {weight.shape}; expected 4-d")
        groups = int(np.asarray(node.groups))
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        dilation = _pair(name, "dilation", node.dilation)
        stride = _pair(name, "stride", node.stride)
        padding = _conv_padding(name, node, kernel, dilation)
        if weight.shape[1] * groups != self.shape[0]:
            raise InputFormatError(
                f"node {name!r}: Conv2d weight {weight.shape} with groups {groups} reads "
                f"{weight.shape[1] * groups} channels; its input has {self.shape[0]}"
            )
        attrs = Conv2dAttrs(self.shape[0], int(weight.shape[0]), kernel, stride, padding, dilation, groups)
        weight = self._scale_columns(name, weight, groups)
        sizes = [
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(self.shape[1:], kernel, stride, padding, dilation, strict=True)
        ]
        if min(sizes) < 1:
            raise AsaSnnError(f"node {name!r}: Conv2d on a {self.shape} input gives an empty map {sizes}")
        self._weight_layer(
            name, "conv2d", attrs, (attrs.out_channels, *sizes), weight, getattr(node, "bias", None)
        )

    def linear(self, name: str, node: Any) -> None:
        self._close(name, _type_name(node))
        weight = np.asarray(node.weight, dtype=np.float32)
        if len(self.shape) != 1:
            raise AsaSnnError(
                f"node {name!r}: {_type_name(node)} reads a {self.shape} map; NIR's Affine / Linear take a "
                "1-d input: put a Flatten before it"
            )
        if weight.ndim != 2 or weight.shape[1] != self.shape[0]:
            raise InputFormatError(
                f"node {name!r}: weight of shape {weight.shape} does not read the {self.shape[0]} inputs"
            )
        weight = self._scale_columns(name, weight, 1)
        attrs = LinearAttrs(int(weight.shape[1]), int(weight.shape[0]))
        self._weight_layer(name, "linear", attrs, (attrs.out_features,), weight, getattr(node, "bias", None))

    def _weight_layer(self, name, op, attrs, shape, weight, bias) -> None:
        tensors = {"weight": weight}
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float32).reshape(-1)
            if bias.shape != (weight.shape[0],):
                raise InputFormatError(
                    f"node {name!r}: bias of shape {bias.shape}; expected ({weight.shape[0]},)"
                )
            if np.any(bias != 0):
                tensors["bias"] = bias
        layer = Layer(name, op, attrs, shape, tensors, source=f"nir:{name}")
        self.layers.append(layer)
        self.open, self.open_node, self.shape = layer, name, shape

    def scale(self, name: str, node: Any) -> None:
        array = self._broadcast(name, node.scale, "scale")
        if self.open is not None:
            self._scale_rows(name, array, "Scale")
            self.notes.append(f"Scale {name!r} folded into the output rows of {self.open_node!r}")
            return
        self.pending = array if self.pending is None else self.pending * array
        self.pending_from.append(name)

    def _scale_rows(self, name: str, array: np.ndarray, what: str, bias_factor: float = 1.0) -> None:
        layer = self.open
        rows = array if len(self.shape) == 1 else self._per_channel(array, name, what)
        if np.all(np.abs(rows - 1.0) <= UNIT_TOLERANCE) and bias_factor == 1.0:
            return
        weight = layer.tensors["weight"].astype(np.float64)
        layer.tensors["weight"] = (weight * rows.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32)
        if "bias" in layer.tensors:
            bias = layer.tensors["bias"].astype(np.float64) * rows * bias_factor
            layer.tensors["bias"] = bias.astype(np.float32)

    def pool(self, name: str, node: Any) -> None:
        kind = _type_name(node)
        self._close(name, kind)
        if len(self.shape) != 3:
            raise AsaSnnError(f"node {name!r}: {kind} reads a {self.shape} input; expected a (C, H, W) map")
        kernel = _pair(name, "kernel_size", node.kernel_size)
        stride = _pair(name, "stride", node.stride if node.stride is not None else kernel)
        padding = _pair(name, "padding", node.padding if node.padding is not None else 0)
        if stride != kernel or padding != (0, 0):
            raise AsaSnnError(
                f"node {name!r}: {kind} kernel {list(kernel)}, stride {list(stride)}, padding "
                f"{list(padding)}; the folded graph pools disjoint windows (stride = kernel, no padding)"
            )
        out = (self.shape[0], self.shape[1] // kernel[0], self.shape[2] // kernel[1])
        if min(out) < 1:
            raise AsaSnnError(f"node {name!r}: {kind} {list(kernel)} on a {self.shape} input leaves nothing")
        if self.pending is not None:
            channel = self._per_channel(self.pending, name, "an input scale before pooling")
            self.pending = np.broadcast_to(channel.reshape(-1, 1, 1), out).astype(np.float64)
        self.layers.append(Layer(name, "sumpool2d", {"kernel_size": list(kernel)}, out, source=f"nir:{name}"))
        self.shape = out
        if kind == "AvgPool2d":
            average = np.full(out, 1.0 / (kernel[0] * kernel[1]))
            self.pending = average if self.pending is None else self.pending * average
            self.pending_from.append(name)

    def flatten(self, name: str, node: Any) -> None:
        self._close(name, "Flatten")
        if len(self.shape) == 1:
            self.notes.append(f"Flatten {name!r} on a 1-d input does nothing and was dropped")
            return
        start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
        rank = len(self.shape)
        if (start % rank, end % rank) != (0, rank - 1):
            raise AsaSnnError(
                f"node {name!r}: Flatten from dim {start} to {end} of a {self.shape} input; the folded graph "
                "flattens the whole map (start_dim 0, end_dim -1, batch not counted)"
            )
        out = (int(np.prod(self.shape)),)
        if self.pending is not None:
            self.pending = self.pending.reshape(out)
        self.layers.append(Layer(name, "flatten", {}, out, source=f"nir:{name}"))
        self.shape = out

    def neuron(self, name: str, node: Any) -> None:
        kind = _type_name(node)
        if self.open is None:
            before = self.layers[-1].name if self.layers else "the input"
            raise AsaSnnError(
                f"node {name!r}: {kind} neurons after {before!r} with no conv2d / linear between; the folded "
                "graph puts neurons only after a conv2d or linear layer"
            )
        made = NEURONS[kind](name, node, self.dt, self.options)
        gain = (
            np.broadcast_to(made.gain, self.shape)
            if made.gain.size == 1
            else self._broadcast(name, made.gain, "gain")
        )
        self._scale_rows(name, np.asarray(gain, np.float64), f"the input gain of {kind}", made.bias_per_step)
        if not np.all(np.abs(gain - 1.0) <= UNIT_TOLERANCE):
            self.notes.append(
                f"node {name!r}: input gain {_describe(gain)} folded into the weights of {self.open_node!r}"
            )
        if made.bias_per_step != 1.0 and "bias" in self.open.tensors:
            self.notes.append(
                f"node {name!r}: the bias of {self.open_node!r} moved from the synaptic current to the "
                f"voltage (x {made.bias_per_step:g}, same steady state)"
            )
        self.notes += made.notes
        self.approximations += made.approximations
        self.open.neuron = made.neuron
        self.open.source = f"nir:{self.open_node}+{name}"
        self.open = None if made.neuron is not None else self.open
        if made.neuron is None:
            self.open_node = f"{self.open_node} (read-out {name!r})"


def _describe(gain: np.ndarray) -> str:
    low, high = float(np.min(gain)), float(np.max(gain))
    return f"{low:g}" if _spread_ok(np.asarray(gain)) else f"{low:g} .. {high:g}"


REJECTED = {
    "Conv1d": "the folded graph holds 2-d convolutions only",
    "Delay": "the folded graph has no synaptic delays",
    "I": "a non-leaky integrator without spikes has no folded form",
    "Threshold": "a bare threshold without membrane has no folded form",
}
"""NIR types read from a file but refused by the import, with why."""


def _rejected(name: str, node: object) -> None:
    kind = _type_name(node)
    why = REJECTED.get(kind, f"supported: {', '.join(SUPPORTED)}")
    raise AsaSnnError(f"node {name!r}: NIR type {kind} cannot be imported ({why})")


# ---------------------------------------------------------------- the input contract


def _input_shape(name: str, node: Any) -> tuple[int, int, int]:
    declared = (node.input_type or {}).get("input")
    if declared is None:
        raise InputFormatError(f"Input node {name!r} states no shape")
    shape = tuple(int(v) for v in np.asarray(declared).reshape(-1))
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise AsaSnnError(
            f"Input node {name!r}: shape {list(shape)}; expected a (C, H, W) frame of event counts (a "
            "1-d input has no sensor geometry: export the model with its (C, H, W) input)"
        )
    return shape  # type: ignore[return-value]


def time_step(metadata: dict[str, Any], dt_us: int | None) -> tuple[int, str]:
    """(microseconds per step, where it came from): the option, the file's ``dt`` (seconds), 1000 us."""
    if dt_us is not None:
        if isinstance(dt_us, bool) or int(dt_us) != dt_us or dt_us < 1:
            raise AsaSnnError(f"--dt-us must be an integer >= 1 microsecond, got {dt_us!r}")
        return int(dt_us), "--dt-us"
    if metadata.get("dt") is not None:
        seconds = float(np.asarray(metadata["dt"]))
        micro = round(seconds * US_PER_S)
        if not np.isfinite(seconds) or micro < 1:
            raise InputFormatError(f"NIR metadata dt = {seconds!r} s; expected at least 1 microsecond")
        return micro, f"the NIR metadata (dt = {seconds:g} s)"
    return DEFAULT_DT_US, f"the default ({DEFAULT_DT_US} us; the NIR file states no dt)"


def input_spec_for(
    shape: tuple[int, int, int], sensor: tuple[int, int, int] | None, dt_us: int, n_steps: int
) -> tuple[InputSpec, str]:
    """The input spec of a (C, H, W) input from a (W, H, P) sensor, sliced in ``dt_us`` steps.

    Polarity: separate when C = P, merged when C = 1. Geometry: the whole sensor when it equals the
    input; else the smallest binning factor d with ceil(W / d), ceil(H / d) equal to the input; else
    a centred crop. Returns the spec and a sentence saying which.

    Raises:
        AsaSnnError: the channels fit neither polarity rule, or the input does not fit the sensor.
    """
    channels, height, width = shape
    sensor = sensor or (width, height, channels)
    s_width, s_height, polarities = (int(v) for v in sensor)
    if min(s_width, s_height, polarities) < 1:
        raise AsaSnnError(f"--sensor {list(sensor)}: expected three positive integers W,H,P")
    if channels == polarities:
        polarity = "separate"
    elif channels == 1:
        polarity = "merged"
    else:
        raise AsaSnnError(
            f"the input has {channels} channels but the sensor {s_width}x{s_height}x{polarities} has "
            f"{polarities} polarities; expected C = P (separate) or C = 1 (merged)"
        )
    common = {"polarity": polarity, "dt_us": dt_us, "n_steps": n_steps, "slicing": "time"}
    sensor = (s_width, s_height, polarities)
    if (s_width, s_height) == (width, height):
        return InputSpec(shape, sensor, **common), f"the whole {s_width}x{s_height} sensor"
    for factor in range(2, max(s_width, s_height) + 1):
        if (math.ceil(s_height / factor), math.ceil(s_width / factor)) == (height, width):
            spec = InputSpec(shape, sensor, downsample=factor, **common)
            return spec, f"the {s_width}x{s_height} sensor binned by {factor}"
    if s_width >= width and s_height >= height:
        crop = centre_crop((s_height, s_width), (height, width))
        spec = InputSpec(shape, sensor, crop=crop, **common)
        return spec, f"a centred {width}x{height} crop (top, left = {crop[0]}, {crop[1]}) of the sensor"
    raise AsaSnnError(
        f"the input is {width}x{height} but the sensor {s_width}x{s_height} is smaller; expected a sensor "
        "at least as large (binned or cropped to the input)"
    )


# ---------------------------------------------------------------- the import


def _restore_integers(
    graph: FoldedGraph, metadata: dict[str, Any], options: ImportOptions, scales: dict
) -> None:
    """A quantized asa-snn file: integer tensors and (with ``quant_bits``) the layers' LayerQuant."""
    source = _text(metadata.get("target", "")) or None
    if source is not None and source != options.target:
        raise AsaSnnError(
            f"the NIR file holds integers quantized for {source!r} (its metadata); import it with "
            f"--target {source}, or export the float graph"
        )
    for layer in graph.layers:
        for key, values in layer.tensors.items():
            if not np.array_equal(values, np.round(values)):
                raise InputFormatError(f"layer {layer.name!r}: {key} holds fractions in a quantized NIR file")
            layer.tensors[key] = values.astype(np.int32)
        if options.quant_bits is not None and layer.name in scales:
            layer.quant = LayerQuant(float(scales[layer.name]), *options.quant_bits)
    graph.quantized = True


def nir_to_graph(graph: nir.NIRGraph, options: ImportOptions | None = None) -> ImportResult:
    """The folded graph of a NIR graph (module docstring: structure, neurons, dt, approximations).

    Args:
        graph: a NIR graph, e.g. :func:`read_nir` of a file or ``sinabs.to_nir(model, sample)``.
        options: target, dt, steps, sensor, ``approximate``.

    Raises:
        AsaSnnError: a node or structure the target cannot hold (the node named, with why), a
            per-neuron spread, a change of dynamics without ``approximate``.
        InputFormatError: malformed node parameters or shapes.
    """
    options = options or ImportOptions()
    metadata = dict(getattr(graph, "metadata", None) or {})
    (input_name, input_node), chain = chain_of(graph)
    dt_us, dt_source = time_step(metadata, options.dt_us)
    dt = dt_us / US_PER_S
    n_steps = options.n_steps or int(np.asarray(metadata.get("n_steps", DEFAULT_STEPS)))
    if n_steps < 1:
        raise AsaSnnError(f"steps per inference must be >= 1, got {n_steps}")
    shape = _input_shape(input_name, input_node)
    builder = _Builder(shape, dt, options)
    handlers = {
        "Conv2d": builder.conv,
        "Linear": builder.linear,
        "Affine": builder.linear,
        "Scale": builder.scale,
        "SumPool2d": builder.pool,
        "AvgPool2d": builder.pool,
        "Flatten": builder.flatten,
        **{kind: builder.neuron for kind in NEURONS},
    }
    scales = {}
    for name, node in chain[:-1]:
        handler = handlers.get(_type_name(node))
        if handler is None:
            _rejected(name, node)
        handler(name, node)
        meta = getattr(node, "metadata", None) or {}
        if "scale" in meta and builder.layers:
            scales[builder.layers[-1].name] = float(np.asarray(meta["scale"]))
    if builder.pending is not None:
        raise AsaSnnError(
            f"{', '.join(repr(n) for n in builder.pending_from)} before the Output has no conv2d / linear "
            "after it to fold into"
        )
    if not builder.layers:
        raise AsaSnnError("the NIR graph holds no layer between its Input and Output")
    last = builder.layers[-1]
    if builder.open is not None and builder.open.neuron is None and options.target != GENERIC:
        raise AsaSnnError(
            f"node {builder.open_node!r} is not followed by neurons; {options.target} ends every conv2d / "
            "linear in spiking neurons (a read-out of currents needs --target generic)"
        )
    units = int(np.prod(last.output_shape))
    vote = int(np.asarray(metadata.get("vote", 1)))
    classes = int(np.asarray(metadata.get("num_classes", units // max(vote, 1))))
    if classes * vote != units:
        classes, vote = units, 1
    spec, geometry = input_spec_for(shape, options.sensor, dt_us, n_steps)
    result = FoldedGraph(builder.layers, spec, classes, options.target, vote=vote)
    if int(np.asarray(metadata.get("quantized", 0))):
        _restore_integers(result, metadata, options, scales)
    notes = [
        f"dt = {dt_us} us per step, from {dt_source}; {n_steps} steps per inference",
        f"input {list(shape)} (C, H, W) from {geometry}, polarity {spec.polarity}",
    ]
    kinds = {type(node).__name__ for _, node in chain}
    if kinds & {"IF", "LIF"}:
        notes.append(
            "IF / LIF fire at v >= threshold here (Speck's and sinabs' rule); NIR's equations write v > "
            "threshold (Norse): the two differ only where a membrane lands exactly on the threshold"
        )
    if "IF" in kinds and not options.multi_spike:
        notes.append(
            "IF neurons emit at most one spike per step (NIR's equation, Speck's chip); sinabs' default "
            "IAF emits floor(v / threshold): import its files with multi-spike (--multi-spike) to match it"
        )
    check_graph(result, "imported NIR graph")
    return ImportResult(
        result, dt_us, dt_source, notes + builder.notes + builder.approximations, builder.approximations
    )
