"""Fold a trained :class:`~asa_snn.models.networks.SpikingNetwork` into a float :class:`FoldedGraph`.

Per block, in the released code's order conv -> BN -> (avg-pool) -> attention -> neuron -> (sum-pool):

1. batch norm into the conv / linear (exact, :mod:`asa_snn.convert.bn_fold`);
2. an average pool before the neuron (the paper's nets) becomes conv (weights / k^2, no neuron)
   -> sumpool2d carrying the neuron; Speck cannot run a conv without neurons, which
   :func:`~asa_snn.chips.speck.mapping.check_speck` reports; an average pool after the neuron
   becomes a sum pool with the next layer's weights scaled by 1 / k^2;
3. attention into static per-channel gains folded into the weights, from a calibration pass
   (:mod:`asa_snn.convert.attention_fold`, which documents the algebra); the generic target also
   keeps the per-neuron residual map as ``gain_map``;
4. neurons mapped to the target (:class:`Target`): IAF -> Speck exact, CUBA -> Loihi exact, LIF ->
   Speck only with ``approximate=True`` and a warning; a CUBA current bias (from BN) becomes the
   voltage bias b / d_u that Loihi holds (same steady state, the transient differs: noted);
5. rate matching (on by default): each attention layer's folded gains scaled by one scalar so that
   its calibration spike count matches the live model's (:class:`RateMatch`, algebra in
   :mod:`asa_snn.convert.attention_fold`);
6. channels that never fire on the calibration data are pruned together with the matching input
   channels of the next weight layer (the output layer is never pruned); on the calibration data
   the pruned graph gives the same spikes as the unpruned one.

A residual (SEW, ADD connection) block becomes its convs' layers plus an ``add`` layer reading
the last layer of the block's main path and of its shortcut (the block's input for the identity, or
the shortcut conv's neurons): ``add`` sums spikes, which the next weight layer reads (on Speck two
cores merging into one). Pruning skips every weight layer whose spikes reach anything but the next
weight layer (a residual block's input and output), so both operands of an add keep their channels.
Max pooling, SEW heads (global average pooling) and the parametric LIF are refused with an error
naming the block.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn

from asa_snn.convert.attention_fold import (
    GAIN_FLOOR,
    AttentionStats,
    RateMatch,
    collect_attention_stats,
    fold_gain_into_weights,
    threshold_for_gain,
)
from asa_snn.convert.bn_fold import avg_to_sum_scale, fold_batch_norm
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, NeuronSpec
from asa_snn.convert.graph_model import GraphModel, make_neuron
from asa_snn.errors import AsaSnnError
from asa_snn.models.attention import NoAttention
from asa_snn.models.blocks import ConvBlock, LinearBlock, SumPool2d
from asa_snn.models.firing import MultiSpike, ResetToZero
from asa_snn.models.networks import GroupVote, SEWBasicBlock, SpikingNetwork
from asa_snn.models.neurons import IAF, LIF, CubaLIF
from asa_snn.models.recording import count_spikes


@dataclass(frozen=True)
class Target:
    """What a fold target can hold.

    Attributes:
        name: a chip's name (:mod:`asa_snn.chips`) or ``generic``.
        neuron_kinds: graph neuron kinds the target runs exactly.
        keep_gain_map: True when the target holds a per-neuron gain map (generic only; Speck and
            Loihi hold one threshold per layer and no per-neuron gain, so the map is averaged away).
    """

    name: str
    neuron_kinds: tuple[str, ...]
    keep_gain_map: bool


GENERIC_TARGET = Target("generic", ("iaf", "lif", "cuba"), True)
"""The chip-independent target: every neuron kind, per-neuron gain maps kept."""


@dataclass
class LayerFold:
    """What the fold did to one spiking layer.

    Attributes:
        layer: the graph layer carrying the neuron.
        attention: the attention module's class name ("none" without attention).
        kept_fraction: share of the attention's effect the per-channel gains keep (None: no attention).
        kept_fraction_map: the same for the per-neuron map (None: no attention).
        gain_min, gain_mean, gain_max: per-channel gains (1 without attention).
        silenced: channels whose gain is below GAIN_FLOOR times the largest.
        pruned: channel indices removed (never fired on the calibration data).
        spikes_live, spikes_folded: mean spikes per calibration sample, live model vs static fold.
        rate_scale: the rate-matching scalar s on this layer's folded gains (1: not matched).
        rate_spikes_before, rate_spikes_after: mean spikes per calibration sample of this layer with
            s = 1 and with the chosen s (earlier layers already matched); None: not matched.
    """

    layer: str
    attention: str
    kept_fraction: float | None
    kept_fraction_map: float | None
    gain_min: float
    gain_mean: float
    gain_max: float
    silenced: int
    pruned: list[int] = field(default_factory=list)
    spikes_live: float = 0.0
    spikes_folded: float = 0.0
    rate_scale: float = 1.0
    rate_spikes_before: float | None = None
    rate_spikes_after: float | None = None


@dataclass
class FoldReport:
    """Per-layer fold summary plus notes (approximations, warnings) and the calibration size."""

    target: str
    calibration_samples: int
    layers: list[LayerFold] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-safe form."""
        return asdict(self)


