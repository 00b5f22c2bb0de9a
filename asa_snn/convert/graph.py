"""The folded graph: the one hand-off between training and everything chip-side.

A folded graph is plain data: an ordered list of layers (conv / linear weights and biases, sum
pooling, flatten, residual add), each with its neuron parameters, plus the input spec,
quantization metadata and provenance. Every exporter and simulator reads it; none reaches back
into the training code.

On disk it is a folder::

    graph.json           the network, readable: layers, shapes, neurons, scales, provenance
    tensors.safetensors  every array, named "<layer>.<tensor>" (no code, nothing unpickled)

``graph.json`` carries ``format`` and ``version``; a file from another version gives an error
naming both versions instead of a wrong graph. It may nest at most :data:`MAX_JSON_DEPTH` levels;
its integer fields (shapes, counts, attributes, the input spec) must be JSON integers (``4.5`` is an
error, never ``4``); ``target`` must be a lowercase identifier
(:data:`~asa_snn.convert.graph_check.TARGET_PATTERN`); whether it names a known chip is checked
where the chip is looked up, since this module does not know chips.

Float and quantized graphs share the layout. In a quantized graph (``quantized=True``) the
``weight`` and ``bias`` tensors hold integers (integer dtypes), the neuron's ``threshold`` and
``min_v`` are integers in the same units, and each spiking op layer has a :class:`LayerQuant`
saying how the integers relate to the float model (``integer = float * scale``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from asa_snn.convert.graph_check import check_graph
from asa_snn.convert.layer_attrs import LayerAttrs, layer_attrs
from asa_snn.data.model_input import InputSpec
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.files import staged_folder

GRAPH_FORMAT = "asa-snn-folded-graph"
GRAPH_VERSION = 2
OPS = ("conv2d", "linear", "sumpool2d", "flatten", "add")
NEURON_KINDS = ("iaf", "cuba", "lif")
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects graph.json may have; a graph written here nests 5 levels
(plus whatever ``provenance`` holds). Deeper documents are refused before anything walks them."""


@dataclass(frozen=True)
class NeuronSpec:
    """Neuron parameters of one layer (one value per layer: what a chip core holds).

    Attributes:
        kind: ``"iaf"`` (Speck), ``"cuba"`` (Loihi) or ``"lif"`` (the paper's LIF, float targets).
        threshold: firing threshold, in the layer's units (float graph) or integer units
            (quantized graph).
        reset: ``"subtract"`` (v -= threshold) or ``"zero"``.
        min_v: lower bound of the membrane after reset, or None.
        multi_spike: emit floor(v / threshold) spikes per step instead of at most one.
        du, dv: CUBA current and voltage decay fractions per step (``kind="cuba"``).
        decay: LIF leak factor applied after reset (``kind="lif"``).
    """

    kind: str
    threshold: float
    reset: str = "subtract"
    min_v: float | None = None
    multi_spike: bool = False
    du: float | None = None
    dv: float | None = None
    decay: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in NEURON_KINDS:
            raise AsaSnnError(f"neuron kind {self.kind!r} unknown; expected one of {', '.join(NEURON_KINDS)}")
        if self.reset not in ("subtract", "zero"):
            raise AsaSnnError(f"neuron reset {self.reset!r} unknown; expected 'subtract' or 'zero'")


@dataclass(frozen=True)
class LayerQuant:
    """How a layer's integers relate to its float model.

    ``weight_float = weight_int / scale``; the threshold, bias and min_v of the neuron are stored
    already multiplied by ``scale`` (integers) in the quantized graph.

    Attributes:
        scale: multiplier from float to integer units.
        weight_bits, state_bits: bit widths of the weights and the membrane state (signed).
        weight_exponent: shared weight exponent where the target has one (Loihi), else 0.
    """

    scale: float
    weight_bits: int
    state_bits: int
    weight_exponent: int = 0


@dataclass
class Layer:
    """One node of the folded graph.

    Attributes:
        name: unique name (also the prefix of its tensors on disk).
        op: one of ``conv2d, linear, sumpool2d, flatten, add``.
        attrs: the op's typed attributes (:data:`ATTRS`); a dict is converted on construction.
        output_shape: output per step and sample: (C, H, W) or (F,).
        tensors: arrays, e.g. ``weight`` [C_out, C_in, kh, kw] or [out, in], ``bias`` [C_out].
        neuron: the spiking neuron after the op, or None (pooling, flatten, add feed on).
        inputs: names of the layers feeding this one; empty means the previous layer (the
            graph input for the first layer). ``add`` lists its two operands.
        quant: integer metadata once quantized, else None.
        source: the module of the trained model this layer came from (provenance).
    """

    name: str
    op: str
    attrs: LayerAttrs
    output_shape: tuple[int, ...]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    neuron: NeuronSpec | None = None
    inputs: tuple[str, ...] = ()
    quant: LayerQuant | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise AsaSnnError(
                f"layer {self.name!r}: op {self.op!r} unknown; expected one of {', '.join(OPS)}"
            )
        shape = self.output_shape
        if not isinstance(shape, list | tuple) or not 1 <= len(shape) <= 3:
            raise InputFormatError(f"layer {self.name!r}: output_shape {shape!r} must be 1 to 3 integers")
        self.output_shape = tuple(
            _integer(v, f"layer {self.name!r}: output_shape[{i}]") for i, v in enumerate(shape)
        )
        if not isinstance(self.inputs, list | tuple) or not all(isinstance(v, str) for v in self.inputs):
            raise InputFormatError(
                f"layer {self.name!r}: inputs {self.inputs!r} must be a list of layer names"
            )
        self.inputs = tuple(self.inputs)
        self.attrs = layer_attrs(self.name, self.op, self.attrs, self.tensors)


