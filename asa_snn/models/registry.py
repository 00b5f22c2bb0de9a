"""The model registry: a config names a network, a neuron and an attention kind.

``build_model(ModelSpec(...))`` is the one way every stage makes a model, so a checkpoint that
stores its spec can be rebuilt exactly. ``model_table`` gives the layer table that
``asa-snn model-info`` prints, with parameters and operation counts per layer
(:data:`MACS_CONVENTION`); :func:`table3_check` compares the attention MACs with the paper's Table 3.

Table 3 (3-layer net arch_a, T = 60, input 2x32x32) lists extra MACs of +14.3M (SA), +27.3M (TCSA),
+2.6M (ASA-1) and +2.6M (ASA-2). Under :data:`MACS_CONVENTION` this project counts 14,292,480,
29,294,640, 7,628,544 and 6,476,544. No single convention reproduces all four:

- SA's +14.3M is reproduced exactly: one 7x7 conv per step (98 H W T) plus one re-weighting of the
  input, T C H W, summed over the three attended maps (64x32x32, 128x16x16, 128x8x8). Of the sums of
  SA's parts (conv per step 7.90M or once per sample 0.13M; k passes over T C H W of 6.39M each, for
  the re-weighting, the channel mean, the channel max; sigmoid per step 0.08M) only "conv per step +
  one T C H W pass" rounds to 14.3M, so any convention that gives SA 14.3M counts one T C H W pass per
  attention stage and no sigmoid.
- ASA cannot then be 2.6M: ASA re-weights (and pools) the same T C H W entries, and the first layer
  alone has 60 x 64 x 32 x 32 = 3,932,160 of them. Without any T C H W term ASA would be 86,784 (maps
  once per sample, as ASA computes them) or 2,941,440 (maps per step), and ASA-1's time FC adds
  1,152,000 (C T^2) in either case, so ASA-1 and ASA-2 cannot both be 2.6M (Table 3 does not seem to
  count the FC at all).
- TCSA cannot be 27.3M together with SA's 14.3M: TA and CA would have to add 13.0M +- 0.05M; their two
  re-weightings are 12,779,520 and the gates' MLPs (reduction 4, pinned by the 24,126 parameters) add
  47,664 once per sample or 2,222,640 with the channel gate per step, never the missing 0.18-0.28M.
  With MA-SNN's released per-sample channel gate the count is 27,119,664 (27.1M); this project's
  channel gate runs per step (T C^2 MLP MACs per layer), giving 29,294,640.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from asa_snn.data.events import MAX_SENSOR_SIDE
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.models.attention import ATTENTION_KINDS, make_attention
from asa_snn.models.networks import (
    SpikingNetwork,
    loihi_net,
    paper_five_layer,
    paper_three_layer,
    sew_resnet18,
    speck_net,
    speck_resnet,
)
from asa_snn.models.neurons import IAF, LIF, CubaLIF, ParametricLIF, SpikingNeuron

NEURONS: dict[str, Callable[..., SpikingNeuron]] = {
    "lif": LIF,
    "plif": ParametricLIF,
    "iaf": IAF,
    "cuba": lambda **options: CubaLIF(**{"du": 0.5, "dv": 0.2, **options}),
}
"""Neuron kinds: the paper's LIF, parametric LIF, Speck's IAF, Loihi's CUBA LIF (du 0.5, dv 0.2 default)."""


@dataclass(frozen=True)
class NetworkEntry:
    """A registered network: its builder, default neuron and what it is for."""

    builder: Callable[..., SpikingNetwork]
    neuron: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


