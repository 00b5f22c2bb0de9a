"""lava-dl netx HDF5 export of a folded graph, and a reader that validates such a file.

The file layout is the one ``lava.lib.dl.netx.hdf5.Network`` reads (lava-dl 0.6.0, FACTS.md
section 4)::

    /layer/0 .. /layer/{n-1}        one group per layer, contiguous indices
        type      fixed-length ASCII (1,): input | conv | dense | flatten
        shape     int (C, H, W) or (N,); netx reverses it to (x, y, c)
        weight    float32 holding integers: conv (C_out, C_in, kH, kW), dense (out, in)
        bias      float32 holding integers, per output channel (optional); netx uses it as the
                  bias mantissa with exponent 6
        stride, padding, dilation   int (H, W)          (conv)
        groups    int scalar                           (conv)
        neuron/   type 'CUBA' (ASCII), iDecay, vDecay, vThMant (int scalars)

Units. Lava's CUBA neuron adds ``a << 6`` to the current and fires when ``v > vThMant << 6``,
where ``a`` is the sum of the integer weights of the spiking inputs; the bias enters as
``bias << 6``. Weights, bias and threshold are therefore in one integer unit. A quantized graph
already stores them as integers in one unit per layer (``integer = float * scale``) and is
written as is; a float graph is scaled by 64 and rounded (lava-dl slayer's weight scale 2^6,
``vThMant = threshold * 64``). Decays: ``iDecay = round(4096 du)``, ``vDecay = round(4096 dv)``
for the graph's decay fractions ``du, dv`` (both graphs store fractions); netx then gives Lava
``du = iDecay - 1`` and ``dv = vDecay``.

The input. Layer 0 is an ``input`` layer of relay neurons with the frame shape: netx builds a
conv's synapse from the previous layer's shape, so a conv-first network needs it. netx's input
block receives data through its neurons' bias (its ``inp`` port is not wired to them), so a
frame is applied as ``bias = 1`` where a pixel had at least one event in that step. With
``iDecay = 4096`` (current factor 0), ``vDecay = 0`` and ``vThMant = 0`` the relay fires exactly
when its bias is 1 and its voltage is then reset to 0: one unary spike per active pixel and step,
in the same step. Loihi spikes are unary, so counts above one are clipped to one spike.

Sum pooling. netx has no pool layer; a ``k_h x k_w`` sum pool (stride = kernel) is folded into
the op that reads it, where that is exact:

- pool then conv (kernel K, stride s, padding p): ``sum_{a,b} X[c, k(s m + i - p) + a, ...]``
  is a conv of X with the kernel ``W'[o, c, k i + a, k j + b] = W[o, c, i, j]`` (each tap repeated
  over a k x k block, ``np.kron``), stride ``k s`` and padding ``k p``. Exact when the pool's
  input height and width are multiples of k (the pool drops no rows), or when p = 0.
- pool then flatten then dense: ``W'[o, (c, y, x)] = W[o, (c, y // k, x // k)]`` on the unpooled
  input, 0 for the rows and columns the pool drops. Always exact.

Anything else (a pool at the end, two pools in a row, residual ``add``, non-CUBA neurons,
subtractive reset) raises :class:`~asa_snn.errors.AsaSnnError` naming the layer; strided convs
(the ``loihi_net`` architecture) avoid pooling altogether.

Ranges. The reader does not take any integer: lava-dl's netx loader clips a mixed-sign weight
matrix to [-256, 254] (``lava.lib.dl.netx.utils.optimize_weight_bits``) and Lava's synapses clip to
the 8-bit magnitude plus sign of their sign mode ([0, 255] excitatory, [-255, 0] inhibitory,
``lava.utils.weightutils.clip_weights``); the CUBA neuron's ``vThMant`` is 17 bits unsigned (a
larger one can never be reached by the 24-bit voltage) and the bias mantissa 13 bits signed
(FACTS.md section 4, :mod:`asa_snn.chips.loihi.mapping`). :func:`write_netx` checks every value
it writes against these (:func:`check_netx_ranges`) and refuses, naming the layer, rather than
write a file that Lava would read as another network. A float graph's ``round(64 w)`` exceeds them
as soon as a weight passes 4: quantize it for ``loihi`` first (``asa-snn fold --target loihi``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asa_snn.chips.loihi.quantizer import DECAY_UNITY
from asa_snn.convert.graph import FoldedGraph, Layer
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.files import write_bytes

NETX_WEIGHT_SCALE = 64

NETX_WEIGHT_RANGES = {"mixed": (-256, 254), "excitatory": (0, 255), "inhibitory": (-255, 0)}
"""Integer weights the netx loader and Lava keep as they are, by the layer's sign mode (module docstring)."""

