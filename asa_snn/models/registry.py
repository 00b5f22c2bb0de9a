"""The model registry: a config names a network, a neuron and an attention kind.

``build_model(ModelSpec(...))`` is the one way every stage makes a model, so a checkpoint that
stores its spec can be rebuilt exactly. ``model_table`` gives the layer table that
``asa-snn model-info`` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.models.attention import ATTENTION_KINDS, make_attention
from asa_snn.models.networks import (
    SpikingNetwork,
    loihi_net,
    paper_five_layer,
    paper_three_layer,
    sew_resnet18,
    speck_net,
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
    "sew_resnet18": NetworkEntry(sew_resnet18, "lif", "SEW ResNet-18 (HAR-DVS-sized data)"),
    "speck_net": NetworkEntry(speck_net, "iaf", "fits Speck: conv-only, IAF, sum pooling, <= 9 layers"),
    "loihi_net": NetworkEntry(loihi_net, "cuba", "fits Loihi netx: strided convs + dense, CUBA neurons"),
}


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
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise AsaSnnError(f"model spec: unknown field(s) {unknown}; expected some of {sorted(known)}")
        values = dict(data)
        if "input_shape" in values:
            values["input_shape"] = tuple(int(v) for v in values["input_shape"])
        return cls(**values)


def _choose(kind: str, value: str, options: dict[str, Any] | tuple[str, ...]) -> None:
    if value not in options:
        raise AsaSnnError(f"unknown {kind} {value!r}; expected one of {', '.join(options)}")


def build_model(spec: ModelSpec) -> SpikingNetwork:
    """Build the network ``spec`` names, with its neuron and attention in every conv block."""
    _choose("network", spec.network, tuple(NETWORKS))
    _choose("attention", spec.attention, ATTENTION_KINDS)
    entry = NETWORKS[spec.network]
    neuron_kind = spec.neuron or entry.neuron
    _choose("neuron", neuron_kind, tuple(NEURONS))
    if len(spec.input_shape) != 3 or min(spec.input_shape) < 1:
        raise InputFormatError(
            f"model spec: input_shape must be (C, H, W) with positive entries, got {spec.input_shape}"
        )
    if spec.num_classes < 1 or spec.timesteps < 1:
        raise AsaSnnError(
            f"model spec: num_classes and timesteps must be >= 1, got {spec.num_classes} and {spec.timesteps}"
        )

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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table: a module with parameters or a neuron layer."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    neurons: int
    parameters: int


def _layer_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules, except that an attention slot counts as one module (its insides are not listed)."""
    found = []
    for name, module in model.named_modules():
        inside_attention = any(part == "attention" for part in name.split(".")[:-1])
        is_slot = name.split(".")[-1] == "attention"
        if name and not inside_attention and (is_slot or not any(True for _ in module.children())):
            found.append((name, module))
    return found


def model_table(model: SpikingNetwork, timesteps: int) -> list[LayerRow]:
    """Run one zero input [T, 1, C, H, W] through ``model`` and list its layers in call order.

    Rows are the layers that hold parameters, the attention slots and the spiking neurons.
    ``output_shape`` is per step and sample; ``neurons`` counts a neuron layer's units.
    """
    rows: list[LayerRow] = []

    def hook(name: str, module: nn.Module, output: torch.Tensor) -> None:
        parameters = sum(p.numel() for p in module.parameters() if p.requires_grad)
        is_neuron = isinstance(module, SpikingNeuron)
        multi_step = is_neuron or name.split(".")[-1] == "attention"
        shape = tuple(output.shape[2:] if multi_step else output.shape[1:])
        if is_neuron or parameters or multi_step:
            size = int(torch.tensor(shape).prod()) if is_neuron else 0
            rows.append(LayerRow(name, type(module).__name__, shape, size, parameters))

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
