"""Event-driven Speck simulation: the chip's order, events one at a time (the ``speck-events`` backend).

:class:`EventDriven` is a :class:`~asa_snn.chips.speck.simulator.SimulationMode` of
:class:`~asa_snn.chips.speck.simulator.SpeckSimulator`, with the same neuron and arithmetic
(int16 saturating state on a quantized graph, float64 on a float one). The chip processes events
one at a time and emits at most one spike per incoming event (FACTS.md section 3). Within step t
the input events of a layer are handled in order; each event adds its kernel column to the
neurons in its footprint, and each of those neurons that is then at or above threshold emits ONE
spike and resets. The spikes are the next layer's events of the same step, in the order emitted
(per event, ascending neuron index). The bias acts as one extra event at the start of each step
reaching every neuron of the layer. Input frames are expanded to events in raster order (C, H, W),
a pixel with count n giving n consecutive events. Multi-spike is impossible in this mode: a neuron
far above threshold emits one spike per event that reaches it (and stays charged under subtract
reset). Neurons not reached by an event are not checked.

It runs as a kernel compiled by numba (:func:`_layer_events`): one sample through one layer at a
time, events in order, the update of the positions one event reaches vectorised over output
channels; samples run in parallel threads. Integers are carried exactly in float32 where they stay
below 2^24 (:func:`event_carrier`). Its cost follows the events and spikes the model produces: on a
network whose neurons sit far above threshold (one spike per touch rather than at most one per
step) that can be tens of times the time-stepped model's spikes (benchmarks/README.md).

:func:`timed_run` runs one recording with its real timestamps instead of frames (events in time
order within each step, every spike carrying the time of the input event that caused it) and
reports the synaptic operations each layer's core receives, event by event: what the per-core
burst analysis (:mod:`asa_snn.workflows.bursts`) reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from asa_snn.chips.base import CoreLoad, TimedRun
from asa_snn.chips.speck.mapping import ChainStep, conv_geometry, pool_size, speck_chain
from asa_snn.chips.speck.simulator import (
    FLOAT32_EXACT,
    Arithmetic,
    FloatState,
    IafParams,
    IntegerState,
    _tensors,
    zero_reset,
)
from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.model_input import InputSpec, ModelEvents
from asa_snn.errors import InputFormatError


@dataclass(frozen=True)
class EventLayer:
    """A weight layer as the event kernel reads it: plain arrays, built once per run by :func:`event_layer`.

    A conv (a linear layer is a conv covering its input map) connects input address (c, y, x)
    (flat C, H, W) to output (f, oy, ox) through kernel tap (ky, kx) = (y + ph - oy * sh,
    x + pw - ox * sw) when that tap lies in the kernel, for every output channel f.

    Attributes:
        name: the layer.
        remap: int64 [n_source]: for each address the events arrive with (the previous spiking
            layer's output, or the input frames) the address in this layer's input map after the sum
            pooling and flattening in between, or -1 where pooling drops it (off the pooled map).
        reach: int64 [n_in]: how many output positions (oy, ox) input address (c, y, x) reaches.
        rows: int64 [n_in, R]: those positions as state rows oy * OW + ox, ascending (0-padded).
        taps: int64 [n_in, R]: the row of ``weight`` each one uses, (c * KH + ky) * KW + kx.
        weight: [C * KH * KW, lanes] in the carrier dtype, output channel last, zero-padded to
            ``lanes`` channels so the update of one position is a short vector loop.
        bias: [lanes] in the carrier (zeros without a bias); has_bias: whether the layer has one.
        f_out: output channels F; plane: OH * OW; output address = f * plane + row.
        neuron: (theta, low, high, floor) in the carrier: threshold, state limits, min_v (low if none).
        zero_reset: reset to zero (else by subtraction).
    """

    name: str
    remap: np.ndarray
    reach: np.ndarray
    rows: np.ndarray
    taps: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    has_bias: bool
    f_out: int
    plane: int
    neuron: tuple
    zero_reset: bool

    def packed(self) -> tuple:
        """The arrays and numbers as the tuple :func:`_layer_events` unpacks."""
        return (
            self.remap,
            self.reach,
            self.rows,
            self.taps,
            self.weight,
            self.bias,
            self.has_bias,
            self.f_out,
            self.plane,
            self.neuron,
            self.zero_reset,
        )


LANES = 16
"""Output channels are padded to a multiple of this, and updated in blocks of this many: one
AVX-512 float32 vector; a block of 8 measured as slow as one of 16 (the cost is per block)."""


def event_carrier(arithmetic: Arithmetic, magnitudes: list[float]) -> type:
    """The event kernel's number type: float64 for a float graph (the arithmetic of
    :class:`FloatState`); for a quantized graph float32 when it is exact, else int64.

    float32 is exact when every value is an integer below 2^24 in magnitude: the state is
    saturated to |v| <= 2^(bits-1), so v + w needs |w| <= 2^24 - 2^(bits-1); ``magnitudes``
    (largest |weight|, |bias|, theta, |min_v|) are checked against that. It updates twice as many
    neurons per vector instruction as int64 or float64.
    """
    if isinstance(arithmetic, FloatState):
        return np.float64
    return np.float32 if max(magnitudes) <= FLOAT32_EXACT - 2 ** (arithmetic.bits - 1) else np.int64


def _source_remap(steps: list[ChainStep], n_source: int) -> np.ndarray:
    """Addresses after the sum pooling and flattening ``steps``: (c, y, x) -> (c, y // kh, x // kw),
    -1 off the pooled map (the last rows / columns of an odd map); flatten keeps the address."""
    remap = np.arange(n_source, dtype=np.int64)
    for step in steps:
        if step.layer.op != "sumpool2d":
            continue
        (_, h, w), (kh, kw) = step.in_map, pool_size(step.layer)
        oh, ow = h // kh, w // kw
        ch, rest = np.divmod(np.maximum(remap, 0), h * w)
        y, x = np.divmod(rest, w)
        keep = (remap >= 0) & (y // kh < oh) & (x // kw < ow)
        remap = np.where(keep, (ch * oh + y // kh) * ow + x // kw, -1)
    return remap


@functools.lru_cache(maxsize=64)
def _conv_reach(
    in_map: tuple[int, int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Connectivity of a conv: for each input address (c, y, x) the output positions it reaches.

    Returns (reach [n_in], rows [n_in, R], taps [n_in, R], OH, OW): row oy * OW + ox ascending,
    tap (c * KH + ky) * KW + kx with oy * sh = y + ph - ky, ox * sw = x + pw - kx (0-padded).
    Kept for the next run with the same geometry (read-only arrays).
    """
    (c, h, w), (kh, kw), (sh, sw), (ph, pw) = in_map, kernel, stride, padding
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    ci, yi, xi = (
        a.reshape(-1, 1) for a in np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    )
    ky, kx = (a.reshape(1, -1) for a in np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij"))
    ny, nx = yi + ph - ky, xi + pw - kx
    oy, ox = ny // sh, nx // sw
    valid = (ny % sh == 0) & (nx % sw == 0) & (oy >= 0) & (oy < oh) & (ox >= 0) & (ox < ow)
    rows = np.where(valid, oy * ow + ox, oh * ow)
    order = np.argsort(rows, axis=1, kind="stable")[:, : max(int(valid.sum(axis=1).max(initial=0)), 1)]
    valid = np.take_along_axis(valid, order, 1)
    rows = np.where(valid, np.take_along_axis(rows, order, 1), 0)
    taps = np.broadcast_to((ci * kh + ky) * kw + kx, valid.shape[:1] + ky.shape[1:])
    taps = np.where(valid, np.take_along_axis(taps, order, 1), 0)
    tables = valid.sum(axis=1).astype(np.int64), rows.astype(np.int64), taps.astype(np.int64)
    for table in tables:
        table.flags.writeable = False
    return *tables, oh, ow


def event_layer(
    step: ChainStep, between: list[ChainStep], n_source: int, arithmetic: Arithmetic
) -> EventLayer:
    """The :class:`EventLayer` of weight layer ``step``, whose events come from a map of ``n_source``
    addresses through the pooling / flatten steps ``between``."""
    layer = step.layer
    weight, bias = _tensors(step, arithmetic)
    f, c, kh, kw = weight.shape
    geometry = {"stride": (1, 1), "padding": (0, 0)} if layer.op == "linear" else conv_geometry(layer)
    stride, padding = tuple(geometry["stride"]), tuple(geometry["padding"])
    reach, rows, taps, oh, ow = _conv_reach(tuple(step.in_map), (kh, kw), stride, padding)
    params = IafParams.from_spec(layer.name, step.neuron, arithmetic, allow_multi=False)
    largest = [np.abs(weight).max(initial=0), np.abs(bias if bias is not None else 0).max()]
    carrier = event_carrier(arithmetic, [*largest, abs(params.theta), abs(params.min_v or 0)])
    lanes = -(-f // LANES) * LANES
    channels_last = np.zeros((c, kh, kw, lanes), carrier)
    channels_last[..., :f] = np.transpose(weight, (1, 2, 3, 0))
    padded_bias = np.zeros(lanes, carrier)
    padded_bias[:f] = 0 if bias is None else bias
    if isinstance(arithmetic, IntegerState):
        low, high = -(2 ** (arithmetic.bits - 1)), 2 ** (arithmetic.bits - 1) - 1
    else:
        low, high = -np.inf, np.inf
    floor = low if params.min_v is None else params.min_v
    return EventLayer(
        name=layer.name,
        remap=_source_remap(between, n_source),
        reach=reach,
        rows=rows,
        taps=taps,
        weight=channels_last.reshape(c * kh * kw, lanes),
        bias=padded_bias,
        has_bias=bias is not None,
        f_out=f,
        plane=oh * ow,
        neuron=tuple(carrier(x) for x in (params.theta, low, high, floor)),
        zero_reset=params.reset is zero_reset,
    )


def event_layers(chain: list[ChainStep], arithmetic: Arithmetic) -> list[EventLayer]:
    """The weight layers of ``chain`` as :class:`EventLayer` (pooling and flatten folded into remaps)."""
    layers, between = [], []
    n_source = int(np.prod(chain[0].in_map)) if chain else 0
    for step in chain:
        if step.layer.op in ("sumpool2d", "flatten"):
            between.append(step)
            continue
        layers.append(event_layer(step, between, n_source, arithmetic))
        between, n_source = [], int(np.prod(step.layer.output_shape))
    return layers


def _frame_events(counts):
    """All samples' events from counts [T, B, n] (compiled by numba, :func:`_compiled`).

    Returns:
        (addresses int32 [E], offsets int64 [B, T + 1], whole): sample by sample, step by step, in
        raster order, a count k giving k consecutive events; sample b's step t is
        addresses[offsets[b, t]:offsets[b, t + 1]]; ``whole``: every count is a whole number
        >= 0 (else no events are made).
    """
    n_steps, batch, size = counts.shape
    offsets = np.zeros((batch, n_steps + 1), np.int64)
    whole, total = True, 0
    for b in range(batch):
        offsets[b, 0] = total
        for t in range(n_steps):
            for i in range(size):
                k = np.int64(counts[t, b, i])
                whole &= (k == counts[t, b, i]) & (k >= 0)
                total += k
            offsets[b, t + 1] = total
    if not whole:
        return np.empty(0, np.int32), offsets, whole
    addresses = np.empty(total, np.int32)
    n = 0
    for b in range(batch):
        for t in range(n_steps):
            for i in range(size):
                for _ in range(np.int64(counts[t, b, i])):
                    addresses[n] = i
                    n += 1
    return addresses, offsets, whole


DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
"""A 64-bit de Bruijn sequence: (2^i * DE_BRUIJN mod 2^64) >> 58 is different for each i in 0..63,
so :data:`BIT_INDEX` turns the lowest set bit of a word into its index without a loop."""


def _bit_index_table() -> np.ndarray:
    table = np.zeros(64, np.int64)
    for i in range(64):
        table[((1 << i) * int(DE_BRUIJN)) % 2**64 >> 58] = i
    return table


BIT_INDEX = _bit_index_table()
LANE_BITS = np.array([1 << j for j in range(LANES)], np.int64)
"""2^j for lane j of a block: a block's fired lanes summed as one mask, which LLVM vectorises."""


def _layer_events(addresses, offsets, layer, counts):
    """One sample through one layer (compiled by numba, :func:`_event_kernel`).

    Args:
        addresses: int32 [E] input events (addresses of the map they come from, before ``remap``).
        offsets: int64 [T + 1]; step t's events are addresses[offsets[t]:offsets[t + 1]].
        layer: :meth:`EventLayer.packed`.
        counts: int64 [T, F * plane], incremented by the spikes.

    Returns:
        (spikes int32 [S], offsets int64 [T + 1], causes int64 [S]): the spikes as events in the
        same form, in the order emitted (per incoming event, the bias first, ascending by address
        f * plane + row), and for each the index in ``addresses`` of the event that caused it
        (-1: the step's bias).

    An event updates each position it reaches block by block of :data:`LANES` output channels in
    one vectorised loop, which also sums the fired channels into a bit mask per position and block;
    an event where no neuron fired ends there. Otherwise the spikes are written channel by channel
    (lowest set bit of the masks' union first), each channel's firing positions in ascending row
    order. The bias is the same: an event whose positions are the whole map (position = row).
    """
    remap, reach, rows, taps, weight, bias, has_bias, f_out, plane, neuron, zero_reset = layer
    theta, low, high, floor = neuron
    zero = theta - theta
    width = weight.shape[1]
    vector = np.uint64(LANES)
    blocks = width // LANES
    lanes = np.uint64(width)  # unsigned offsets: no negative-index wraparound, so the lane loops vectorise
    row_at = rows.astype(np.uint64) * lanes
    tap_at = taps.astype(np.uint64) * lanes
    kernel = weight.reshape(-1)
    v = np.zeros(plane * width, weight.dtype)
    positions = max(plane, rows.shape[1])  # reached by one event (the bias: the whole map)
    masks = np.zeros(positions * blocks, np.int64)  # [position, block]: lanes fired by one event
    channel_bits = np.zeros(blocks, np.int64)  # the real channels (padding never emits)
    for f in range(f_out):
        channel_bits[f // LANES] |= LANE_BITS[f % LANES]
    active = np.zeros(positions, np.int64)  # positions of one event where a neuron fired
    active_rows = np.zeros(positions, np.int64)  # and their rows
    address = 0  # the current event's (typed before the loop; unused for the bias)
    most = positions * f_out  # spikes of one event (or of the bias) at most
    n_steps = offsets.shape[0] - 1
    out = np.empty(2 * addresses.shape[0] + most, np.int32)
    causes = np.empty(out.shape[0], np.int64)
    out_offsets = np.zeros(n_steps + 1, np.int64)
    n = 0
    for t in range(n_steps):
        start, e, bias_due = n, offsets[t], has_bias
        while True:
            if n + most > out.shape[0]:  # the only place ``out`` is rebound (none in the event loop)
                grown = np.empty(2 * out.shape[0] + most, np.int32)
                grown[:n] = out[:n]
                out = grown
                grown_causes = np.empty(grown.shape[0], np.int64)
                grown_causes[:n] = causes[:n]
                causes = grown_causes
            room = out.shape[0] - most
            while (bias_due or e < offsets[t + 1]) and n <= room:
                touched = 0
                # The bias and an event update neurons with the same lane loop written twice: one
                # loop over a chosen weight source was exact but 5-10 % slower (benchmarks/README.md,
                # "Event-driven mode")
                if bias_due:  # one event at the start of the step reaching every neuron
                    bias_due, cause, count = False, -1, plane
                    for i in range(plane):
                        at = np.uint64(i) * lanes
                        for block in range(blocks):
                            first = np.uint64(block) * vector
                            mask = 0
                            for j in range(vector):
                                u = min(max(v[at + first + j] + bias[first + j], low), high)
                                s = u >= theta
                                u = (zero if zero_reset else u - theta) if s else u
                                v[at + first + j] = max(u, floor)
                                mask += s * LANE_BITS[j]
                            masks[i * blocks + block] = mask
                            touched |= mask
                else:
                    address = remap[addresses[e]]
                    e += 1
                    if address < 0:
                        continue
                    cause, count = e - 1, reach[address]
                    for i in range(count):
                        at, tap = row_at[address, i], tap_at[address, i]
                        for block in range(blocks):
                            first = np.uint64(block) * vector
                            mask = 0
                            for j in range(vector):
                                u = min(max(v[at + first + j] + kernel[tap + first + j], low), high)
                                s = u >= theta
                                u = (zero if zero_reset else u - theta) if s else u
                                v[at + first + j] = max(u, floor)
                                mask += s * LANE_BITS[j]
                            masks[i * blocks + block] = mask
                            touched |= mask
                if touched == 0:
                    continue
                n_active = 0
                for i in range(count):  # the positions where a neuron fired, rows ascending
                    any_block = 0
                    for block in range(blocks):
                        any_block |= masks[i * blocks + block]
                    active[n_active] = i
                    active_rows[n_active] = i if cause < 0 else rows[address, i]
                    n_active += any_block != 0
                for block in range(blocks):  # emit by address: channel-major, then row
                    pending = 0
                    for k in range(n_active):
                        pending |= masks[active[k] * blocks + block]
                    pending &= channel_bits[block]
                    while pending:
                        lowest = pending & -pending
                        pending ^= lowest
                        j = BIT_INDEX[(np.uint64(lowest) * DE_BRUIJN) >> np.uint64(58)]
                        base = (block * LANES + j) * plane
                        for k in range(n_active):
                            out[n] = base + active_rows[k]
                            causes[n] = cause
                            n += (masks[active[k] * blocks + block] >> j) & 1
            if e == offsets[t + 1] and not bias_due:
                break
        for j in range(start, n):
            counts[t, out[j]] += 1
        out_offsets[t + 1] = n
    return out[:n], out_offsets, causes[:n]


@functools.cache
def _compiled(function: Callable) -> Callable:
    """``function`` (:func:`_layer_events`, :func:`_frame_events`) compiled by numba, imported here
    rather than at module import. The machine code is cached on disk next to this file
    (``__pycache__``): a process compiles it (a few seconds) only the first time after an install
    or an edit."""
    import numba

    return numba.njit(nogil=True, cache=True)(function)


def _event_kernel() -> Callable:
    """:func:`_layer_events` compiled."""
    return _compiled(_layer_events)


@dataclass(frozen=True)
class EventDriven:
    """Events one at a time, at most one spike per neuron and incoming event (see module doc).

    Args:
        threads: samples simulated at once (each sample is sequential); None: torch's thread
            count, the one the time-stepped mode's convolutions use.
    """

    name: str = "event-driven"
    threads: int | None = None

    def run(
        self, chain: list[ChainStep], frames: np.ndarray, arithmetic: Arithmetic
    ) -> dict[str, np.ndarray]:
        """Spike counts per spiking layer, int64 [T, B, n_out] (flat C, H, W), from frames [T, B, C, H, W]."""
        T, B = frames.shape[:2]
        addresses, offsets, whole = _compiled(_frame_events)(frames.reshape(T, B, -1))
        if not whole:
            raise InputFormatError("event-driven Speck simulation needs integer event counts per pixel")
        layers = event_layers(chain, arithmetic)
        if not layers:
            return {}
        # sample-major, so that each sample's counts are one block of memory; returned as [T, B, n]
        trains = {layer.name: np.zeros((B, T, layer.f_out * layer.plane), np.int64) for layer in layers}
        packed = [layer.packed() for layer in layers]
        kernel = _event_kernel()

        def sample(b: int) -> None:
            """Sample b through every layer, its spikes added to ``trains``."""
            events, steps = addresses[offsets[b, 0] : offsets[b, -1]], offsets[b] - offsets[b, 0]
            for layer, train in zip(packed, trains.values(), strict=True):
                events, steps, _ = kernel(events, steps, layer, train[b])

        threads = min(self.threads or torch.get_num_threads(), B)
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(sample, range(B)))
        else:
            for b in range(B):
                sample(b)
        return {name: np.swapaxes(train, 0, 1) for name, train in trains.items()}

    def notes(self, chain: list[ChainStep]) -> list[str]:
        """A remark where a multi-spike layer runs with one spike per incoming event."""
        if any(step.neuron and step.neuron.multi_spike for step in chain):
            return ["multi-spike layers emit one spike per incoming event (event-driven mode)"]
        return []


# ---------------------------------------------------------------- real timestamps


def _step_starts(spec: InputSpec, times_us: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Microseconds at which each step's bias event happens: t * dt (time slicing), else the time
    of the step's first event (that of the step before for an empty step)."""
    if spec.slicing == "time":
        return np.arange(spec.n_steps, dtype=np.int64) * spec.dt_us
    first = np.where(offsets[:-1] < len(times_us), offsets[:-1], max(len(times_us) - 1, 0))
    starts = times_us[first] if len(times_us) else np.zeros(spec.n_steps, np.int64)
    empty = offsets[:-1] == offsets[1:]
    return np.maximum.accumulate(np.where(empty, 0, starts)).astype(np.int64)


def timed_run(graph: FoldedGraph, events: ModelEvents, approximate: bool = False) -> TimedRun:
    """One recording through the event-driven model with its real timestamps.

    The input events are processed in time order (ties by position), step by step as the graph's
    input spec slices them; the model is :class:`EventDriven`'s, so with the events of each step
    in raster order it gives the same spikes as ``EventDriven`` on the recording's frames.

    Args:
        graph: a folded graph Speck runs (:func:`~asa_snn.chips.speck.mapping.speck_chain`).
        events: the recording as the model sees it (:func:`~asa_snn.data.model_input.model_events`).
        approximate: run lif neurons as iaf.

    Returns:
        Spike counts per layer and step, and per weight layer the synaptic operations of every
        event its core receives, with times (:class:`TimedRun`).
    """
    chain = speck_chain(graph, approximate=approximate)
    arithmetic = IntegerState() if graph.quantized else FloatState()
    layers = event_layers(chain, arithmetic)
    spec = graph.input
    order = np.lexsort((events.x, events.y, events.channel, events.t_us, events.step))
    _, height, width = spec.shape
    addresses = ((events.channel * height + events.y) * width + events.x)[order].astype(np.int32)
    times = events.t_us[order].astype(np.int64)
    steps = events.step[order]
    offsets = np.searchsorted(steps, np.arange(spec.n_steps + 1)).astype(np.int64)
    starts = _step_starts(spec, times, offsets)
    if spec.slicing == "time":
        duration = spec.n_steps * spec.dt_us
    else:
        duration = int(times[-1]) + 1 if len(times) else 0
    kernel = _event_kernel()
    counts: dict[str, np.ndarray] = {}
    loads: dict[str, CoreLoad] = {}
    for layer in layers:
        mapped = layer.remap[addresses]
        synops = np.where(mapped >= 0, layer.reach[np.maximum(mapped, 0)] * layer.f_out, 0)
        loads[layer.name] = CoreLoad(times, synops.astype(np.int64))
        train = np.zeros((spec.n_steps, layer.f_out * layer.plane), np.int64)
        addresses, offsets, causes = kernel(addresses, offsets, layer.packed(), train)
        counts[layer.name] = train
        step_of = np.repeat(np.arange(spec.n_steps), np.diff(offsets))
        caused = times[np.maximum(causes, 0)] if len(times) else np.zeros(len(causes), np.int64)
        times = np.where(causes >= 0, caused, starts[step_of])
    return TimedRun(counts, loads, int(duration))
