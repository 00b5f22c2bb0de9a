"""Built-in bit-accurate Speck simulator (numpy + torch convolutions, vectorised over the batch).

Each weight layer (conv2d, or linear run as a conv covering its input map) ends in non-leaky
IAF neurons with one threshold ``theta`` and one lower bound ``min_v`` per layer. On a quantized
graph the arithmetic is the chip's: integer weights and bias, a signed ``state_bits`` (int16)
membrane that saturates at [-2^15, 2^15 - 1]. A float graph runs in float64 without saturation.

Neuron, per update (sinabs ``IAF`` order: integrate, fire, reset, floor)::

    v <- sat(v + I)                              I: weighted input (+ bias once per step)
    s  = [v >= theta]                            single spike
    s  = floor(v / theta) if v > 0 else 0        multi spike (time-stepped mode only)
    v <- v - s * theta        (reset "subtract")  or  v <- 0 where s > 0  (reset "zero")
    v <- max(v, min_v)                            when the layer has min_v

Two modes (strategies passed to :class:`SpeckSimulator`):

* :class:`TimeStepped` (default): one update per step with I = conv(x_t) + bias, the way sinabs
  simulates Speck. It matches :class:`asa_snn.chips.speck.sinabs_backend.SinabsBackend` spike for
  spike while no membrane reaches the int16 limits (sinabs does not saturate).
* :class:`~asa_snn.chips.speck.event_driven.EventDriven`: the chip's order, events one at a time,
  at most one spike per neuron and incoming event (its own module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from asa_snn.chips.speck.mapping import STATE_BITS, ChainStep, conv_geometry, pool_size, speck_chain
from asa_snn.convert.graph import FoldedGraph, NeuronSpec
from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.simulators.base import SimulationResult, check_frames, spike_maps_of

# ---------------------------------------------------------------- arithmetic


@dataclass(frozen=True)
class IntegerState:
    """Signed ``bits``-bit membrane with saturation: sat(v) = clip(v, -2^(bits-1), 2^(bits-1) - 1)."""

    bits: int = STATE_BITS
    dtype: type = np.int32

    def saturate(self, v: np.ndarray) -> np.ndarray:
        """Clip to the state range."""
        return np.clip(v, -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1)

    def value(self, x: float, where: str) -> int:
        """An integer parameter (threshold, min_v); a fraction is an error naming ``where``."""
        if float(x) != round(float(x)):
            raise InputFormatError(f"{where} is {x}; a quantized graph needs an integer")
        return round(float(x))

    def currents(self, x: torch.Tensor, where: str) -> np.ndarray:
        """Exact integers from a float computation on integers (int32 from the float32 path,
        whose sums stay below 2^24; int64 from float64)."""
        array = x.numpy()
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise InputFormatError(f"{where}: input is not integer-valued in a quantized graph")
        return rounded.astype(np.int32 if array.dtype == np.float32 else np.int64)


@dataclass(frozen=True)
class FloatState:
    """float64 membrane, no saturation."""

    dtype: type = np.float64

    def saturate(self, v: np.ndarray) -> np.ndarray:
        """No limits."""
        return v

    def value(self, x: float, where: str) -> float:
        """A float parameter."""
        return float(x)

    def currents(self, x: torch.Tensor, where: str) -> np.ndarray:
        """The float64 array."""
        return x.numpy()


Arithmetic = IntegerState | FloatState


# ---------------------------------------------------------------- neuron functions


def single_spike(v: np.ndarray, theta: float) -> np.ndarray:
    """s = [v >= theta] (0 or 1), in v's dtype."""
    return (v >= theta).astype(v.dtype)


def multi_spike(v: np.ndarray, theta: float) -> np.ndarray:
    """s = floor(v / theta) for v > 0, else 0."""
    return np.where(v > 0, np.floor_divide(v, theta), 0).astype(np.int64)


def subtract_reset(v: np.ndarray, spikes: np.ndarray, theta: float) -> np.ndarray:
    """v - s * theta."""
    return v - spikes * theta


def zero_reset(v: np.ndarray, spikes: np.ndarray, theta: float) -> np.ndarray:
    """0 where s > 0, else v."""
    return np.where(spikes > 0, 0, v).astype(v.dtype)


RESETS: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "subtract": subtract_reset,
    "zero": zero_reset,
}