@dataclass
class _Segment:
    """Where a block ended up in the graph: its weight layer, its neuron layer, its modules."""

    weight_layer: str
    neuron_layer: str
    attention: nn.Module
    neuron: nn.Module


def _tensor(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().double().numpy().copy()


def neuron_spec(
    module: nn.Module, block: str, target: Target, approximate: bool, notes: list[str]
) -> NeuronSpec:
    """The graph neuron of a model neuron, mapped to ``target`` (module docstring, step 4)."""
    if isinstance(module, IAF):
        reset = "zero" if isinstance(module.dynamics.reset, ResetToZero) else "subtract"
        multi = isinstance(module.dynamics.fire, MultiSpike)
        spec = NeuronSpec("iaf", float(module.v_th), reset=reset, min_v=module.min_v, multi_spike=multi)
    elif isinstance(module, CubaLIF):
        spec = NeuronSpec("cuba", float(module.v_th), reset="zero", du=float(module.du), dv=float(module.dv))
    elif isinstance(module, LIF):
        reset = "zero" if isinstance(module.dynamics.reset, ResetToZero) else "subtract"
        spec = NeuronSpec("lif", float(module.v_th), reset=reset, decay=float(module.decay))
    else:
        raise AsaSnnError(
            f"block {block}: neuron {type(module).__name__} cannot be folded; expected IAF, CubaLIF or LIF "
            "(train with the target's neuron: iaf for Speck, cuba for Loihi)"
        )
    if spec.kind in target.neuron_kinds:
        return spec
    if spec.kind == "lif" and "iaf" in target.neuron_kinds and approximate:
        message = (
            f"block {block}: leaky LIF (decay {spec.decay}) folded as non-leaky IAF for {target.name}; "
            "without the leak sub-threshold input is never forgotten, so firing rates rise and accuracy "
            "drops (often by tens of percentage points before fine-tuning; see fidelity step 2); train "
            "with neuron 'iaf' for an exact fold"
        )
        warnings.warn(message, stacklevel=3)
        notes.append(message)
        return replace(spec, kind="iaf", decay=None)
    hint = (
        " (pass approximate=True to run it as IAF, with a loss)"
        if spec.kind == "lif" and "iaf" in target.neuron_kinds
        else ""
    )
    raise AsaSnnError(
        f"block {block}: neuron kind {spec.kind!r} cannot run on target {target.name!r}, which takes "
        f"{', '.join(target.neuron_kinds)}{hint}; train with the target's neuron"
    )


def _pool_kernel(pool: nn.Module, block: str) -> int:
    if isinstance(pool, nn.MaxPool2d):
        raise AsaSnnError(
            f"block {block}: max pooling cannot be folded (no chip op computes a max of spikes); "
            "use sum or average pooling (e.g. speck_net / loihi_net)"
        )
    kernel = pool.kernel_size
    stride = getattr(pool, "stride", kernel)
    padding = getattr(pool, "padding", 0)
    if (
        not isinstance(kernel, int)
        or stride not in (kernel, None, (kernel, kernel))
        or padding not in (0, (0, 0))
    ):
        raise AsaSnnError(
            f"block {block}: pooling {pool}; expected non-overlapping square windows without padding"
        )
    return kernel


class _Builder:
    """Collects layers while walking the blocks; tracks the activation shape per step and sample."""

    def __init__(self, input_shape: tuple[int, int, int], target: Target, approximate: bool) -> None:
        self.layers: list[Layer] = []
        self.shape: tuple[int, ...] = tuple(input_shape)
        self.target = target
        self.approximate = approximate
        self.notes: list[str] = []
        self.segments: list[_Segment] = []
        self.next_scale = 1.0

    def add(self, layer: Layer) -> None:
        self.layers.append(layer)
        self.shape = layer.output_shape

    def sumpool(self, name: str, kernel: int, source: str) -> None:
        c, h, w = self.shape
        self.add(
            Layer(
                name,
                "sumpool2d",
                {"kernel_size": [kernel, kernel]},
                (c, h // kernel, w // kernel),
                source=source,
            )
        )

    def conv_block(
        self, i: int | str, block: ConvBlock, where: str = "", inputs: tuple[str, ...] = ()
    ) -> None:
        """Layers ``conv{i}`` (+ ``pool{i}`` / ``spool{i}``) of ``block`` (module path ``where``,
        default ``blocks.{i}``), the first reading ``inputs`` (default: the layer before it)."""
        where = where or f"blocks.{i}"
        if block.pre_pool is not None:
            _pool_kernel(block.pre_pool, where)
            raise AsaSnnError(
                f"block {where}: pooling before the conv ({type(block.pre_pool).__name__}) cannot be folded; "
                "expected conv first"
            )
        conv = block.conv
        if (
            conv.groups != 1
            or conv.dilation != (1, 1)
            or conv.padding_mode != "zeros"
            or isinstance(conv.padding, str)
        ):
            raise AsaSnnError(
                f"block {where}: conv {conv} is grouped, dilated or uses string padding; not supported"
            )
        weight, bias = _tensor(conv.weight) * self.next_scale, _tensor(conv.bias)
        self.next_scale = 1.0
        if block.bn is not None:
            weight, bias = fold_batch_norm(weight, bias, block.bn)
        pool_kernel = None
        if block.pool is not None:
            pool_kernel = _pool_kernel(block.pool, where)
            if not isinstance(block.pool, SumPool2d):
                scale = avg_to_sum_scale(pool_kernel)
                weight, bias = weight * scale, None if bias is None else bias * scale
        spec = neuron_spec(block.neuron, where, self.target, self.approximate, self.notes)
        _, h, w = self.shape
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        out = (conv.out_channels, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        name = f"conv{i}"
        attrs = {
            "kernel_size": [kh, kw],
            "stride": [sh, sw],
            "padding": [ph, pw],
            "in_channels": conv.in_channels,
            "out_channels": conv.out_channels,
        }
        tensors = {"weight": weight} | ({} if bias is None else {"bias": bias})
        self.add(
            Layer(
                name,
                "conv2d",
                attrs,
                out,
                tensors,
                None if pool_kernel else spec,
                inputs,
                source=f"{where}.conv",
            )
        )
        neuron_layer = name
        if pool_kernel:
            neuron_layer = f"pool{i}"
            self.sumpool(neuron_layer, pool_kernel, f"{where}.pool")
            self.layers[-1].neuron = spec
            self.notes.append(
                f"block {where}: average pool before the neuron folded as conv (weights / {pool_kernel**2}, "
                f"no neuron) -> sumpool2d with the neuron; Speck cannot run a conv without neurons"
            )
        self.segments.append(_Segment(name, neuron_layer, block.attention, block.neuron))
        if block.post_pool is not None:
            kernel = _pool_kernel(block.post_pool, where)
            if not isinstance(block.post_pool, SumPool2d):
                self.next_scale = avg_to_sum_scale(kernel)
            self.sumpool(f"spool{i}", kernel, f"{where}.post_pool")

    def residual_block(self, i: int, block: SEWBasicBlock) -> None:
        """Layers ``conv{i}_0``, ``conv{i}_1`` (main path), ``conv{i}_s`` (a shortcut conv, if
        any) and ``add{i}`` summing the main path's spikes and the shortcut's (module docstring)."""
        where = f"blocks.{i}"
        last = self.layers[-1] if self.layers else None
        if last is None or (last.neuron is None and last.op not in ("sumpool2d", "add")):
            raise AsaSnnError(
                f"block {where}: a residual block must follow a spiking layer (its shortcut sums spikes)"
            )
        if self.next_scale != 1.0:
            raise AsaSnnError(
                f"block {where}: an average pool after the neuron before a residual block cannot be folded "
                "(its 1 / k^2 would scale only one operand of the add); use SumPool2d"
            )
        source, shape = self.layers[-1].name, self.shape
        self.conv_block(f"{i}_0", block.first, f"{where}.first")
        self.conv_block(f"{i}_1", block.second, f"{where}.second")
        main = self.layers[-1].name
        skip = source
        if block.shortcut is not None:
            self.shape = shape
            self.conv_block(f"{i}_s", block.shortcut, f"{where}.shortcut", (source,))
            skip = self.layers[-1].name
        operands = (main, skip)
        shapes = [self.layer(name).output_shape for name in operands]
        if shapes[0] != shapes[1]:
            raise AsaSnnError(f"block {where}: the add's operands {operands} have shapes {shapes}")
        self.add(Layer(f"add{i}", "add", {}, shapes[0], inputs=operands, source=where))

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (built so far)."""
        return next(layer for layer in self.layers if layer.name == name)

    def linear_block(self, i: int, block: LinearBlock) -> None:
        where = f"blocks.{i}"
        if len(self.shape) > 1:
            self.add(Layer(f"flatten{i}", "flatten", {}, (int(np.prod(self.shape)),), source=where))
        linear = block.linear
        weight, bias = _tensor(linear.weight) * self.next_scale, _tensor(linear.bias)
        self.next_scale = 1.0
        spec = neuron_spec(block.neuron, where, self.target, self.approximate, self.notes)
        attrs = {"in_features": linear.in_features, "out_features": linear.out_features}
        tensors = {"weight": weight} | ({} if bias is None else {"bias": bias})
        name = f"fc{i}"
        self.add(
            Layer(name, "linear", attrs, (linear.out_features,), tensors, spec, source=f"{where}.linear")
        )
        self.segments.append(_Segment(name, name, NoAttention(), block.neuron))


def structure(model: SpikingNetwork, target: Target, approximate: bool) -> _Builder:
    """Steps 1, 2 and 4 of the module docstring: the float layers before attention and pruning."""
    builder = _Builder(model.input_shape, target, approximate)
    for i, block in enumerate(model.blocks):
        if isinstance(block, ConvBlock):
            builder.conv_block(i, block)
        elif isinstance(block, LinearBlock):
            builder.linear_block(i, block)
        elif isinstance(block, SEWBasicBlock):
            builder.residual_block(i, block)
        else:
            raise AsaSnnError(
                f"block blocks.{i}: {type(block).__name__} cannot be folded (SEW heads have no chip "
                "mapping here); expected ConvBlock, LinearBlock or SEWBasicBlock "
                "(speck_net, speck_resnet, loihi_net, arch_a, arch_d)"
            )
    if builder.next_scale != 1.0:
        raise AsaSnnError(
            "the network ends in an average pool after the neuron; expected a spiking layer last"
        )
    return builder


def _cuba_biases(builder: _Builder) -> None:
    """CUBA: the current bias b (from BN) becomes the voltage bias b / d_u Loihi holds (module docstring)."""
    for segment in builder.segments:
        layer = next(x for x in builder.layers if x.name == segment.weight_layer)
        spec = next(x for x in builder.layers if x.name == segment.neuron_layer).neuron
        extra = float(getattr(segment.neuron, "bias", 0.0)) if spec.kind == "cuba" else 0.0
        if spec.kind != "cuba" or ("bias" not in layer.tensors and extra == 0.0):
            continue
        if spec.du == 0:
            raise AsaSnnError(
                f"layer {layer.name!r}: CUBA neuron with du = 0 and a bias; "
                "the current would grow without bound"
            )
        bias = layer.tensors.get("bias", np.zeros(layer.output_shape[0]))
        layer.tensors["bias"] = bias / spec.du + extra
        builder.notes.append(
            f"layer {layer.name!r}: CUBA current bias b folded into the voltage bias b / du "
            f"(du = {spec.du}): same steady state, the first steps differ"
        )


def _apply_attention(builder: _Builder, stats: dict[str, AttentionStats]) -> list[LayerFold]:
    folds = []
    for segment in builder.segments:
        layer = next(x for x in builder.layers if x.name == segment.weight_layer)
        kind = (
            "none"
            if isinstance(segment.attention, NoAttention | nn.Identity)
            else type(segment.attention).__name__
        )
        channels = layer.tensors["weight"].shape[0]
        if kind == "none" or segment.neuron_layer not in stats:
            folds.append(LayerFold(segment.neuron_layer, kind, None, None, 1.0, 1.0, 1.0, 0))
            continue
        stat = stats[segment.neuron_layer]
        gains = stat.channel_gains()
        neuron_gains = stat.neuron_gains()
        layer.tensors["weight"], bias = fold_gain_into_weights(
            layer.tensors["weight"], layer.tensors.get("bias"), gains
        )
        if bias is not None:
            layer.tensors["bias"] = bias
        if builder.target.keep_gain_map:
            residual = np.where(
                gains[:, None, None] > 0, neuron_gains / np.where(gains > 0, gains, 1.0)[:, None, None], 0.0
            )
            next(x for x in builder.layers if x.name == segment.neuron_layer).tensors["gain_map"] = residual
        silenced = int(np.sum(gains < GAIN_FLOOR * max(float(gains.max()), GAIN_FLOOR)))
        folds.append(
            LayerFold(
                segment.neuron_layer,
                kind,
                stat.kept_fraction(gains),
                stat.kept_fraction(neuron_gains),
                float(gains.min()),
                float(gains.mean()),
                float(gains.max()),
                silenced if channels else 0,
            )
        )
    return folds


def neuron_inputs(
    graph: FoldedGraph, name: str, batches: list[Tensor]
) -> list[tuple[Tensor, Tensor | float]]:
    """The input current [T, B, ...] of layer ``name``'s neuron per batch of ``batches`` (frames
    [T, B, C, H, W]), with the voltage bias a CUBA neuron receives (0.0 for other neurons)."""
    model = GraphModel(graph).eval()
    captured: list[tuple[Tensor, Tensor | float]] = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        bias = getattr(module, "bias", 0.0)
        captured.append((inputs[0].detach(), bias.detach() if isinstance(bias, Tensor) else bias))

    handle = model.neurons[name].register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for frames in batches:
                model.run(frames.float())
    finally:
        handle.remove()
    return captured


def layer_spike_count(
    spec: NeuronSpec, name: str, inputs: list[tuple[Tensor, Tensor | float]], scale: float
) -> float:
    """Total spikes of a neuron ``spec`` fed ``scale`` times the currents ``inputs`` (from
    :func:`neuron_inputs`), run as threshold theta / scale on the unscaled current (exact, see
    :func:`~asa_snn.convert.attention_fold.threshold_for_gain`)."""
    neuron = make_neuron(threshold_for_gain(spec, scale), name)
    total = 0.0
    with torch.no_grad():
        for current, bias in inputs:
            if spec.kind == "cuba":
                neuron.bias = bias
            total += float(neuron(current).sum())
    return total


def match_rates(
    builder: _Builder,
    graph: FoldedGraph,
    folds: list[LayerFold],
    live: dict[str, float],
    calibration: list[Tensor],
    matcher: RateMatch,
) -> None:
    """Step 5 of the module docstring: scale each attention layer's folded weights (and bias), in
    order, by the :class:`RateMatch` scalar that brings its calibration spike count to ``live``
    (layer name -> total live spikes over ``calibration``). Updates ``graph`` (sharing the builder's
    layers), ``folds`` and the builder's notes."""
    samples = stats_samples(calibration)
    for segment, fold in zip(builder.segments, folds, strict=True):
        if fold.attention == "none":
            continue
        name = segment.neuron_layer
        spec = next(x for x in graph.layers if x.name == name).neuron
        inputs = neuron_inputs(graph, name, calibration)
        before = layer_spike_count(spec, name, inputs, 1.0)
        scale, after = matcher.solve(
            lambda s, i=inputs, n=name, p=spec: layer_spike_count(p, n, i, s), live[name]
        )
        layer = next(x for x in graph.layers if x.name == segment.weight_layer)
        gains = np.full(layer.tensors["weight"].shape[0], scale)
        layer.tensors["weight"], bias = fold_gain_into_weights(
            layer.tensors["weight"], layer.tensors.get("bias"), gains
        )
        if bias is not None:
            layer.tensors["bias"] = bias
        fold.rate_scale = float(scale)
        fold.rate_spikes_before, fold.rate_spikes_after = before / samples, after / samples
        builder.notes.append(
            f"layer {name!r}: rate matching scaled the folded gains by {scale:.4f} (threshold x "
            f"{1 / scale:.4f}); calibration spikes per sample {before / samples:.1f} -> "
            f"{after / samples:.1f} "
            f"(live {live[name] / samples:.1f})"
        )


def channel_spikes(graph: FoldedGraph, batches: list[Tensor]) -> dict[str, np.ndarray]:
    """Spikes per channel of every spiking layer summed over ``batches`` (frames [T, B, C, H, W]), [C]."""
    model = GraphModel(graph).eval()
    totals: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for frames in batches:
            for name, spikes in model.run(frames.float()).channel_spikes.items():
                totals[name] = totals.get(name, 0) + spikes.sum(0).double().numpy()
    return totals


def prunable_layers(graph: FoldedGraph) -> set[str]:
    """Weight layers whose output channels :func:`prune_channels` may remove: their spikes go,
    through the sum pools and flattens right after them, to one layer only, the next weight layer
    of the graph. A residual block's input and output (read by an add too) are never among them."""
    names = [layer.name for layer in graph.layers]
    ops = {layer.name: layer.op for layer in graph.layers}
    readers: dict[str, list[str]] = {name: [] for name in names}
    for index, layer in enumerate(graph.layers):
        for source in layer.inputs or names[max(index - 1, 0) : index]:
            readers[source].append(layer.name)
    found = set()
    for index, name in enumerate(names):
        if ops[name] not in ("conv2d", "linear"):
            continue
        end = index
        while end + 1 < len(names) and readers[names[end]] == [names[end + 1]]:
            end += 1
            if ops[names[end]] in ("conv2d", "linear"):
                found.add(name)
                break
            if ops[names[end]] not in ("sumpool2d", "flatten"):
                break
    return found


def prune_channels(graph: FoldedGraph, keep: dict[str, np.ndarray]) -> FoldedGraph:
    """Remove output channels of weight layers (``keep``: weight layer name -> bool mask [C_out]) and
    the matching inputs of the next weight layer; sum pools, flattens and gain maps follow."""
    layers = []
    mask: np.ndarray | None = None
    flat_from: tuple[int, ...] | None = None
    previous_shape: tuple[int, ...] = tuple(graph.input.shape)
    for old in graph.layers:
        layer = replace(old, tensors=dict(old.tensors))
        if layer.op in ("conv2d", "linear"):
            weight = layer.tensors["weight"]
            if mask is not None and layer.op == "conv2d":
                weight = weight[:, mask]
                layer.attrs = replace(layer.attrs, in_channels=int(mask.sum()))
            elif mask is not None:
                columns = np.repeat(mask, int(np.prod(flat_from[1:]))) if flat_from else mask
                weight = weight[:, columns]
                layer.attrs = replace(layer.attrs, in_features=int(columns.sum()))
            mask = keep.get(layer.name)
            if mask is not None:
                weight = weight[mask]
                if "bias" in layer.tensors:
                    layer.tensors["bias"] = layer.tensors["bias"][mask]
                key = "out_channels" if layer.op == "conv2d" else "out_features"
                layer.attrs = replace(layer.attrs, **{key: int(mask.sum())})
                layer.output_shape = (int(mask.sum()), *layer.output_shape[1:])
            layer.tensors["weight"] = weight
            flat_from = None
        elif layer.op == "flatten":
            flat_from = previous_shape
            layer.output_shape = (int(np.prod(layers[-1].output_shape if layers else previous_shape)),)
        elif layer.op == "sumpool2d" and mask is not None:
            layer.output_shape = (int(mask.sum()), *layer.output_shape[1:])
        if (
            mask is not None
            and "gain_map" in layer.tensors
            and layer.tensors["gain_map"].shape[0] == mask.size
        ):
            layer.tensors["gain_map"] = layer.tensors["gain_map"][mask]
        layers.append(layer)
        previous_shape = old.output_shape
    return replace(graph, layers=layers)


def fold_model(
    model: SpikingNetwork,
    calibration: list[Tensor],
    target: Target,
    approximate: bool = False,
    input_spec: InputSpec | None = None,
    provenance: dict | None = None,
    prune: bool = True,
    rate_match: RateMatch | None = RateMatch(),  # noqa: B008 (frozen dataclass)
    device: torch.device | None = None,
) -> tuple[FoldedGraph, FoldReport]:
    """Fold ``model`` for ``target`` using ``calibration`` batches of frames [T, B, C, H, W].

    Args:
        model: a trained network (put in eval mode for the calibration pass).
        calibration: the calibration frames, time steps first.
        target: what the chip holds (:data:`GENERIC_TARGET`, or a chip's, built by the fold workflow).
        approximate: allow LIF -> IAF for a chip of IAF neurons (with a warning naming the loss).
        input_spec: the graph's input spec (default: the model's input shape, sensor of that size).
        provenance: recorded in the graph.
        prune: remove channels that never fire on the calibration data (step 6).
        rate_match: the per-layer rate-matching search (step 5); None keeps the least-squares gains.
        device: where the live model's calibration pass runs (None: where the model is); the
            folded graph's own passes (rate matching, pruning) run on the CPU.

    Returns:
        The float graph (pruned) and the :class:`FoldReport`.

    Raises:
        AsaSnnError: a block, pool or neuron the target cannot hold (named), no calibration data.
    """
    chosen = target
    if not calibration:
        raise AsaSnnError("fold: no calibration frames; expected at least one batch [T, B, C, H, W]")
    builder = structure(model, chosen, approximate)
    attention = {
        s.neuron_layer: s.attention
        for s in builder.segments
        if not isinstance(s.attention, NoAttention | nn.Identity)
    }
    neurons = {s.neuron_layer: s.neuron for s in builder.segments}
    live = _live_spikes(model, neurons, attention, calibration, device)
    stats = live.pop("__stats__")
    folds = _apply_attention(builder, stats)
    _cuba_biases(builder)
    c, h, w = model.input_shape
    spec = input_spec or InputSpec(shape=(c, h, w), sensor_size=(w, h, c))
    vote = model.readout.group if isinstance(model.readout, GroupVote) else 1
    graph = FoldedGraph(
        layers=builder.layers,
        input=spec,
        num_classes=int(np.prod(builder.shape)) // vote,
        target=chosen.name,
        readout="rate",
        vote=vote,
        provenance=dict(provenance or {}),
    )
    if rate_match is not None:
        match_rates(builder, graph, folds, live, calibration, rate_match)
        graph.provenance.setdefault("fold", {})["rate_match"] = {
            f.layer: f.rate_scale for f in folds if f.rate_spikes_before is not None
        }
    counts = channel_spikes(graph, calibration)
    last = builder.segments[-1].neuron_layer
    prunable = prunable_layers(graph)
    keep = {}
    for segment, fold in zip(builder.segments, folds, strict=True):
        total = counts[segment.neuron_layer]
        fold.spikes_live = float(live[segment.neuron_layer]) / stats_samples(calibration)
        fold.spikes_folded = float(total.sum()) / stats_samples(calibration)
        silent = total == 0
        if not prune or segment.neuron_layer == last or not silent.any():
            continue
        if segment.weight_layer not in prunable:
            continue
        if silent.all():
            silent[0] = False
        fold.pruned = [int(i) for i in np.flatnonzero(silent)]
        keep[segment.weight_layer] = ~silent
    graph = prune_channels(graph, keep)
    report = FoldReport(chosen.name, stats_samples(calibration), folds, builder.notes)
    graph.provenance.setdefault("fold", {})["pruned"] = {f.layer: f.pruned for f in folds if f.pruned}
    return graph, report


def stats_samples(batches: list[Tensor]) -> int:
    """Number of samples in batches [T, B, ...]."""
    return sum(int(b.shape[1]) for b in batches)


def _live_spikes(
    model: SpikingNetwork,
    neurons: dict[str, nn.Module],
    attention: dict[str, nn.Module],
    batches: list[Tensor],
    device: torch.device | None = None,
) -> dict:
    """Total spikes per neuron layer of the live model (layer name -> spikes summed over the batches)
    and, under ``"__stats__"``, the attention statistics, in one pass over ``batches`` [T, B, ...]
    run on ``device`` (None: where the model is; the model goes back where it was, statistics and
    counts are kept on the CPU)."""
    home = next(model.parameters()).device
    device = device or home
    model.to(device)
    try:
        with count_spikes(model, neurons) as counts:
            stats = collect_attention_stats(model, attention, [frames.to(device) for frames in batches])
    finally:
        model.to(home)
    return {**counts.spikes, "__stats__": stats}
