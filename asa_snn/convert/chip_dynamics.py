"""The chips' own neuron dynamics in torch, for :class:`~asa_snn.convert.graph_model.GraphModel`.

Each strategy runs a layer of a graph the way the chip's integer simulator does, in the chip's
integer units, with exact forward values and straight-through gradients for every rounding, wrap
and saturation (spikes use the surrogate gradient of :mod:`asa_snn.models.surrogate`):

* :class:`SpeckDynamics` (``asa_snn/chips/speck/simulator.py``, time-stepped mode): input event
  counts as they are; per step ``v <- sat16(v + I + b)``, fire (``v >= theta``, or
  ``floor(v / theta)`` for multi-spike), reset (subtract or zero), ``v <- max(v, min_v)``.
* :class:`LoihiDynamics` (``asa_snn/chips/loihi/simulator.py``, netx CUBA): unary input (a pixel
  with any event in a step is one spike), one step of synaptic delay per conv / dense layer, and
  in units of 2^-6 weight: ``u <- wrap24(trunc(u (4096 - iDecay) / 4096) + 64 a)``,
  ``v <- clip24(trunc(v (4096 - vDecay) / 4096) + u + 64 b)``, spike when ``v > 64 theta``, then
  ``v <- 0``. ``iDecay = round(4096 du)``, ``vDecay = round(4096 dv)``.

The convert stage cannot import the chips; :data:`DYNAMICS` names these strategies by target, and
the tests hold them to the simulators spike for spike, layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from asa_snn.convert.graph import FoldedGraph, NeuronSpec
from asa_snn.errors import AsaSnnError
from asa_snn.models.firing import MultiSpike, SpikeAbove, SpikeAtOrAbove
from asa_snn.models.surrogate import PeriodicExponential, SingleExponential, surrogate_spike


def straight_through(x: Tensor, value: Tensor) -> Tensor:
    """``value`` forward, the gradient of ``x`` backward."""
    return x + (value - x).detach()


def truncate(x: Tensor) -> Tensor:
    """Round toward zero with an identity gradient."""
    return straight_through(x, torch.trunc(x))


class ChipDynamics(Protocol):
    """How a chip runs a graph: its input, its synaptic delay and its neurons (integer units)."""

    name: str
    delay: int
    bias_in_current: bool

    def input(self, frames: Tensor) -> Tensor:
        """The spikes the chip's first layer receives from event-count frames [T, B, C, H, W]."""
        ...

    def neuron(self, spec: NeuronSpec, layer: str, currents: Tensor, bias: Tensor | None) -> Tensor:
        """Spikes [T, B, ...] of integer neurons ``spec`` for integer currents [T, B, ...]."""
        ...


def _channel_bias(bias: Tensor | None, currents: Tensor) -> Tensor | float:
    if bias is None:
        return 0.0
    return bias.reshape(-1, *([1] * (currents.ndim - 3)))


@dataclass(frozen=True)
class SpeckDynamics:
    """Speck's IAF with a saturating ``state_bits`` membrane (module docstring)."""

    name: str = "speck"
    delay: int = 0
    bias_in_current: bool = True
    state_bits: int = 16

    def input(self, frames: Tensor) -> Tensor:
        """Event counts as they are (Speck takes every event)."""
        return frames

    def neuron(self, spec: NeuronSpec, layer: str, currents: Tensor, bias: Tensor | None) -> Tensor:
        """IAF over T with int16 saturation, fire, reset and floor; ``bias`` is already in ``currents``."""
        if spec.kind != "iaf":
            raise AsaSnnError(f"layer {layer!r}: Speck runs iaf neurons; found {spec.kind!r}")
        low, high = -(2 ** (self.state_bits - 1)), 2 ** (self.state_bits - 1) - 1
        theta = float(spec.threshold)
        fire = MultiSpike() if spec.multi_spike else SpikeAtOrAbove()
        surrogate = PeriodicExponential(0.5) if spec.multi_spike else SingleExponential(0.5)
        floor = None if spec.min_v is None else float(spec.min_v)
        v = torch.zeros_like(currents[0])
        spikes = []
        for current in currents:
            v = v + current
            v = straight_through(v, v.clamp(low, high))
            s = surrogate_spike(v, theta, fire, surrogate)
            v = v - s * theta if spec.reset == "subtract" else v * (1 - s.clamp(max=1))
            if floor is not None:
                v = straight_through(v, v.clamp(min=floor))
            spikes.append(s)
        return torch.stack(spikes)