@dataclass(frozen=True)
class IafParams:
    """A layer's neuron in the simulator's arithmetic."""

    theta: float
    min_v: float | None
    reset: Callable[[np.ndarray, np.ndarray, float], np.ndarray]
    fire: Callable[[np.ndarray, float], np.ndarray]

    @classmethod
    def from_spec(cls, name: str, spec: NeuronSpec, arithmetic: Arithmetic, allow_multi: bool) -> IafParams:
        """Parameters of layer ``name``; multi-spike only where the mode allows it."""
        theta = arithmetic.value(spec.threshold, f"layer {name!r}: threshold")
        if theta <= 0:
            raise AsaSnnError(f"layer {name!r}: threshold {theta}; expected > 0")
        min_v = None if spec.min_v is None else arithmetic.value(spec.min_v, f"layer {name!r}: min_v")
        fire = multi_spike if spec.multi_spike and allow_multi else single_spike
        return cls(theta, min_v, RESETS[spec.reset], fire)

    def update(
        self, v: np.ndarray, current: np.ndarray, arithmetic: Arithmetic
    ) -> tuple[np.ndarray, np.ndarray]:
        """One integrate / fire / reset / floor update; returns (new v, spikes)."""
        v = arithmetic.saturate(v + current)
        spikes = self.fire(v, self.theta)
        v = self.reset(v, spikes, self.theta)
        if self.min_v is not None:
            v = np.maximum(v, self.min_v)
        return v, spikes


def _tensors(step: ChainStep, arithmetic: Arithmetic) -> tuple[np.ndarray, np.ndarray | None]:
    """Weight and bias as float64 arrays (integers checked in a quantized graph)."""
    layer = step.layer
    weight = np.asarray(layer.tensors["weight"], dtype=np.float64)
    bias = layer.tensors.get("bias")
    bias = None if bias is None else np.asarray(bias, dtype=np.float64)
    if isinstance(arithmetic, IntegerState):
        for key, value in (("weight", weight), ("bias", bias)):
            if value is not None and not np.array_equal(value, np.rint(value)):
                raise InputFormatError(f"layer {layer.name!r}: {key} holds fractions in a quantized graph")
    if layer.op == "linear":
        weight = weight.reshape(weight.shape[0], *step.in_map)
    return weight, bias


# ---------------------------------------------------------------- time-stepped mode


FLOAT32_EXACT = 2**24
"""float32 holds every integer of magnitude below 2^24 exactly."""


def _exact_in_float32(x: torch.Tensor, weight: np.ndarray) -> bool:
    """True when every partial sum of conv(x, weight) on integers stays below 2^24 in magnitude:
    max x * max over output channels of sum|W| < 2^24, so float32 gives the exact integers
    (x holds non-negative event or spike counts)."""
    largest_input = float(x.max()) if x.numel() else 0.0
    largest_fan_in = float(np.abs(weight).reshape(len(weight), -1).sum(axis=1).max())
    return largest_input * largest_fan_in < FLOAT32_EXACT


def _dense_op(step: ChainStep, x: torch.Tensor, arithmetic: Arithmetic) -> torch.Tensor:
    """The op of ``step`` on [N, C, H, W] counts (no bias); returns [N, C', H', W'].

    A quantized graph's conv runs in float32 when :func:`_exact_in_float32` proves the integer
    result exact (the common case: about 3x faster), else in float64; a float graph in float64.
    """
    layer = step.layer
    if layer.op == "sumpool2d":
        return F.avg_pool2d(x, pool_size(layer), divisor_override=1)
    if layer.op == "flatten":
        return x
    weight, _ = _tensors(step, arithmetic)
    kernel = torch.from_numpy(weight)
    if isinstance(arithmetic, IntegerState) and _exact_in_float32(x, weight):
        x, kernel = x.float(), kernel.float()
    else:
        x = x.double()
    geo = conv_geometry(layer) if layer.op == "conv2d" else {"stride": 1, "padding": 0}
    return F.conv2d(x, kernel, stride=geo["stride"], padding=geo["padding"])


@dataclass(frozen=True)
class TimeStepped:
    """One neuron update per time step: v <- sat(v + conv(x_t) + bias), fire, reset, floor."""

    name: str = "time-stepped"

    def run(
        self, chain: list[ChainStep], frames: np.ndarray, arithmetic: Arithmetic
    ) -> dict[str, np.ndarray]:
        """Spike counts per spiking layer, int64 [T, B, C, H, W], from frames [T, B, C, H, W].

        Each op reads its ``sources`` (the graph input for none); an ``add`` sums the spike counts
        of its two operands, which the weight layer reading it then convolves (a merge on the chip:
        both cores' events reach its core in the same step). An output is dropped after its last reader.
        """
        T, B = frames.shape[:2]
        carrier = np.float32 if isinstance(arithmetic, IntegerState) else np.float64
        outputs = {"": torch.from_numpy(np.ascontiguousarray(frames, dtype=carrier)).flatten(0, 1)}
        last_read = {source: i for i, step in enumerate(chain) for source in step.sources or ("",)}
        trains: dict[str, np.ndarray] = {}
        for i, step in enumerate(chain):
            sources = step.sources or ("",)
            read = [outputs[source] for source in sources]
            for source in sources:
                if last_read[source] == i:
                    outputs.pop(source, None)
            x = read[0] + read[1] if step.layer.op == "add" else _dense_op(step, read[0], arithmetic)
            outputs[step.layer.name] = x
            if step.neuron is None:
                continue
            name = step.layer.name
            currents = arithmetic.currents(x, f"layer {name!r}").reshape(T, B, *x.shape[1:])
            _, bias = _tensors(step, arithmetic)
            if bias is not None:
                currents = currents + bias.astype(currents.dtype).reshape(-1, 1, 1)
            params = IafParams.from_spec(name, step.neuron, arithmetic, allow_multi=True)
            v = np.zeros(currents.shape[1:], dtype=arithmetic.dtype)
            spikes = np.zeros(currents.shape, dtype=np.int64)
            for t in range(T):
                v, spikes[t] = params.update(v, currents[t], arithmetic)
            trains[name] = spikes
            outputs[name] = torch.from_numpy(spikes.reshape(T * B, *spikes.shape[2:]).astype(carrier))
        return trains

    def notes(self, chain: list[ChainStep]) -> list[str]:
        """No remark: this is the model sinabs simulates."""
        return []


