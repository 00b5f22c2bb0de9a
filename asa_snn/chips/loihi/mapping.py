"""Does a folded graph fit Loihi? Per-layer core counts and every limit it breaks.

Limits (Loihi 1, FACTS.md section 4; Davies et al., IEEE Micro 2018): per core 1,024 neurons,
128 KB synaptic memory, 4,096 input axons; weights 1-9 bits (signed) with a shared exponent per
layer; u and v 24 bit; 128 cores per chip. The network checked is the netx export
(:func:`~asa_snn.chips.loihi.netx_export.to_netx_layers`): pools folded, integers in netx units.

Assumptions, stated because the chip's exact memory layout depends on the compiler:

- every synapse is stored explicitly (no conv weight sharing on Loihi 1) and takes
  ``bits_per_synapse`` = 16 bits (up to 9 weight bits plus index / format overhead), so a core
  holds 128 KB * 8 / 16 = 65,536 synapses;
- a layer is split into equal core slices; a slice of ``n`` neurons needs at most
  ``min(layer inputs, n * fan_in)`` input axons (an upper bound for convs);
- parameter ranges from Lava's bit-accurate LIF: ``vThMant`` 17 bit unsigned, bias mantissa 13 bit
  signed, ``iDecay - 1`` and ``vDecay`` 12 bit unsigned; the current may wrap when the summed
  positive (or negative) weights of one neuron, shifted by 6, reach 2^23.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from asa_snn.chips.base import CoreUse, Violation
from asa_snn.chips.loihi.netx_export import NETX_LAYER_TYPES, NetxLayer, to_netx_layers
from asa_snn.convert.graph import FoldedGraph
from asa_snn.errors import AsaSnnError


@dataclass(frozen=True)
class LoihiLimits:
    """Per-core and per-chip limits (defaults: Loihi 1)."""

    neurons_per_core: int = 1024
    synaptic_memory_bytes: int = 128 * 1024
    bits_per_synapse: int = 16
    input_axons_per_core: int = 4096
    max_weight_bits: int = 9
    max_weight_exponent: int = 7
    state_bits: int = 24
    cores_per_chip: int = 128

    @property
    def synapses_per_core(self) -> int:
        """Synapses one core holds: memory bits / bits per synapse."""
        return self.synaptic_memory_bytes * 8 // self.bits_per_synapse


@dataclass(frozen=True)
class LayerMapping:
    """Resources of one conv / dense layer: neurons, fan-in per neuron, synapses, weight format, cores."""

    name: str
    kind: str
    neurons: int
    fan_in: int
    synapses: int
    weight_bits: int
    weight_exponent: int
    cores: int


@dataclass
class MappingReport:
    """What :func:`check_loihi` found."""

    layers: list[LayerMapping]
    violations: list[Violation] = field(default_factory=list)
    limits: LoihiLimits = field(default_factory=LoihiLimits)

    @property
    def total_cores(self) -> int:
        """Cores over all layers."""
        return sum(layer.cores for layer in self.layers)

    @property
    def chips(self) -> int:
        """Chips needed at ``cores_per_chip`` cores each."""
        return math.ceil(self.total_cores / self.limits.cores_per_chip)

    @property
    def ok(self) -> bool:
        """True when no limit is broken."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ok, one row per layer (every LayerMapping field), violations, cores, chips."""
        return {
            "ok": self.ok,
            "rows": [asdict(layer) for layer in self.layers],
            "violations": [v.line() for v in self.violations],
            "cores": self.total_cores,
            "chips": self.chips,
        }

    def table(self) -> str:
        """Per-layer resources, totals, then the violations, as text."""
        lines = [
            f"{'layer':16} {'type':6} {'neurons':>8} {'fan-in':>7} {'synapses':>10} "
            f"{'w bits':>6} {'w exp':>5} {'cores':>5}"
        ]
        for m in self.layers:
            lines.append(
                f"{m.name:16} {m.kind:6} {m.neurons:8d} {m.fan_in:7d} {m.synapses:10d} "
                f"{m.weight_bits:6d} {m.weight_exponent:5d} {m.cores:5d}"
            )
        lines.append(
            f"total cores {self.total_cores}, chips {self.chips} ({self.limits.cores_per_chip} cores each)"
        )
        lines += [f"VIOLATION {v.layer}: {v.limit} = {v.value}; fix: {v.fix}" for v in self.violations]
        return "\n".join(lines)