@dataclass(frozen=True)
class LoihiDynamics:
    """Loihi's fixed-point CUBA neuron as netx runs it (module docstring)."""

    name: str = "loihi"
    delay: int = 1
    bias_in_current: bool = False
    decay_unity: int = 4096
    activation_shift: int = 6
    state_bits: int = 24

    def input(self, frames: Tensor) -> Tensor:
        """Unary spikes: 1 where a pixel had at least one event in the step."""
        return (frames > 0).to(frames.dtype)

    def neuron(self, spec: NeuronSpec, layer: str, currents: Tensor, bias: Tensor | None) -> Tensor:
        """Fixed-point CUBA over T in float64 (products stay exact below 2^53)."""
        if spec.kind != "cuba" or spec.du is None or spec.dv is None:
            raise AsaSnnError(f"layer {layer!r}: Loihi runs cuba neurons with du / dv; found {spec.kind!r}")
        limit = 2 ** (self.state_bits - 1)
        unit = float(2**self.activation_shift)
        keep_u = (self.decay_unity - round(spec.du * self.decay_unity)) / self.decay_unity
        keep_v = (self.decay_unity - round(spec.dv * self.decay_unity)) / self.decay_unity
        theta = float(spec.threshold) * unit
        dtype = currents.dtype
        currents = currents.double() * unit
        offset = _channel_bias(None if bias is None else bias.double() * unit, currents)
        surrogate = SingleExponential(0.5)
        u = torch.zeros_like(currents[0])
        v = torch.zeros_like(currents[0])
        spikes = []
        for current in currents:
            u = truncate(u * keep_u) + current
            wrapped = torch.where(u > limit, u - 2 * limit, torch.where(u <= -limit, u + 2 * limit, u))
            u = straight_through(u, wrapped)
            v = truncate(v * keep_v) + u + offset
            v = straight_through(v, v.clamp(-(limit - 1), limit - 1))
            s = surrogate_spike(v, theta, SpikeAbove(), surrogate)
            v = v * (1 - s)
            spikes.append(s)
        return torch.stack(spikes).to(dtype)


DYNAMICS: dict[str, ChipDynamics] = {"speck": SpeckDynamics(), "loihi": LoihiDynamics()}
"""The chip dynamics GraphModel knows, by target name."""


def dynamics_for(target: str) -> ChipDynamics:
    """The :class:`ChipDynamics` of ``target``.

    Raises:
        AsaSnnError: no chip dynamics for that target (lists the known ones).
    """
    if target not in DYNAMICS:
        raise AsaSnnError(f"chip dynamics for target {target!r}: unknown; expected one of {sorted(DYNAMICS)}")
    return DYNAMICS[target]


def drain_steps(dynamics: ChipDynamics, graph: FoldedGraph) -> int:
    """Steps the chip runs after a recording's last frame, without input, so that the frame reaches
    the output: ``delay`` per weighted (conv / linear) layer of ``graph``; 0 where the chip has no
    synaptic delay."""
    return dynamics.delay * sum("weight" in layer.tensors for layer in graph.layers)


def delayed(x: Tensor, steps: int) -> Tensor:
    """``x`` [T, B, ...] shifted later by ``steps`` time steps (zeros first, the last steps dropped)."""
    if steps <= 0:
        return x
    return torch.cat([torch.zeros_like(x[:steps]), x[:-steps]])