class SimulationMode(Protocol):
    """How spikes are computed from the frames: :class:`TimeStepped` or
    :class:`~asa_snn.chips.speck.event_driven.EventDriven`."""

    name: str

    def run(
        self, chain: list[ChainStep], frames: np.ndarray, arithmetic: Arithmetic
    ) -> dict[str, np.ndarray]:
        """Spike counts per spiking layer [T, B, ...] from frames [T, B, C, H, W]."""

    def notes(self, chain: list[ChainStep]) -> list[str]:
        """Remarks on how this mode runs ``chain`` (for the result's notes)."""


# ---------------------------------------------------------------- backend


@dataclass
class SpeckSimulator:
    """The built-in Speck simulator as a :class:`asa_snn.simulators.base.Backend`.

    Args:
        mode: :class:`TimeStepped` (default) or :class:`~asa_snn.chips.speck.event_driven.EventDriven`.
        approximate: run lif neurons as iaf (with a warning) instead of refusing the graph.
    """

    mode: SimulationMode = field(default_factory=TimeStepped)
    approximate: bool = False
    name: str = "speck"

    def unavailable_reason(self) -> str | None:
        """Always available (numpy and torch only)."""
        return None

    def run(self, graph: FoldedGraph, frames: np.ndarray, record: bool = False) -> SimulationResult:
        """Simulate ``graph`` on ``frames`` [B, T, C, H, W] (input events per pixel and step).

        Returns:
            spike counts per spiking layer int64 [B, T], spike maps float64 [B, *output_shape]
            (summed over T), outputs [B, T, K] (last spiking layer), and with ``record`` spike
            trains int64 [T, B, *output_shape].

        Raises:
            AsaSnnError: a graph Speck cannot run (:func:`~asa_snn.chips.speck.mapping.speck_chain`),
                or a residual graph (``add``) in a mode other than :class:`TimeStepped`.
        """
        frames = check_frames(graph, np.asarray(frames))
        chain = speck_chain(graph, approximate=self.approximate)
        merges = [step.layer.name for step in chain if step.layer.op == "add"]
        if merges and not isinstance(self.mode, TimeStepped):
            raise AsaSnnError(
                f"layer {merges[0]!r}: the {self.mode.name} Speck mode runs layer chains only, not residual "
                "adds; simulate this graph with the time-stepped mode (the default)"
            )
        arithmetic = IntegerState() if graph.quantized else FloatState()
        trains = self.mode.run(chain, np.swapaxes(frames, 0, 1), arithmetic)
        notes = [f"mode: {self.mode.name}", "int16 saturating state" if graph.quantized else "float64 state"]
        notes += self.mode.notes(chain)
        return speck_result(self.name, graph, chain, trains, record, notes)


def speck_result(
    backend: str,
    graph: FoldedGraph,
    chain: list[ChainStep],
    trains: dict[str, np.ndarray],
    record: bool,
    notes: list[str],
) -> SimulationResult:
    """SimulationResult from spike trains [T, B, ...] per spiking layer (shared by the Speck-side backends):
    counts [B, T], spike maps [B, *output_shape] summed over T, outputs and (``record``) the trains.

    ``trains`` may hold linear layers as [T, B, F, 1, 1]; they are reshaped to ``output_shape``.
    """
    spiking = [step.layer for step in chain if step.neuron is not None]
    if not spiking:
        raise AsaSnnError("graph has no spiking layer to read the output from")
    shaped = {
        layer.name: trains[layer.name].reshape(*trains[layer.name].shape[:2], *layer.output_shape)
        for layer in spiking
    }
    counts = {name: np.swapaxes(t.reshape(*t.shape[:2], -1).sum(axis=2), 0, 1) for name, t in shaped.items()}
    last = shaped[spiking[-1].name]
    outputs = np.swapaxes(last.reshape(*last.shape[:2], -1), 0, 1)
    return SimulationResult(
        backend, counts, outputs, shaped if record else {}, notes, spike_maps=spike_maps_of(shaped)
    )