NETX_VTH_MANT_RANGE = (0, 2**17 - 1)
"""vThMant: 17 bits unsigned."""

NETX_BIAS_RANGE = (-(2**12), 2**12 - 1)
"""Bias mantissa: 13 bits signed."""

NETX_LAYER_TYPES = ("input", "conv", "dense", "flatten")
_LOIHI_HINT = "use the loihi_net architecture (strided convs, flatten, dense, CUBA neurons)"


@dataclass(frozen=True)
class CubaParams:
    """One netx CUBA neuron group, in netx units.

    Attributes:
        i_decay: current decay, 4096 x fraction per step (netx ``iDecay``; Lava du = iDecay - 1).
        v_decay: voltage decay, 4096 x fraction per step (netx ``vDecay``; Lava dv = vDecay).
        vth_mant: threshold mantissa (netx ``vThMant``); the neuron fires when v > vth_mant << 6.
    """

    i_decay: int
    v_decay: int
    vth_mant: int


RELAY_NEURON = CubaParams(i_decay=DECAY_UNITY, v_decay=0, vth_mant=0)


@dataclass
class NetxLayer:
    """One layer of a netx file, as plain data (integers in netx units).

    Attributes:
        kind: ``input``, ``conv``, ``dense`` or ``flatten``.
        name: the folded-graph layer it came from (``"input"`` for the relay layer).
        shape: output shape (C, H, W) or (N,).
        neuron: the CUBA group, None for flatten.
        weight: int64 conv [C_out, C_in, kH, kW] or dense [out, in]; None otherwise.
        bias: int64 [C_out] or [out], or None.
        stride, padding, dilation: (H, W) for conv, else None.
        groups: conv groups (1), else None.
    """

    kind: str
    name: str
    shape: tuple[int, ...]
    neuron: CubaParams | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    groups: int | None = None


@dataclass
class NetxSummary:
    """What :func:`read_netx` found: the layers in file order and a printable table."""

    path: Path
    layers: list[NetxLayer]

    def table(self) -> str:
        """One line per layer: index, type, name, shape, weight shape, neuron parameters."""
        lines = [f"{'#':>3} {'type':8} {'shape':16} {'weight':20} iDecay vDecay vThMant"]
        for index, layer in enumerate(self.layers):
            weight = "" if layer.weight is None else "x".join(map(str, layer.weight.shape))
            neuron = layer.neuron
            params = "" if neuron is None else f"{neuron.i_decay:6d} {neuron.v_decay:6d} {neuron.vth_mant:7d}"
            shape = "x".join(map(str, layer.shape))
            lines.append(f"{index:>3} {layer.kind:8} {shape:16} {weight:20} {params}")
        return "\n".join(lines)


def _stored_pair(value: np.ndarray) -> tuple[int, int]:
    """An (h, w) pair as netx stores it: one number for both, or two."""
    flat = [int(v) for v in np.atleast_1d(value)]
    return (flat[0], flat[-1])


def _to_units(layer: Layer, field: str, values: np.ndarray, quantized: bool) -> np.ndarray:
    """Integers in netx units: a quantized graph's integers as they are, a float graph's x 64."""
    values = np.asarray(values, dtype=np.float64)
    if not quantized:
        return np.rint(values * NETX_WEIGHT_SCALE).astype(np.int64)
    if not np.all(values == np.rint(values)):
        raise AsaSnnError(
            f"layer {layer.name!r}: {field} holds non-integer values in a quantized graph; "
            "expected integers (re-run the quantization for target loihi)"
        )
    return values.astype(np.int64)


def _decay(layer: Layer, field: str, value: float | None) -> int:
    if value is None or not 0 <= value <= 1:
        raise AsaSnnError(
            f"layer {layer.name!r}: CUBA neuron {field} = {value!r}; expected a decay fraction in [0, 1]"
        )
    return round(value * DECAY_UNITY)


def cuba_params(layer: Layer, quantized: bool) -> CubaParams:
    """The netx neuron group of ``layer``; anything netx's CUBA cannot express is an error."""
    neuron = layer.neuron
    if neuron is None:
        raise AsaSnnError(f"layer {layer.name!r} ({layer.op}) has no neuron; netx {layer.op} layers need one")
    problems = []
    if neuron.kind != "cuba":
        problems.append(f"neuron kind {neuron.kind!r} (netx takes 'cuba' only)")
    if neuron.reset != "zero":
        problems.append(f"reset {neuron.reset!r} (Loihi CUBA resets v to 0: expected 'zero')")
    if neuron.multi_spike:
        problems.append("multi_spike=True (Loihi spikes are unary)")
    if neuron.min_v is not None:
        problems.append(f"min_v={neuron.min_v} (Loihi CUBA has no lower bound but the 24-bit saturation)")
    if problems:
        raise AsaSnnError(
            f"layer {layer.name!r}: netx cannot express " + "; ".join(problems) + f"; {_LOIHI_HINT}"
        )
    threshold = int(_to_units(layer, "threshold", np.array([neuron.threshold]), quantized)[0])
    return CubaParams(_decay(layer, "du", neuron.du), _decay(layer, "dv", neuron.dv), threshold)


def fold_pool_into_conv(weight: np.ndarray, pool: tuple[int, int]) -> np.ndarray:
    """Kernel of a conv that reads the unpooled input: each tap repeated over a pool block.

    ``weight`` [C_out, C_in, kH, kW] -> [C_out, C_in, kH * ph, kW * pw]; use it with stride and
    padding multiplied by the pool size (module docstring has the algebra).
    """
    return np.kron(weight, np.ones(pool, dtype=weight.dtype))


def fold_pool_into_dense(
    weight: np.ndarray, pooled: tuple[int, int, int], pool: tuple[int, int], unpooled: tuple[int, int, int]
) -> np.ndarray:
    """Dense weights on the flattened unpooled input: ``W'[o, (c, y, x)] = W[o, (c, y//ph, x//pw)]``.

    ``weight`` [out, C*H'*W'] -> [out, C*H*W]; rows and columns the pool drops get weight 0.
    """
    channels, height, width = pooled
    ph, pw = pool
    blocks = weight.reshape(weight.shape[0], channels, height, width)
    expanded = np.zeros((weight.shape[0], *unpooled), dtype=weight.dtype)
    expanded[:, :, : height * ph, : width * pw] = np.kron(blocks, np.ones(pool, dtype=weight.dtype))
    return expanded.reshape(weight.shape[0], -1)


@dataclass
class _Pending:
    pool: tuple[int, int]
    unpooled: tuple[int, int, int]
    pooled: tuple[int, int, int]
    name: str
    flattened: bool = False


def _conv_layer(layer: Layer, quantized: bool, pending: _Pending | None) -> NetxLayer:
    weight = _to_units(layer, "weight", layer.tensors["weight"], quantized)
    stride, padding, dilation = layer.attrs.stride, layer.attrs.padding, layer.attrs.dilation
    if layer.attrs.groups != 1 or dilation != (1, 1):
        raise AsaSnnError(
            f"layer {layer.name!r}: grouped or dilated convs are not supported by this exporter"
        )
    if pending is not None:
        if pending.flattened:
            raise AsaSnnError(f"layer {layer.name!r}: conv after a flatten; expected dense")
        ph, pw = pending.pool
        _, height, width = pending.unpooled
        if padding != (0, 0) and (height % ph or width % pw):
            raise AsaSnnError(
                f"layer {pending.name!r}: sum pool {pending.pool} on input {height}x{width} drops rows that "
                f"the padded conv {layer.name!r} would read, so it cannot be folded exactly; {_LOIHI_HINT}"
            )
        weight = fold_pool_into_conv(weight, pending.pool)
        stride = (stride[0] * ph, stride[1] * pw)
        padding = (padding[0] * ph, padding[1] * pw)
        expected = tuple(
            (size + 2 * pad - kernel) // step + 1
            for size, pad, kernel, step in zip(
                (height, width), padding, weight.shape[2:], stride, strict=True
            )
        )
        if expected != tuple(layer.output_shape[1:]):
            raise AsaSnnError(
                f"layer {layer.name!r}: folding sum pool {pending.name!r} gives output {expected}, "
                f"graph says {tuple(layer.output_shape[1:])}; {_LOIHI_HINT}"
            )
    bias = layer.tensors.get("bias")
    return NetxLayer(
        kind="conv",
        name=layer.name,
        shape=layer.output_shape,
        neuron=cuba_params(layer, quantized),
        weight=weight,
        bias=None if bias is None else _to_units(layer, "bias", bias, quantized),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=1,
    )


def _dense_layer(layer: Layer, quantized: bool, pending: _Pending | None) -> NetxLayer:
    weight = _to_units(layer, "weight", layer.tensors["weight"], quantized)
    if pending is not None:
        if not pending.flattened:
            raise AsaSnnError(f"layer {layer.name!r}: dense after sum pool {pending.name!r} needs a flatten")
        weight = fold_pool_into_dense(weight, pending.pooled, pending.pool, pending.unpooled)
    bias = layer.tensors.get("bias")
    return NetxLayer(
        kind="dense",
        name=layer.name,
        shape=layer.output_shape,
        neuron=cuba_params(layer, quantized),
        weight=weight,
        bias=None if bias is None else _to_units(layer, "bias", bias, quantized),
    )


def to_netx_layers(graph: FoldedGraph) -> list[NetxLayer]:
    """The netx layer list of ``graph``: relay input, then conv / flatten / dense, pools folded.

    Raises:
        AsaSnnError: a layer netx cannot express (named), see the module docstring.
    """
    layers = [NetxLayer("input", "input", tuple(graph.input.shape), RELAY_NEURON)]
    shape: tuple[int, ...] = tuple(graph.input.shape)
    previous = None
    pending: _Pending | None = None
    for layer in graph.layers:
        if layer.op == "add" or (layer.inputs and layer.inputs != ((previous,) if previous else ())):
            raise AsaSnnError(
                f"layer {layer.name!r} ({layer.op}): netx takes a plain chain of layers, no residual "
                f"connections; {_LOIHI_HINT}"
            )
        if layer.op == "sumpool2d":
            if pending is not None or len(shape) != 3:
                raise AsaSnnError(
                    f"layer {layer.name!r}: sum pool after {previous!r} cannot be folded; {_LOIHI_HINT}"
                )
            pending = _Pending(layer.attrs.kernel_size, shape, layer.output_shape, layer.name)  # type: ignore[arg-type]
        elif layer.op == "flatten":
            if pending is not None:
                pending.flattened = True
            flat = pending.unpooled if pending is not None else layer.output_shape
            layers.append(NetxLayer("flatten", layer.name, (int(np.prod(flat)),)))
        elif layer.op == "conv2d":
            layers.append(_conv_layer(layer, graph.quantized, pending))
            pending = None
        else:
            layers.append(_dense_layer(layer, graph.quantized, pending))
            pending = None
        shape = layer.output_shape
        previous = layer.name
    if pending is not None:
        raise AsaSnnError(
            f"layer {pending.name!r}: sum pool with no conv or dense after it cannot be folded; {_LOIHI_HINT}"
        )
    if layers[-1].kind == "flatten":
        raise AsaSnnError(
            f"layer {layers[-1].name!r}: the network ends in a flatten; expected a spiking layer"
        )
    return layers


def _ascii(text: str) -> np.ndarray:
    return np.array([text.encode("ascii")], dtype="S10")