def weight_format(weight: np.ndarray) -> tuple[int, int]:
    """(mantissa bits incl. sign when mixed, shared exponent) of integer weights.

    The exponent is the largest ``e`` with every weight divisible by 2^e; the mantissa is
    ``w >> e``. All-zero weights give (1, 0).
    """
    values = np.abs(weight[weight != 0]).astype(np.int64)
    if values.size == 0:
        return 1, 0
    exponent = int(np.min(values & -values)).bit_length() - 1
    mantissa = weight.astype(np.int64) >> exponent
    positive = int(mantissa.max(initial=0)).bit_length()
    negative = int(-mantissa.min(initial=0) - 1).bit_length()
    signed = bool((mantissa < 0).any() and (mantissa > 0).any())
    return max(positive, negative, 1) + int(signed or (mantissa < 0).any()), exponent


def _input_size(layers: list[NetxLayer], index: int) -> int:
    return int(np.prod(layers[index - 1].shape))


def _core_count(
    name: str, neurons: int, fan_in: int, inputs: int, limits: LoihiLimits
) -> tuple[int, list[Violation]]:
    """Cores layer ``name`` needs for its neurons, synapses and input axons, and a violation when
    one neuron's fan-in alone exceeds a core's input axons.

    Args:
        name: the layer's name (for the violation).
        neurons: the layer's neurons.
        fan_in: synapses per neuron.
        inputs: the layer's input size (neurons of the layer before).
        limits: the chip's limits.
    """
    cores = max(
        math.ceil(neurons / limits.neurons_per_core),
        math.ceil(neurons * fan_in / limits.synapses_per_core),
        1,
    )
    if inputs <= limits.input_axons_per_core:
        return cores, []
    if fan_in <= limits.input_axons_per_core:
        return max(cores, math.ceil(neurons / (limits.input_axons_per_core // fan_in))), []
    violation = Violation(
        name,
        "input axons per core",
        f"fan-in {fan_in} > {limits.input_axons_per_core}",
        "reduce the layer's fan-in (fewer input channels or a smaller kernel)",
    )
    return cores, [violation]


def _weight_limits(
    name: str, weight: np.ndarray, bits: int, exponent: int, limits: LoihiLimits
) -> list[Violation]:
    """Weight mantissa ``bits`` and shared ``exponent`` (:func:`weight_format` of ``weight``), and the
    24-bit current: the summed positive (or negative) weights of one neuron, shifted by 6, must stay
    below 2^23."""
    found = []
    if bits > limits.max_weight_bits:
        found.append(
            Violation(
                name,
                "weight bits",
                f"{bits} > {limits.max_weight_bits} (after exponent {exponent})",
                "quantize the weights to 8 bits plus sign for target loihi",
            )
        )
    if exponent > limits.max_weight_exponent:
        found.append(
            Violation(
                name,
                "weight exponent",
                f"{exponent} > {limits.max_weight_exponent}",
                "rescale weights, bias and threshold together",
            )
        )
    rows = weight.reshape(weight.shape[0], -1)
    worst = max(int(np.clip(rows, 0, None).sum(1).max()), int(-np.clip(rows, None, 0).sum(1).min()))
    if worst << 6 >= 2 ** (limits.state_bits - 1):
        found.append(
            Violation(
                name,
                "24-bit current u",
                f"max summed input {worst} << 6 >= 2^23",
                "scale weights and threshold down together",
            )
        )
    return found


def _parameter_limits(layer: NetxLayer) -> list[Violation]:
    """Lava LIF parameter ranges: vThMant, iDecay, vDecay and the bias mantissa (module docstring)."""
    neuron = layer.neuron
    checks = [
        ("vThMant (17 bit unsigned)", neuron.vth_mant, 0, 2**17 - 1, "lower the threshold scale"),
        ("iDecay (1..4096)", neuron.i_decay, 1, 4096, "use a current decay du >= 1/4096"),
        ("vDecay (0..4095)", neuron.v_decay, 0, 4095, "use a voltage decay dv < 1"),
    ]
    if layer.bias is not None and layer.bias.size:
        bias = int(np.abs(layer.bias).max())
        checks.append(("bias mantissa (13 bit signed)", bias, -4096, 4095, "scale the bias down or drop it"))
    return [
        Violation(layer.name, limit, f"{value} outside [{low}, {high}]", fix)
        for limit, value, low, high, fix in checks
        if not low <= value <= high
    ]


def _map_layer(
    layers: list[NetxLayer], index: int, limits: LoihiLimits
) -> tuple[LayerMapping, list[Violation]]:
    """Resources of conv / dense layer ``layers[index]`` and every limit it breaks."""
    layer = layers[index]
    neurons = int(np.prod(layer.shape))
    fan_in = int(np.prod(layer.weight.shape[1:]))
    cores, axons = _core_count(layer.name, neurons, fan_in, _input_size(layers, index), limits)
    bits, exponent = weight_format(layer.weight)
    weights = _weight_limits(layer.name, layer.weight, bits, exponent, limits)
    mapping = LayerMapping(layer.name, layer.kind, neurons, fan_in, neurons * fan_in, bits, exponent, cores)
    return mapping, [*axons, *weights, *_parameter_limits(layer)]


def check_loihi(graph: FoldedGraph, limits: LoihiLimits | None = None) -> MappingReport:
    """Map ``graph``'s netx export onto Loihi cores and list every broken limit.

    A graph netx cannot express gives a report with no layers and one violation per reason
    (unsupported op or neuron), so the check never raises for a well-formed graph.
    """
    limits = limits or LoihiLimits()
    violations = [
        Violation(
            layer.name,
            "supported netx layer types",
            layer.op,
            f"netx takes {', '.join(NETX_LAYER_TYPES)} (sum pools folded); use the loihi_net architecture",
        )
        for layer in graph.layers
        if layer.op == "add"
    ]
    violations += [
        Violation(
            layer.name, "neuron kind", layer.neuron.kind, "use CUBA neurons (kind 'cuba') for target loihi"
        )
        for layer in graph.layers
        if layer.neuron is not None and layer.neuron.kind != "cuba"
    ]
    if violations:
        return MappingReport([], violations, limits)
    try:
        layers = to_netx_layers(graph)
    except AsaSnnError as exc:
        return MappingReport([], [Violation("graph", "netx export", str(exc), "see the message")], limits)
    report = MappingReport([], [], limits)
    for index, layer in enumerate(layers):
        if layer.kind in ("conv", "dense"):
            mapping, found = _map_layer(layers, index, limits)
            report.layers.append(mapping)
            report.violations += found
    return report


def loihi_core_layout(graph: FoldedGraph) -> dict[str, CoreUse]:
    """Spiking layer -> its core use: the layer split evenly over its cores; memory in synapses /
    neurons per core.

    Raises:
        AsaSnnError: the graph cannot be mapped at all (the violations are named).
    """
    report = check_loihi(graph)
    if not report.layers:
        problems = "; ".join(v.line() for v in report.violations)
        raise AsaSnnError(f"graph cannot be mapped to Loihi cores ({problems})")
    return {
        m.name: CoreUse(m.cores, math.ceil(m.synapses / m.cores), math.ceil(m.neurons / m.cores))
        for m in report.layers
    }