def _integer(value: object, where: str) -> int:
    """``value`` as an int when it is one (NumPy integers too; not bools, not 4.0), else an error."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputFormatError(f"{where} is {value!r} ({type(value).__name__}); expected an integer")
    return int(value)


@dataclass
class FoldedGraph:
    """A chip-agnostic network: layers in execution order plus what describes them.

    Attributes:
        layers: the nodes in execution order.
        input: the input spec.
        num_classes: K; the output layer's units (or groups of units, see ``vote``).
        target: ``"speck"``, ``"loihi"`` or ``"generic"``: the chip the graph was folded for.
        quantized: True when tensors hold integers for ``target``.
        readout: how scores come out of the last layer: ``"rate"`` (mean spikes over T).
        vote: size of the voting groups of the output layer (1: one unit per class).
        provenance: where it came from: checkpoint digest, calibration data, options, versions.
    """

    layers: list[Layer]
    input: InputSpec
    num_classes: int
    target: str = "generic"
    quantized: bool = False
    readout: str = "rate"
    vote: int = 1
    provenance: dict[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> Layer:
        """The layer called ``name``; an unknown name is an error listing the names."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise AsaSnnError(f"graph has no layer {name!r}; layers: {', '.join(x.name for x in self.layers)}")

    def spiking_layers(self) -> list[Layer]:
        """The layers that end in a neuron, in order."""
        return [layer for layer in self.layers if layer.neuron is not None]


def _layer_to_json(layer: Layer) -> dict[str, Any]:
    data = {
        "name": layer.name,
        "op": layer.op,
        "attrs": asdict(layer.attrs),
        "output_shape": list(layer.output_shape),
        "tensors": {
            key: {"shape": list(value.shape), "dtype": str(value.dtype)}
            for key, value in layer.tensors.items()
        },
        "neuron": asdict(layer.neuron) if layer.neuron else None,
        "inputs": list(layer.inputs),
        "quant": asdict(layer.quant) if layer.quant else None,
        "source": layer.source,
    }
    return data


def _input_to_json(spec: InputSpec) -> dict[str, Any]:
    """The ``input`` object of graph.json: every field of ``spec``, tuples as lists; ``max_count``
    only where set, so a graph without a count limit reads as before it existed (absent = None)."""
    data = {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(spec).items()}
    if data["max_count"] is None:
        del data["max_count"]
    return data


def graph_to_json(graph: FoldedGraph) -> dict[str, Any]:
    """The JSON document of ``graph`` (tensors described by shape and dtype only)."""
    return {
        "format": GRAPH_FORMAT,
        "version": GRAPH_VERSION,
        "target": graph.target,
        "quantized": graph.quantized,
        "num_classes": graph.num_classes,
        "readout": graph.readout,
        "vote": graph.vote,
        "input": _input_to_json(graph.input),
        "layers": [_layer_to_json(layer) for layer in graph.layers],
        "provenance": graph.provenance,
    }


def save_graph(graph: FoldedGraph, folder: str | Path) -> Path:
    """Write ``graph`` to ``folder`` (graph.json + tensors.safetensors), atomically.

    Both files are written into a temporary folder beside ``folder`` that then replaces it, so an
    interrupted save never leaves a half-written graph.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    tensors = {
        f"{layer.name}.{key}": np.ascontiguousarray(value)
        for layer in graph.layers
        for key, value in layer.tensors.items()
    }
    with staged_folder(folder) as staging:
        (staging / "graph.json").write_text(json.dumps(graph_to_json(graph), indent=2) + "\n")
        save_file(tensors, staging / "tensors.safetensors")
    return folder


def _require(document: dict[str, Any], key: str, where: str) -> Any:
    if key not in document:
        raise InputFormatError(f"{where}: missing field {key!r}")
    return document[key]


def _from_fields(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputFormatError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise InputFormatError(f"{where}: {exc}") from exc


def _depth(document: object) -> int:
    """How deeply arrays and objects nest in ``document`` (0 for a scalar); iterative, so that a
    hostile document cannot exhaust the stack here."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if items is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((item, depth + 1) for item in items)
    return deepest