def _write_layer(group, layer: NetxLayer) -> None:
    group.create_dataset("type", data=_ascii(layer.kind))
    group.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
    if layer.weight is not None:
        group.create_dataset("weight", data=layer.weight.astype(np.float32))
    if layer.bias is not None:
        group.create_dataset("bias", data=layer.bias.astype(np.float32))
    if layer.kind == "conv":
        for key in ("stride", "padding", "dilation"):
            group.create_dataset(key, data=np.asarray(getattr(layer, key), dtype=np.int64))
        group.create_dataset("groups", data=np.int64(layer.groups))
    if layer.neuron is not None:
        neuron = group.create_group("neuron")
        neuron.create_dataset("type", data=_ascii("CUBA"))
        neuron.create_dataset("iDecay", data=np.int64(layer.neuron.i_decay))
        neuron.create_dataset("vDecay", data=np.int64(layer.neuron.v_decay))
        neuron.create_dataset("vThMant", data=np.int64(layer.neuron.vth_mant))


def _sign_mode(weight: np.ndarray) -> str:
    """Lava's sign mode of weights: ``excitatory`` (all >= 0), ``inhibitory`` (all <= 0), ``mixed``."""
    if weight.size == 0 or weight.min() >= 0:
        return "excitatory"
    return "inhibitory" if weight.max() <= 0 else "mixed"


def check_netx_ranges(layers: list[NetxLayer], quantized: bool) -> None:
    """Refuse values the netx reader would change: weights outside :data:`NETX_WEIGHT_RANGES` for
    their sign mode, ``vThMant`` outside :data:`NETX_VTH_MANT_RANGE`, a bias outside
    :data:`NETX_BIAS_RANGE` (module docstring, "Ranges").

    Args:
        layers: :func:`to_netx_layers` of a graph.
        quantized: whether the graph was quantized (only changes the advice).

    Raises:
        AsaSnnError: naming the layer, the field, the values found and the range.
    """
    advice = (
        "re-run the quantization for target loihi"
        if quantized
        else f"the float graph is written as round({NETX_WEIGHT_SCALE} x value): quantize it for target "
        "loihi first (asa-snn fold --target loihi --calib CONFIG)"
    )
    for layer in layers:
        checks = []
        if layer.weight is not None and layer.weight.size:
            mode = _sign_mode(layer.weight)
            checks.append((f"weight ({mode} sign)", layer.weight, NETX_WEIGHT_RANGES[mode]))
        if layer.bias is not None and layer.bias.size:
            checks.append(("bias mantissa (13 bit signed)", layer.bias, NETX_BIAS_RANGE))
        if layer.neuron is not None:
            vth = np.array([layer.neuron.vth_mant])
            checks.append(("vThMant (17 bit unsigned)", vth, NETX_VTH_MANT_RANGE))
        for field, values, (low, high) in checks:
            found_low, found_high = int(values.min()), int(values.max())
            if found_low < low or found_high > high:
                raise AsaSnnError(
                    f"layer {layer.name!r}: netx {field} values span [{found_low}, {found_high}], outside "
                    f"[{low}, {high}] that lava-dl's netx loader and Lava keep (they would clip them); "
                    f"{advice}"
                )


def netx_bytes(graph: FoldedGraph) -> bytes:
    """The lava-dl netx HDF5 file of ``graph``, built in memory (h5py's ``core`` driver without a
    backing store: HDF5 itself never writes to disk).

    Raises:
        AsaSnnError: a graph netx cannot express, or whose values lie outside what the netx reader
            keeps (:func:`check_netx_ranges`; the layer named).
    """
    import h5py

    layers = to_netx_layers(graph)
    check_netx_ranges(layers, graph.quantized)
    with h5py.File(f"netx-{id(layers)}.net", "w", driver="core", backing_store=False) as file:
        root = file.create_group("layer")
        for index, layer in enumerate(layers):
            _write_layer(root.create_group(str(index)), layer)
        file.flush()
        return file.id.get_file_image()