NETWORKS: dict[str, NetworkEntry] = {
    "arch_a": NetworkEntry(
        paper_three_layer, "lif", "paper's 3-layer LIF net (Gesture, Gait-day), 128 channels"
    ),
    "arch_d": NetworkEntry(
        paper_three_layer,
        "lif",
        "paper's 3-layer LIF net with 32 channels (Gait-night)",
        {"channels": 32, "first_channels": 32, "dropout": 0.5},
    ),
    "arch_b": NetworkEntry(
        paper_five_layer, "plif", "paper's 5-layer PLIF net with vote layer (Gesture, DailyAction)"
    ),
    # SpikingJelly's sew_resnet18 has no default neuron (spiking_neuron=None, the caller passes one; the
    # SEW ResNet paper uses IF: threshold 1, hard reset, ATan surrogate); here the 3-layer nets' LIF.
    "sew_resnet18": NetworkEntry(sew_resnet18, "lif", "SEW ResNet-18 (HAR-DVS-sized data)"),
    "speck_net": NetworkEntry(speck_net, "iaf", "fits Speck: conv-only, IAF, sum pooling, <= 9 layers"),
    "speck_resnet": NetworkEntry(
        speck_resnet, "iaf", "fits Speck: one SEW residual block (a merge, two destinations), 5 cores"
    ),
    "loihi_net": NetworkEntry(loihi_net, "cuba", "fits Loihi netx: strided convs + dense, CUBA neurons"),
}


MAX_TIMESTEPS = 10_000
"""Most time steps T a spec may name; the paper's longest recipe has 60."""

MAX_CLASSES = 100_000
"""Most classes K a spec may name."""

MAX_PARAMETERS = 1_000_000_000
"""Most trainable parameters a spec may build (4 GB of float32); the largest registered network at
recipe sizes, SEW ResNet-18, has 11.3M. :func:`build_model` counts them on PyTorch's ``meta`` device,
which allocates nothing, before it builds the real model."""

MAX_STEP_ACTIVATIONS = 100_000_000
"""Most values the layers of a spec may produce for one sample and time step (every leaf module's
output, 400 MB of float32); the largest recipe, SEW ResNet-18 on HAR-DVS frames, produces 14.4M.
Checked by :func:`check_model_size`, e.g. for a training config before any memory is spent."""


