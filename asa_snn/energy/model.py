"""Operation counts and energy estimates: the one energy model of the project (pure NumPy / dataclasses).

A layer is described by a plain :class:`LayerOps` (no torch, no model), so the training-side analysis
and the chip simulators count operations and joules the same way. Counts are per sample (one
inference of T steps).

Counting rules (paper Eq. 11 and its supplementary, FACTS.md section 1)::

    FLOPs(conv) = k_h k_w * H_out * W_out * C_in / groups * C_out   (dense, per step)
    FLOPs(fc)   = in * out
    SOP         = sum over input positions of events * fan-out      (event-driven count)
                ~ r_in * T * FLOPs,   r_in = input events / (input elements * T)
                = input events * mean fan-out                        (paper's form)
    MAC         = T * FLOPs when the input is real valued (first layer), + attention MACs
    E           = E_MAC * MAC + E_AC * SOP                            (op-energy presets)

FLOPs and the per-position fan-out come from the layer's geometry (:mod:`asa_snn.energy.synapses`,
equations there). Both the training-side analysis and the simulators know where the input events
landed and fill ``event_fanout_sum`` with the boundary-exact count; only a :class:`LayerOps` built
without it (by hand, or from a simulation result without spike maps) uses the mean-fan-out form.
Neuron updates are ``neurons * T`` per sample.

Where this lines up with NeuroBench's metrics (FACTS.md section 5): our SOPs of spiking-input layers
correspond to ``Effective_ACs``, our MACs of real-valued-input layers and attention to
``Effective_MACs``, ``T * FLOPs`` to ``Dense`` and ``neurons * T`` to membrane updates. Where it
differs: (1) a sum-pooled input (Speck's sum pooling) carries counts > 1 and we count each unit as an
event (a chip receives that many events), while NeuroBench counts a non-zero input once; likewise a
multi-spike IAF output of n spikes counts n events; (2) ``FLOPs`` counts the synapses of the
padding too, so the mean-fan-out SOP over-counts events on the border of a padded conv; the
boundary-exact ``event_fanout_sum`` does not (it equals sinabs' synops from ``sinabs.hooks``, tested);
(3) attention MACs follow the modules' own ``extra_macs`` counting rule.

Presets: :data:`GENERIC_PRESETS` holds the chip-independent ones, ``fp32_45nm`` (MAC 4.6 pJ, AC
0.9 pJ) and ``int8_45nm`` (MAC 0.23 pJ, AC 0.03 pJ) from Horowitz, ISSCC 2014; each chip's folder
adds its own model (``asa_snn/chips/<chip>/energy.py``), and
:func:`asa_snn.chips.registry.energy_presets` lists them all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from asa_snn.errors import AsaSnnError

LAYER_KINDS = ("conv", "linear", "attention", "pool")


@dataclass(frozen=True)
class LayerOps:
    """Plain description of one layer's work for one sample of ``timesteps`` steps.

    Attributes:
        name: layer name (module path).
        kind: one of ``conv``, ``linear``, ``attention``, ``pool``.
        flops: dense operations per step (conv: k_h k_w H_out W_out C_in / groups C_out; fc: in * out;
            0 for attention and pool).
        input_size: input elements per step (C_in H_in W_in, or in); 0 when not applicable.
        input_events: sum of the input values over all steps, per sample (spike / event count;
            a sum-pooled or multi-spike input counts each unit).
        input_is_spiking: True when the input is spikes (AC work), False when real valued (MAC work).
        timesteps: T.
        neurons: spiking neurons this layer drives (0 if none).
        attention_macs: multiply-accumulates per sample of an attention module.
        event_fanout_sum: boundary-exact synaptic ops per sample (sum over input events of their
            fan-out, :func:`asa_snn.energy.synapses.synaptic_ops`), or None when the input
            positions are unknown: then the mean fan-out ``flops / input_size`` is used.
        active_neuron_steps: neuron-steps with at least one spike, per sample.
        output_spikes: spikes emitted by the driven neurons over all steps, per sample.
    """

    name: str
    kind: str
    flops: float = 0.0
    input_size: int = 0
    input_events: float = 0.0
    input_is_spiking: bool = True
    timesteps: int = 1
    neurons: int = 0
    attention_macs: float = 0.0
    event_fanout_sum: float | None = None
    active_neuron_steps: float = 0.0
    output_spikes: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise AsaSnnError(f"LayerOps {self.name!r}: kind must be one of {LAYER_KINDS}, got {self.kind!r}")
        for name in ("flops", "input_size", "input_events", "neurons", "attention_macs", "output_spikes"):
            if getattr(self, name) < 0:
                raise AsaSnnError(f"LayerOps {self.name!r}: {name} must be >= 0, got {getattr(self, name)}")
        if self.timesteps < 1:
            raise AsaSnnError(f"LayerOps {self.name!r}: timesteps must be >= 1, got {self.timesteps}")
        if self.flops > 0 and self.input_size <= 0:
            raise AsaSnnError(f"LayerOps {self.name!r}: input_size must be > 0 when flops > 0")


def synaptic_ops(layer: LayerOps) -> float:
    """Accumulate operations (SOPs) per sample: the event-driven count of a spiking-input layer.

    ``event_fanout_sum`` when given, else ``input_events * flops / input_size``
    (= r_in * T * FLOPs). Zero for a real-valued input (that work is MACs) and for attention / pool.
    """
    if not layer.input_is_spiking or layer.flops == 0:
        return 0.0
    if layer.event_fanout_sum is not None:
        return float(layer.event_fanout_sum)
    return float(layer.input_events * layer.flops / layer.input_size)


def mac_ops(layer: LayerOps) -> float:
    """Multiply-accumulates per sample: ``T * FLOPs`` for a real-valued input, plus attention MACs."""
    dense = 0.0 if layer.input_is_spiking else float(layer.timesteps * layer.flops)
    return dense + float(layer.attention_macs)


def neuron_updates(layer: LayerOps) -> float:
    """Membrane updates per sample: ``neurons * T``."""
    return float(layer.neurons * layer.timesteps)


class EnergyModel(Protocol):
    """A preset: joules per sample of one layer, split into named terms, and a static term."""

    name: str
    source: str
    uses_duration: bool
    estimate: str
    """Empty for published per-operation figures; else why the figures are an estimate."""

    def layer_terms(self, layer: LayerOps) -> dict[str, float]: ...

    def static_j(self, duration_s: float | None) -> float: ...


@dataclass(frozen=True)
class OpEnergy:
    """E = E_MAC * MAC + E_AC * SOP (energies in picojoules per operation); neuron updates not charged."""

    name: str
    e_mac_pj: float
    e_ac_pj: float
    source: str
    uses_duration: bool = False
    estimate: str = ""

    def layer_terms(self, layer: LayerOps) -> dict[str, float]:
        """{"mac_j", "ac_j"} per sample."""
        return {
            "mac_j": mac_ops(layer) * self.e_mac_pj * 1e-12,
            "ac_j": synaptic_ops(layer) * self.e_ac_pj * 1e-12,
        }

    def static_j(self, duration_s: float | None) -> float:
        """No static term: 0."""
        return 0.0


GENERIC_PRESETS: dict[str, EnergyModel] = {
    "fp32_45nm": OpEnergy("fp32_45nm", 4.6, 0.9, "Horowitz, ISSCC 2014, 45 nm fp32"),
    "int8_45nm": OpEnergy("int8_45nm", 0.23, 0.03, "Horowitz, ISSCC 2014, 45 nm int8"),
}
"""The chip-independent op-energy presets; each chip adds its own model
(:func:`asa_snn.chips.registry.energy_presets`)."""


@dataclass(frozen=True)
class EnergyReport:
    """Energy of one inference (one sample) under one preset.

    Attributes:
        preset: preset name.
        layers: {layer name: {term: joules}}.
        layer_total_j: {layer name: joules}.
        static_j: duration-dependent term (Speck resting power), joules.
        total_j: sum of all layers plus ``static_j``.
        note: caveat (e.g. duration unknown), or "".
    """

    preset: str
    layers: dict[str, dict[str, float]]
    layer_total_j: dict[str, float]
    static_j: float
    total_j: float
    note: str = ""

    def to_dict(self) -> dict:
        """Plain JSON-safe form."""
        return asdict(self)


def _preset(preset: str | EnergyModel) -> EnergyModel:
    if isinstance(preset, str):
        if preset not in GENERIC_PRESETS:
            raise AsaSnnError(
                f"energy preset {preset!r} is unknown here; expected one of {', '.join(GENERIC_PRESETS)} "
                "or a chip's energy model (asa_snn.chips.registry.energy_presets)"
            )
        return GENERIC_PRESETS[preset]
    return preset


def energy(
    layer_ops: list[LayerOps], preset: str | EnergyModel, duration_s: float | None = None
) -> EnergyReport:
    """Joules per sample, per layer and in total, for ``layer_ops`` under ``preset``.

    Args:
        layer_ops: the layers of one model.
        preset: a key of :data:`GENERIC_PRESETS` or an :class:`EnergyModel` (a chip's).
        duration_s: duration of one inference in seconds (only the Speck resting term uses it).
    """
    model = _preset(preset)
    layers = {layer.name: model.layer_terms(layer) for layer in layer_ops}
    totals = {name: float(sum(terms.values())) for name, terms in layers.items()}
    static = model.static_j(duration_s)
    note = ""
    if model.uses_duration and duration_s is None:
        note = "resting-power term omitted: inference duration unknown"
    return EnergyReport(model.name, layers, totals, static, float(sum(totals.values()) + static), note)


@dataclass(frozen=True)
class EnergyDifference:
    """Paper Eq. 11: dE = E_MAC * dMAC - E_AC * dAC (per sample; dE < 0 means the attention model saves).

    Attributes:
        delta_mac: MACs of the attention model minus those of the vanilla model (extra attention MACs).
        delta_ac: SOPs of the vanilla model minus those of the attention model (saved synaptic ops).
        mac_cost_j: E_MAC * delta_mac.
        ac_saving_j: E_AC * delta_ac.
        delta_e_j: mac_cost_j - ac_saving_j.
        break_even_ac: saved synaptic ops that pay for the extra MACs, delta_mac * E_MAC / E_AC
            (:func:`break_even_ops`); dE < 0 exactly when delta_ac > break_even_ac.
        vanilla_ac: SOPs of the vanilla model (to read delta_ac and break_even_ac as shares of it).
    """

    preset: str
    delta_mac: float
    delta_ac: float
    mac_cost_j: float
    ac_saving_j: float
    delta_e_j: float
    break_even_ac: float = 0.0
    vanilla_ac: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON-safe form."""
        return asdict(self)


def break_even_ops(delta_mac: float, preset: str | EnergyModel = "fp32_45nm") -> float:
    """Synaptic ops an attention model must save to pay for ``delta_mac`` extra MACs (Eq. 11 at dE = 0):

        dAC* = dMAC * E_MAC / E_AC      (fp32, 45 nm: 4.6 / 0.9 = 5.1 saved ops per extra MAC)

    Raises:
        AsaSnnError: the preset has no E_MAC / E_AC (Loihi, Speck).
    """
    model = _op_preset(preset, "break_even_ops")
    return float(delta_mac) * model.e_mac_pj / model.e_ac_pj


def _op_preset(preset: str | EnergyModel, owner: str) -> OpEnergy:
    model = _preset(preset)
    if not isinstance(model, OpEnergy):
        raise AsaSnnError(
            f"{owner} (Eq. 11) needs a preset with MAC and AC energies "
            f"({', '.join(GENERIC_PRESETS)}), got {model.name!r}"
        )
    return model


def energy_difference(
    vanilla: list[LayerOps], asa: list[LayerOps], preset: str | EnergyModel = "fp32_45nm"
) -> EnergyDifference:
    """Eq. 11 between a vanilla model and its attention version under an op-energy preset.

    Raises:
        AsaSnnError: the preset has no E_MAC / E_AC (Loihi, Speck).
    """
    model = _op_preset(preset, "energy_difference")
    delta_mac = sum(mac_ops(layer) for layer in asa) - sum(mac_ops(layer) for layer in vanilla)
    vanilla_ac = sum(synaptic_ops(layer) for layer in vanilla)
    delta_ac = vanilla_ac - sum(synaptic_ops(layer) for layer in asa)
    cost = delta_mac * model.e_mac_pj * 1e-12
    saving = delta_ac * model.e_ac_pj * 1e-12
    return EnergyDifference(
        model.name,
        float(delta_mac),
        float(delta_ac),
        cost,
        saving,
        cost - saving,
        break_even_ops(delta_mac, model),
        float(vanilla_ac),
    )