def load_graph(folder: str | Path) -> FoldedGraph:
    """Read a graph written by :func:`save_graph`, without executing anything from the files.

    Raises:
        InputFormatError: a missing file or field, another format or version, nesting deeper than
            :data:`MAX_JSON_DEPTH`, a tensor missing from tensors.safetensors or with another shape
            than graph.json says, or anything :func:`~asa_snn.convert.graph_check.check_graph`
            refuses.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    json_path, tensor_path = folder / "graph.json", folder / "tensors.safetensors"
    for path in (json_path, tensor_path):
        if not path.is_file():
            raise InputFormatError(f"{folder}: not a folded graph folder (missing {path.name})")
    try:
        document = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"{json_path}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise InputFormatError(
            f"{json_path}: JSON nested too deeply to parse; expected at most {MAX_JSON_DEPTH} levels"
        ) from exc
    if _depth(document) > MAX_JSON_DEPTH:
        raise InputFormatError(f"{json_path}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    if not isinstance(document, dict) or document.get("format") != GRAPH_FORMAT:
        raise InputFormatError(
            f"{json_path}: not an {GRAPH_FORMAT} file (format field is missing or differs)"
        )
    version = document.get("version")
    if version != GRAPH_VERSION:
        raise InputFormatError(
            f"{json_path}: graph format version {version} but this asa-snn reads version {GRAPH_VERSION}; "
            "re-run `asa-snn fold` with this version, or use the asa-snn release that wrote the file"
        )
    try:
        arrays = load_file(tensor_path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputFormatError(f"{tensor_path}: unreadable tensor file ({exc})") from exc
    entries = _require(document, "layers", str(json_path))
    if not isinstance(entries, list):
        raise InputFormatError(f"{json_path}: field 'layers' must be a list")
    layers = [
        _layer_from_json(entry, arrays, f"{json_path}: layer {i}", tensor_path)
        for i, entry in enumerate(entries)
    ]
    spec = _require(document, "input", str(json_path))
    if not isinstance(spec, dict):
        raise InputFormatError(f"{json_path}: field 'input' must be an object")
    try:
        graph = FoldedGraph(
            layers=layers,
            input=_from_fields(InputSpec, spec, f"{json_path}: input"),
            num_classes=_require(document, "num_classes", str(json_path)),
            target=document.get("target", "generic"),
            quantized=document.get("quantized", False),
            readout=document.get("readout", "rate"),
            vote=document.get("vote", 1),
            provenance=document.get("provenance", {}),
        )
    except (TypeError, ValueError) as exc:
        raise InputFormatError(f"{json_path}: {exc}") from exc
    return check_graph(graph, str(json_path))


def _layer_from_json(entry: object, arrays: dict[str, np.ndarray], where: str, tensor_path: Path) -> Layer:
    """One layer of graph.json with its tensors; raises :class:`InputFormatError` naming ``where``."""
    if not isinstance(entry, dict):
        raise InputFormatError(f"{where}: must be an object, got {type(entry).__name__}")
    name = _require(entry, "name", where)
    listed = _require(entry, "tensors", where)
    if not isinstance(name, str) or not isinstance(listed, dict):
        raise InputFormatError(f"{where}: 'name' must be a string and 'tensors' an object")
    tensors = {}
    for key, meta in listed.items():
        stored = arrays.get(f"{name}.{key}")
        if stored is None:
            raise InputFormatError(f"{tensor_path}: tensor '{name}.{key}' listed in graph.json is missing")
        if not isinstance(meta, dict) or list(stored.shape) != list(meta.get("shape", [])):
            raise InputFormatError(
                f"{tensor_path}: tensor '{name}.{key}' has shape {list(stored.shape)}, graph.json says "
                f"{meta.get('shape') if isinstance(meta, dict) else meta}"
            )
        tensors[key] = stored
    neuron, quant = entry.get("neuron"), entry.get("quant")
    try:
        return Layer(
            name=name,
            op=_require(entry, "op", where),
            attrs=entry.get("attrs", {}),
            output_shape=tuple(_require(entry, "output_shape", where)),
            tensors=tensors,
            neuron=_from_fields(NeuronSpec, neuron, f"{where} neuron") if neuron else None,
            inputs=tuple(entry.get("inputs", ())),
            quant=_from_fields(LayerQuant, quant, f"{where} quant") if quant else None,
            source=str(entry.get("source", "")),
        )
    except (TypeError, ValueError, AsaSnnError) as exc:
        message = str(exc)
        if message.startswith(where):  # names the file and layer already
            raise InputFormatError(message) from exc
        raise InputFormatError(f"{where} ({name}): {message.removeprefix(f'layer {name!r}: ')}") from exc
