"""Loihi's energy model: 23.6 pJ per synaptic op, 81 pJ per active and 52 pJ per inactive neuron
update (Davies et al., IEEE Micro 2018, Table 2, pre-silicon figures).

A neuron update counts as active in a step where the neuron fires (our assumption); MAC work (a
real-valued first layer, attention) is charged as synaptic ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from asa_snn.energy.model import LayerOps, mac_ops, neuron_updates, synaptic_ops


@dataclass(frozen=True)
class LoihiEnergy:
    """E = E_syn * (SOP + MAC) + E_active * active updates + E_inactive * inactive updates (pJ per op)."""

    name: str
    e_synop_pj: float
    e_active_update_pj: float
    e_inactive_update_pj: float
    source: str
    uses_duration: bool = False
    estimate: str = ""

    def layer_terms(self, layer: LayerOps) -> dict[str, float]:
        """{"synop_j", "neuron_j"} per sample; active = neuron-steps with a spike."""
        inactive = max(neuron_updates(layer) - layer.active_neuron_steps, 0.0)
        neuron = layer.active_neuron_steps * self.e_active_update_pj + inactive * self.e_inactive_update_pj
        synop = (synaptic_ops(layer) + mac_ops(layer)) * self.e_synop_pj
        return {"synop_j": synop * 1e-12, "neuron_j": neuron * 1e-12}

    def static_j(self, duration_s: float | None) -> float:
        """No static term: 0."""
        return 0.0


LOIHI_ENERGY = LoihiEnergy("loihi", 23.6, 81.0, 52.0, "Davies et al., IEEE Micro 2018, Table 2 (pre-silicon)")
"""The ``loihi`` preset."""