class ModelSpecError(InputFormatError, TypeError):
    """A model spec field of the wrong type or out of range (the message names the field).

    Also a ``TypeError``: readers that wrap a bad spec's ``TypeError`` with their file's name (a
    checkpoint's metadata) name it for these too.
    """


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """``repr(value)``, at most 60 characters (a hostile field may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model.

    Attributes:
        network: a key of :data:`NETWORKS`.
        attention: one of ``none, sa, tcsa, asa1, asa2, asa_reference``.
        timesteps: T, the number of time steps the attention modules are built for.
        input_shape: (C, H, W) of one input frame.
        num_classes: K.
        neuron: a key of :data:`NEURONS`; None takes the network's default.
        neuron_options: keyword arguments of the neuron (e.g. ``{"v_th": 0.5}``).
        attention_options: keyword arguments of the attention (e.g. ``{"reduction": 4}``).
        network_options: keyword arguments of the network builder (e.g. ``{"channels": [8, 16]}``).
    """

    network: str
    attention: str = "none"
    timesteps: int = 16
    input_shape: tuple[int, int, int] = (2, 32, 32)
    num_classes: int = 10
    neuron: str | None = None
    neuron_options: dict[str, Any] = field(default_factory=dict)
    attention_options: dict[str, Any] = field(default_factory=dict)
    network_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-safe) for checkpoints and configs."""
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them.

        Raises:
            AsaSnnError: ``data`` is not a table, or has unknown fields.
            ModelSpecError: a field of the wrong type or out of range (see :meth:`check`).
        """
        if not isinstance(data, dict):
            raise ModelSpecError(f"model spec: expected a table of fields, found {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(str(key) for key in set(data) - known)
        if unknown:
            raise AsaSnnError(f"model spec: unknown field(s) {unknown}; expected some of {sorted(known)}")
        values = dict(data)
        if "network" not in values:
            raise ModelSpecError(
                "model spec: field 'network' is missing; expected one of " + ", ".join(NETWORKS)
            )
        shape = values.get("input_shape")
        if isinstance(shape, list):
            values["input_shape"] = tuple(shape)
        spec = cls(**values)
        spec.check()
        return spec

    def check(self) -> None:
        """Every field of the right type and inside its range (names are checked by :func:`build_model`).

        ``network`` and ``attention`` strings, ``neuron`` a string or None; ``timesteps`` an integer
        1..:data:`MAX_TIMESTEPS`; ``input_shape`` three integers 1..MAX_SENSOR_SIDE; ``num_classes``
        an integer 1..:data:`MAX_CLASSES`; the option fields tables with string keys.

        Raises:
            ModelSpecError: the first field that is not, named with its value and what was expected.
        """

        def refuse(name: str, value: Any, expected: str) -> ModelSpecError:
            return ModelSpecError(
                f"model spec: field {name!r} is {_shown(value)} ({type(value).__name__}); expected {expected}"
            )

        for name in ("network", "attention"):
            if not isinstance(getattr(self, name), str):
                raise refuse(name, getattr(self, name), "a string")
        if self.neuron is not None and not isinstance(self.neuron, str):
            raise refuse("neuron", self.neuron, "a string or null")
        for name, high in (("timesteps", MAX_TIMESTEPS), ("num_classes", MAX_CLASSES)):
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= high:
                raise refuse(name, value, f"an integer 1..{high}")
        shape = self.input_shape
        if not isinstance(shape, tuple) or len(shape) != 3:
            raise refuse("input_shape", shape, "(C, H, W): three integers")
        for i, value in enumerate(shape):
            if not _is_int(value) or not 1 <= value <= MAX_SENSOR_SIDE:
                raise refuse(f"input_shape[{i}]", value, f"an integer 1..{MAX_SENSOR_SIDE}")
        for name in ("neuron_options", "attention_options", "network_options"):
            options = getattr(self, name)
            if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
                raise refuse(name, options, "a table of options with string keys")


def _choose(kind: str, value: str, options: dict[str, Any] | tuple[str, ...]) -> None:
    if value not in options:
        raise AsaSnnError(f"unknown {kind} {value!r}; expected one of {', '.join(options)}")


def build_model(spec: ModelSpec) -> SpikingNetwork:
    """Build the network ``spec`` names, with its neuron and attention in every conv block.

    The model is first built on PyTorch's ``meta`` device (no memory, no random numbers drawn) to
    count its parameters against :data:`MAX_PARAMETERS`.

    Raises:
        AsaSnnError: an unknown network / attention / neuron, bad options, a field of the wrong type
            or out of range (:meth:`ModelSpec.check`), more than :data:`MAX_PARAMETERS` parameters.
    """
    _meta_model(spec)
    return _construct(spec)


def _size_error(spec: ModelSpec, where: str, prefix: str, found: str, limit: str) -> InputFormatError:
    """``where: <prefix>network_options {...} and <prefix>input_shape [...] give network 'x' <found>;
    expected at most <limit>`` (the fields that set a model's size, with ``prefix`` such as ``model.``)."""
    return InputFormatError(
        f"{where}: {prefix}network_options {_shown(spec.network_options)} and {prefix}input_shape "
        f"{list(spec.input_shape)} give network {spec.network!r} {found}; expected at most {limit} "
        f"(fewer or narrower layers, or a smaller input)"
    )


def _meta_model(spec: ModelSpec, where: str = "model spec", prefix: str = "") -> SpikingNetwork:
    """``spec`` checked and built on the ``meta`` device, its parameters counted against
    :data:`MAX_PARAMETERS`."""
    spec.check()
    _choose("network", spec.network, tuple(NETWORKS))
    _choose("attention", spec.attention, ATTENTION_KINDS)
    _choose("neuron", spec.neuron or NETWORKS[spec.network].neuron, tuple(NEURONS))
    with torch.device("meta"):
        model = _construct(spec)
    parameters = count_parameters(model)
    if parameters > MAX_PARAMETERS:
        raise _size_error(
            spec, where, prefix, f"{parameters:,} parameters", f"{MAX_PARAMETERS:,} (MAX_PARAMETERS)"
        )
    return model


def _construct(spec: ModelSpec) -> SpikingNetwork:
    """The network of a checked spec, on the current default device."""
    entry = NETWORKS[spec.network]
    neuron_kind = spec.neuron or entry.neuron

    def neuron() -> nn.Module:
        return NEURONS[neuron_kind](**spec.neuron_options)

    def attention(channels: int) -> nn.Module:
        return make_attention(spec.attention, channels, spec.timesteps, **spec.attention_options)

    options = {**entry.defaults, **spec.network_options}
    try:
        return entry.builder(spec.input_shape, spec.num_classes, neuron, attention, **options)
    except TypeError as exc:
        raise AsaSnnError(
            f"network {spec.network!r}: bad network option(s) {sorted(options)}: {exc}"
        ) from exc


def step_activations(spec: ModelSpec, where: str = "model spec", prefix: str = "") -> int:
    """Values the layers of ``spec``'s model produce per sample and time step: the outputs of every
    leaf module (conv, norm, pooling, neuron, each part of an attention module), which training keeps
    for the backward pass. Counted by one forward pass of T steps on the ``meta`` device, which
    allocates nothing (the first such pass in a process takes about a second: PyTorch imports its
    shape checks).

    Args:
        spec: the model.
        where, prefix: for messages: what holds the spec (a file) and the prefix of its field names.

    Raises:
        AsaSnnError: see :func:`build_model`; or the network does not run on ``spec.input_shape``.
    """
    model = _meta_model(spec, where, prefix)
    total = 0

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if next(module.children(), None) is None
    ]
    try:
        model.eval()
        with torch.device("meta"), torch.no_grad():
            model(torch.zeros((spec.timesteps, 1, *spec.input_shape)))
    except RuntimeError as exc:
        problem = " ".join(str(exc).split())[:200]
        raise InputFormatError(
            f"{where}: network {spec.network!r} does not run on {prefix}input_shape "
            f"{list(spec.input_shape)}: {problem}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
    return total // spec.timesteps


def check_model_size(spec: ModelSpec, where: str = "model spec", prefix: str = "") -> int:
    """Refuse a spec whose model has more than :data:`MAX_PARAMETERS` parameters or whose layers
    produce more than :data:`MAX_STEP_ACTIVATIONS` values per sample and time step
    (:func:`step_activations`), before any memory is spent on it; returns the values per step.

    Raises:
        InputFormatError: too large; names ``where`` and the fields (``prefix`` + name) that set the size.
        AsaSnnError: see :func:`step_activations`.
    """
    values = step_activations(spec, where, prefix)
    if values > MAX_STEP_ACTIVATIONS:
        raise _size_error(
            spec,
            where,
            prefix,
            f"{values:,} values per sample and time step (layer outputs)",
            f"{MAX_STEP_ACTIVATIONS:,} (MAX_STEP_ACTIVATIONS)",
        )
    return values


MACS_CONVENTION = (
    "MACs per sample (one inference of T steps), summed over layers. Attention: every multiply-accumulate "
    "of a conv or FC inside the module (per step when the module computes per step, once per sample when "
    "its map is shared by all steps), ASA's F_add weights (2 T C) and every element-wise multiplication "
    "of the input current by an attention weight (the re-weighting, T C H W); pooling (sums, maxes, the "
    "divisions of means), sigmoid, ReLU, top-k comparisons and 0/1 masks are not counted. "
    "Conv / linear layers: T x FLOPs, FLOPs = k_h k_w H_out W_out C_in / groups C_out or in x out, the "
    "dense count: MACs for the first layer (real-valued input), an upper bound of the accumulates (ACs) "
    "of spiking-input layers, whose actual count is the input spike rate times this."
)
"""The counting rule of :func:`model_table`'s operation columns and ``asa-snn model-info``."""

PAPER_TABLE3_MACS: dict[str, float] = {"sa": 14.3e6, "tcsa": 27.3e6, "asa1": 2.6e6, "asa2": 2.6e6}
"""Extra MACs of the attention modules on arch_a (T = 60, input 2x32x32) in the paper's Table 3."""

_TABLE3_REASONS = {
    "sa": "98 H W T (7x7 conv per step) + T C H W (re-weighting), summed over the three attended maps",
    "tcsa": "Table 3's 27.3M cannot be reproduced together with SA's 14.3M: TA and CA would have to add "
    "13.0M, their re-weightings are 12.78M and no part of their gates makes up the rest (27.1M with "
    "MA-SNN's released per-sample channel gate; the channel gate here runs per step)",
    "asa1": "Table 3's 2.6M is below ASA's own re-weighting of the first layer (60 x 64 x 32 x 32 = "
    "3.93M), which the rule that reproduces SA's 14.3M counts; the time FC adds C T^2 = 1.15M",
    "asa2": "Table 3's 2.6M is below ASA's own re-weighting of the first layer (60 x 64 x 32 x 32 = "
    "3.93M), which the rule that reproduces SA's 14.3M counts",
}


def table3_check(spec: ModelSpec, attention_macs: int) -> str | None:
    """One line comparing ``attention_macs`` with the paper's Table 3, or None when ``spec`` is not
    Table 3's setting (arch_a, T = 60, input 2x32x32, attention sa / tcsa / asa1 / asa2).

    The line says whether the count, rounded to 0.1M as Table 3 prints it, equals the paper's and why
    (module docstring).
    """
    paper = PAPER_TABLE3_MACS.get(spec.attention)
    setting = spec.network == "arch_a" and spec.timesteps == 60 and tuple(spec.input_shape) == (2, 32, 32)
    if paper is None or not setting:
        return None
    reproduced = round(attention_macs / 1e5) == round(paper / 1e5)
    verdict = "reproduced" if reproduced else "NOT reproduced"
    return (
        f"paper Table 3: +{paper / 1e6:.1f}M attention MACs; here {attention_macs:,} "
        f"({attention_macs / 1e6:.1f}M): {verdict} ({_TABLE3_REASONS[spec.attention]})"
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table: a module with parameters, an attention slot or a neuron layer.

    Attributes:
        name, kind: module path and class name.
        output_shape: per step and sample.
        neurons: units of a neuron layer (0 for other rows).
        parameters: trainable parameters.
        dense_ops: conv / linear rows: T x FLOPs per sample (:data:`MACS_CONVENTION`), else 0.
        attention_macs: attention rows: the module's ``extra_macs`` per sample, else 0.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    neurons: int
    parameters: int
    dense_ops: int = 0
    attention_macs: int = 0


def _layer_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules, except that an attention slot counts as one module (its insides are not listed)."""
    found = []
    for name, module in model.named_modules():
        inside_attention = any(part == "attention" for part in name.split(".")[:-1])
        is_slot = name.split(".")[-1] == "attention"
        if name and not inside_attention and (is_slot or not any(True for _ in module.children())):
            found.append((name, module))
    return found


def _dense_ops(module: nn.Module, output: torch.Tensor, timesteps: int) -> int:
    """T x FLOPs per sample of a conv (output elements x C_in / groups x k_h k_w) or linear (in x out)."""
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return timesteps * int(output[0].numel()) * per_output
    if isinstance(module, nn.Linear):
        return timesteps * module.in_features * module.out_features
    return 0


def model_table(model: SpikingNetwork, timesteps: int) -> list[LayerRow]:
    """Run one zero input [T, 1, C, H, W] through ``model`` and list its layers in call order.

    Rows are the layers that hold parameters, the attention slots and the spiking neurons.
    ``output_shape`` is per step and sample; ``neurons`` counts a neuron layer's units;
    ``dense_ops`` and ``attention_macs`` follow :data:`MACS_CONVENTION` (per sample of T steps).
    """
    rows: list[LayerRow] = []

    def hook(name: str, module: nn.Module, output: torch.Tensor) -> None:
        parameters = sum(p.numel() for p in module.parameters() if p.requires_grad)
        is_neuron = isinstance(module, SpikingNeuron)
        is_attention = name.split(".")[-1] == "attention"
        multi_step = is_neuron or is_attention
        shape = tuple(output.shape[2:] if multi_step else output.shape[1:])
        if is_neuron or parameters or multi_step:
            size = int(torch.tensor(shape).prod()) if is_neuron else 0
            macs = 0
            if is_attention and hasattr(module, "extra_macs") and len(shape) == 3:
                macs = int(module.extra_macs(timesteps, *shape))
            dense = 0 if multi_step else _dense_ops(module, output, timesteps)
            rows.append(LayerRow(name, type(module).__name__, shape, size, parameters, dense, macs))

    handles = [
        module.register_forward_hook(lambda m, _i, o, n=name: hook(n, m, o))
        for name, module in _layer_modules(model)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((timesteps, 1, *model.input_shape)))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows
