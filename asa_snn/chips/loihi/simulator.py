"""Built-in bit-accurate Loihi simulator: the netx layers of a folded graph, integer CUBA neurons.

The network simulated is exactly what :func:`asa_snn.chips.loihi.netx_export.write_netx` writes, so
this backend stands in for Lava's ``PyLifModelBitAcc`` (``Loihi2SimCfg(select_tag="fixed_pt")``)
where Lava cannot be installed (FACTS.md section 4).

Neuron, per step, all integers (int64), ``d_u = iDecay - 1`` and ``d_v = vDecay`` as netx sets them:

.. math::
    u[t] = \\mathrm{wrap}_{24}\\big(\\mathrm{trunc}(u[t-1] (4096 - d_u - 1) / 4096) + (a[t] \\ll 6)\\big) \\\\
    v[t] = \\mathrm{clip}\\big(\\mathrm{trunc}(v_r[t-1] (4096 - d_v) / 4096) + u[t] + (b \\ll 6),
           \\; -(2^{23} - 1), \\; 2^{23} - 1\\big) \\\\
    s[t] = [v[t] > v_{th} \\ll 6] \\quad (\\text{strict}), \\qquad v_r[t] = v[t] (1 - s[t])

``trunc`` rounds toward zero (``sign(x) * (|x| >> 12)``); ``u`` keeps its value after a spike.
``wrap_24`` is Lava's: ``x - 2^24`` when ``x > 2^23``, ``x + 2^24`` when ``x <= -2^23`` (a 24-bit
wrap into (-2^23, 2^23] for any ``x`` in (-3 * 2^23, 3 * 2^23]). ``b`` is the bias mantissa with
Lava's exponent 6.

Synapses: ``a_L[t] = W_L s_{L-1}[t-1]`` (Lava's Dense and Conv send the previous step's sums),
so every conv / dense layer adds one step. The input relay layer fires in the step of its frame.
Latency: a frame at step t first reaches the output layer at step ``t + n`` with ``n`` the
number of conv and dense layers. A recording of T frames therefore runs for ``T + n`` steps, the
last ``n`` without input (:func:`with_drain`), so that every frame reaches the output: spike
counts and outputs cover ``T + n`` steps. Lava runs the same steps
(:class:`~asa_snn.chips.loihi.lava_backend.LavaBackend`), and fine-tuning with the chip's dynamics
(:mod:`asa_snn.convert.chip_dynamics`) trains on them.
"""

from __future__ import annotations

import numpy as np

from asa_snn.chips.loihi.netx_export import DECAY_UNITY, CubaParams, NetxLayer, to_netx_layers
from asa_snn.convert.graph import FoldedGraph
from asa_snn.errors import InputFormatError
from asa_snn.simulators.base import SimulationResult, check_frames

UV_LIMIT = 2**23
DECAY_SHIFT = 12
ACTIVATION_SHIFT = 6
THRESHOLD_SHIFT = 6


def decay(x: np.ndarray, factor: int) -> np.ndarray:
    """``trunc(x * factor / 4096)``, truncating toward zero, on int64 arrays."""
    product = x * np.int64(factor)
    return np.sign(product) * (np.abs(product) >> DECAY_SHIFT)


def wrap_current(x: np.ndarray) -> np.ndarray:
    """Lava's 24-bit wrap of the current: ``x > 2^23 -> x - 2^24``, ``x <= -2^23 -> x + 2^24``."""
    x = np.where(x > UV_LIMIT, x - 2 * UV_LIMIT, x)
    return np.where(x <= -UV_LIMIT, x + 2 * UV_LIMIT, x)


def cuba_step(
    u: np.ndarray, v: np.ndarray, a: np.ndarray, bias: np.ndarray | int, params: CubaParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One bit-accurate CUBA update (module docstring): returns ``(u, v after reset, spikes)``.

    ``u, v, a`` are int64 arrays of one shape; ``bias`` broadcasts to it. Spikes are bool.
    """
    du = params.i_decay - 1
    u = wrap_current(decay(u, DECAY_UNITY - du - 1) + (a << ACTIVATION_SHIFT))
    v = decay(v, DECAY_UNITY - params.v_decay) + u + (np.asarray(bias, dtype=np.int64) << ACTIVATION_SHIFT)
    v = np.clip(v, -(UV_LIMIT - 1), UV_LIMIT - 1)
    spikes = v > (np.int64(params.vth_mant) << THRESHOLD_SHIFT)
    return u, np.where(spikes, 0, v), spikes


def conv2d_int(
    x: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Integer cross-correlation (torch ``conv2d`` order): x [B, C, H, W], weight [O, C, kH, kW].

    Returns int64 [B, O, H', W'].

    Sums are taken in float64 (exact while below 2^53) and returned as int64.
    """
    kh, kw = weight.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    windows = windows[:, :, :: stride[0], :: stride[1]]
    out = np.tensordot(windows.astype(np.float64), weight.astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))
    return np.rint(out).astype(np.int64).transpose(0, 3, 1, 2)


def synapse(layer: NetxLayer, spikes: np.ndarray) -> np.ndarray:
    """Weighted input sums of a conv or dense layer for input spikes [B, ...] -> int64 [B, *layer.shape]."""
    if layer.kind == "conv":
        return conv2d_int(spikes, layer.weight, layer.stride, layer.padding)
    flat = spikes.reshape(spikes.shape[0], -1).astype(np.float64)
    return np.rint(flat @ layer.weight.astype(np.float64).T).astype(np.int64)


def _bias(layer: NetxLayer) -> np.ndarray | int:
    if layer.bias is None:
        return 0
    return layer.bias.reshape(-1, *([1] * (len(layer.shape) - 1)))


def simulate_netx(layers: list[NetxLayer], frames: np.ndarray, record: bool = False) -> SimulationResult:
    """Run netx layers (relay input first) on integer event frames [B, T, C, H, W].

    A pixel with at least one event in a step makes its relay neuron spike in that step.

    Returns:
        SimulationResult (backend "loihi") with per-layer spike counts [B, T] and spike maps
        float64 [B, *shape] (summed over T) for every layer after the relay, outputs [B, T, K] of
        the last layer, and spike trains [T, B, *shape] when ``record``.
    """
    batch, steps = frames.shape[:2]
    relay_bias = (frames > 0).astype(np.int64)
    spiking = [layer for layer in layers if layer.neuron is not None]
    state = {layer.name: [np.zeros((batch, *layer.shape), np.int64) for _ in range(3)] for layer in spiking}
    counts = {layer.name: np.zeros((batch, steps), np.int64) for layer in spiking[1:]}
    maps = {layer.name: np.zeros((batch, *layer.shape), np.float64) for layer in spiking[1:]}
    trains = (
        {layer.name: np.zeros((steps, batch, *layer.shape), np.uint8) for layer in spiking[1:]}
        if record
        else {}
    )
    outputs = np.zeros((batch, steps, int(np.prod(spiking[-1].shape))), np.int64)
    for t in range(steps):
        previous = np.zeros(0)
        for index, layer in enumerate(layers):
            if layer.kind == "flatten":
                previous = previous.reshape(batch, -1)
                continue
            u, v, pending = state[layer.name]
            if index == 0:
                a, bias = pending, relay_bias[:, t]
            else:
                a, bias = pending, _bias(layer)
                pending = synapse(layer, previous)
            u, v, spikes = cuba_step(u, v, a, bias, layer.neuron)
            state[layer.name] = [u, v, pending]
            previous = spikes.astype(np.int64)
            if index > 0:
                counts[layer.name][:, t] = previous.reshape(batch, -1).sum(axis=1)
                maps[layer.name] += previous
                if record:
                    trains[layer.name][t] = spikes
        outputs[:, t] = previous.reshape(batch, -1)
    return SimulationResult(
        backend="loihi", spike_counts=counts, outputs=outputs, spike_trains=trains, spike_maps=maps
    )


def latency_steps(layers: list[NetxLayer]) -> int:
    """Steps from a frame to its first effect on the output layer: the number of conv / dense layers."""
    return sum(layer.kind in ("conv", "dense") for layer in layers)


def with_drain(frames: np.ndarray, layers: list[NetxLayer]) -> np.ndarray:
    """``frames`` [B, T, C, H, W] followed by :func:`latency_steps` empty frames: [B, T + n, C, H, W]."""
    drain = np.zeros((frames.shape[0], latency_steps(layers), *frames.shape[2:]), frames.dtype)
    return np.concatenate([frames, drain], axis=1)


def integer_frames(frames: np.ndarray) -> np.ndarray:
    """Event-count frames as int64; non-integer counts are an error (Loihi input is spikes)."""
    if not np.all(frames == np.floor(frames)):
        raise InputFormatError("loihi simulator input frames must hold integer event counts, found fractions")
    return frames.astype(np.int64)


class LoihiSimulator:
    """Bit-accurate Loihi CUBA simulation of the netx export of a folded graph (backend ``loihi``)."""

    name = "loihi"

    def unavailable_reason(self) -> str | None:
        """Always available: pure NumPy."""
        return None

    def run(self, graph: FoldedGraph, frames: np.ndarray, record: bool = False) -> SimulationResult:
        """Simulate ``graph`` on frames [B, T, C, H, W] of event counts for ``T + n`` steps, the
        last n (:func:`latency_steps`) without input; see the module docstring."""
        frames = integer_frames(check_frames(graph, np.asarray(frames)))
        layers = to_netx_layers(graph)
        result = simulate_netx(layers, with_drain(frames, layers), record)
        latency = latency_steps(layers)
        result.notes.append(
            f"latency {latency} steps: a frame at step t first reaches the output at t + {latency} "
            f"(one step per conv / dense synapse); ran {frames.shape[1]} + {latency} steps, the last "
            f"{latency} without input, so that every frame reaches the output"
        )
        if frames.max(initial=0) > 1:
            result.notes.append(
                "input counts above 1 were clipped to one spike per pixel and step (unary spikes)"
            )
        if not graph.quantized:
            result.notes.append(
                "float graph: weights, biases and thresholds scaled by 64 and rounded (netx units)"
            )
        return result