def write_netx(graph: FoldedGraph, path: str | Path) -> Path:
    """Write ``graph`` as a lava-dl netx HDF5 file at ``path``, atomically.

    The file is built in memory (:func:`netx_bytes`) and then written by
    :func:`asa_snn.files.write_bytes` (temporary file, fsync, replace). HDF5 never writes to the
    disk itself: h5py 3.16 crashes the process in ``File.close()`` after a failed write (a full
    disk, a file size limit), so a full disk is met by a plain Python write that raises ``OSError``
    and leaves neither ``path`` changed nor a temporary file behind.

    Returns the path. Raises :class:`AsaSnnError` for a graph netx cannot express, or whose values
    lie outside what the netx reader keeps (:func:`check_netx_ranges`; the layer named).
    """
    path = Path(path)
    image = netx_bytes(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(path, image)


_REQUIRED = {
    "input": ("shape", "neuron"),
    "conv": ("shape", "weight", "stride", "padding", "dilation", "groups", "neuron"),
    "dense": ("shape", "weight", "neuron"),
    "flatten": (),
}


def _field(group, key: str, where: str):
    if key not in group:
        raise InputFormatError(f"{where}: missing field {key!r}")
    return group[key]


def _text(dataset, where: str) -> str:
    value = dataset[()]
    value = value[0] if np.ndim(value) > 0 else value
    try:
        return value.decode("ascii") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError as exc:
        raise InputFormatError(f"{where}: not ASCII text ({exc})") from exc


def _read_layer(group, name: str, where: str) -> NetxLayer:
    kind = _text(_field(group, "type", where), f"{where}/type")
    if kind not in _REQUIRED:
        raise InputFormatError(
            f"{where}: layer type {kind!r} is not one this reader supports; expected one of "
            f"{', '.join(NETX_LAYER_TYPES)} (netx has no pool or average layers)"
        )
    for key in _REQUIRED[kind]:
        _field(group, key, where)
    shape = tuple(int(v) for v in np.atleast_1d(group["shape"][()])) if "shape" in group else ()
    neuron = None
    if "neuron" in group:
        ngroup, nwhere = group["neuron"], f"{where}/neuron"
        neuron_type = _text(_field(ngroup, "type", nwhere), f"{nwhere}/type")
        if neuron_type not in ("CUBA", "LOIHI"):
            raise InputFormatError(f"{nwhere}/type: {neuron_type!r}; expected 'CUBA'")
        neuron = CubaParams(
            *(int(_field(ngroup, key, nwhere)[()]) for key in ("iDecay", "vDecay", "vThMant"))
        )
    weight = group["weight"][()].astype(np.int64) if "weight" in group else None
    bias = group["bias"][()].astype(np.int64) if "bias" in group else None
    layer = NetxLayer(kind, name, shape, neuron, weight, bias)
    if kind == "conv":
        layer.stride, layer.padding, layer.dilation = (
            _stored_pair(group[key][()]) for key in ("stride", "padding", "dilation")
        )
        layer.groups = int(group["groups"][()])
        if weight is None or weight.ndim != 4 or weight.shape[0] != shape[0]:
            raise InputFormatError(
                f"{where}/weight: shape {None if weight is None else weight.shape}; "
                f"expected (C_out={shape[0]}, C_in, kH, kW)"
            )
    if kind == "dense" and (weight is None or weight.ndim != 2 or weight.shape[0] != int(np.prod(shape))):
        raise InputFormatError(
            f"{where}/weight: shape {None if weight is None else weight.shape}; "
            f"expected (out={int(np.prod(shape))}, in)"
        )
    return layer


def read_netx(path: str | Path) -> NetxSummary:
    """Read and validate a netx HDF5 file.

    Checks the ``layer`` group, contiguous indices 0..n-1, each layer's type and the fields its
    type needs (module docstring), the neuron group and the weight shapes.

    Raises:
        InputFormatError: not HDF5, or a missing group / field (named by layer and field).
    """
    import h5py

    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise InputFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with file:
        root = _field(file, "layer", str(path))
        names = sorted(root.keys(), key=lambda key: (not key.isdigit(), int(key) if key.isdigit() else 0))
        if names != [str(index) for index in range(len(names))]:
            raise InputFormatError(f"{path}: layer groups {names}; expected contiguous 0..{len(names) - 1}")
        layers = [_read_layer(root[name], f"layer/{name}", f"{path}: layer/{name}") for name in names]
    return NetxSummary(path, layers)
