"""Speck's energy model, an ESTIMATE derived from published power figures, not a measurement.

E = P_rest * duration + E_spike * output spikes, with the resting power 0.42 mW and an energy per
output spike ``(9.5 - 3.8) mW / (1.0M - 0.4M spikes/s) = 9.5 nJ``, inferred from Yao et al. (Nat.
Commun. 15:4464, 2024) ASSUMING their spike counts (1.0M -> 0.4M) are per second of real-time
operation.
"""

from __future__ import annotations

from dataclasses import dataclass

from asa_snn.energy.model import LayerOps


@dataclass(frozen=True)
class SpeckEnergy:
    """E = P_rest * duration + E_spike * output spikes (watts, joules per spike)."""

    name: str
    resting_w: float
    e_spike_j: float
    source: str
    uses_duration: bool = True
    estimate: str = ""

    def layer_terms(self, layer: LayerOps) -> dict[str, float]:
        """{"spike_j"} per sample: output spikes of the layer's neurons times the per-spike energy."""
        return {"spike_j": layer.output_spikes * self.e_spike_j}

    def static_j(self, duration_s: float | None) -> float:
        """Resting power times ``duration_s`` (seconds of one inference); 0 when the duration is unknown."""
        return 0.0 if duration_s is None else self.resting_w * duration_s


SPECK_ENERGY = SpeckEnergy(
    "speck",
    0.42e-3,
    (9.5e-3 - 3.8e-3) / 0.6e6,
    "resting 0.42 mW; 9.5 nJ/spike inferred from Yao et al., Nat. Commun. 2024 "
    "(spike counts assumed per second)",
    estimate=(
        "ESTIMATE: the Speck per-spike energy (9.5 nJ) is derived from published power figures (Yao et al., "
        "Nat. Commun. 2024: total power 9.5 -> 3.8 mW as spikes fell 1.0M -> 0.4M, assuming those counts "
        "are per second), not measured; derivation in asa_snn/chips/speck/energy.py."
    ),
)
"""The ``speck`` preset (an estimate; module docstring)."""
