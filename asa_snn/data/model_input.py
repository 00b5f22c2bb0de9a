"""The preprocessing contract: how a recording becomes a model's input, for every consumer.

An :class:`InputSpec` is plain data that names every step between a sensor's events and the
[T, C, H, W] tensor a model (or a chip) receives. Training writes one from its data config, the
folded graph carries it, and :func:`frames_for` is the one function that applies it, in training
evaluation, ``simulate``, ``budget``, ``deploy`` and the demo alike. The steps, in order::

    1. check     the recording's sensor (W, H) equals ``sensor_size``
    2. bin       x <- x // downsample, y <- y // downsample  (sensor ceil(W/d) x ceil(H/d))
    3. augment   optional event augmentation (training only: random time crop, EventDrop)
    4. slice     time:  step = floor((t - t_first) / dt_us)
                 count: the events in time order cut into n_steps slices of (nearly) equal count
    5. crop      keep top <= y < top + H and left <= x < left + W, shift to the crop's origin
    6. polarity  "separate": channel = p;  "merged": channel = 0 (counts of both polarities summed)
    7. limit     with ``max_count`` set, only the first ``max_count`` events (in time order) of
                 each (step, channel, y, x) are kept; the rest are dropped (1: binary frames)
    8. count     frames[step, channel, y, x] += 1 for 0 <= step < n_steps

Frames hold per-pixel event COUNTS (float32), at most ``max_count`` each where it is set. A chip that
takes at most one event per pixel and step (Loihi's unary input) sees counts through its own input
rule; a model trained with ``max_count = 1`` sees exactly what such a chip receives.

A spec is checked on construction, so a hand-edited one (a folded graph's ``input``) is refused
before :func:`frames_for` allocates anything: integer fields are integers (``4.5`` is an error, not
``4``), sides at most :data:`~asa_snn.data.events.MAX_SENSOR_SIDE`, ``n_steps`` at most
:data:`MAX_STEPS`, ``dt_us`` at most :data:`MAX_DT_US`, and one recording's frames
T x C x H x W at most :data:`MAX_FRAME_VALUES` values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asa_snn.data.events import MAX_SENSOR_SIDE, EventStream
from asa_snn.data.frames import count_events, downsample, equal_count_sizes, window_starts
from asa_snn.errors import InputFormatError

POLARITY_MODES = ("separate", "merged")
SLICING_MODES = ("time", "count", "frames")
NOMINAL_STEP_US = 1000
"""Step length assumed for input that is not time-sliced wherever a rate per second is needed
(streaming equal-count slices to a chip, per-second budgets)."""
EventAugment = Callable[[EventStream], EventStream]
"""An event augmentation: EventStream -> EventStream with the same sensor size."""

MAX_STEPS = 10_000
"""Most time steps T an input spec may ask for (as a training config's ``data.n_steps``); the paper's
longest recipe has 60."""

MAX_DT_US = 3_600_000_000
"""Longest step ``dt_us``: one hour in microseconds (as a training config's ``data.dt_us``)."""

MAX_FRAME_VALUES = 2**28
"""Most values T x C x H x W of one recording's frames (1 GiB of float32 counts), checked before
:func:`frames_for` allocates them; the paper's largest input, 60 steps of 2 x 128 x 128, has 2.0M."""

_TUPLE_SIZES = {"shape": 3, "sensor_size": 3, "crop": 4}
"""Tuple fields of :class:`InputSpec` and their lengths."""


@dataclass(frozen=True)
class InputSpec:
    """What turns a recording into the model's input (module docstring, steps 1-8).

    Attributes:
        shape: (C, H, W) of one input frame, what the first layer receives per step.
        sensor_size: (W, H, P) of the event sensor the recordings come from.
        downsample: coordinate binning factor d >= 1 (step 2).
        polarity: ``"separate"`` (C = P) or ``"merged"`` (C = 1).
        dt_us: frame length in microseconds for ``slicing="time"``; None otherwise.
        n_steps: time steps T per inference.
        slicing: ``"time"`` (fixed dt_us windows from the first event), ``"count"`` (T slices of
            equal event count) or ``"frames"`` (the dataset ships frames; no event recording fits).
        crop: (top, left, height, width) in binned pixels, or None for the whole binned sensor.
        max_count: most events counted per pixel, channel and step (step 7; 1 = binary frames), or
            None for no limit.
    """

    shape: tuple[int, int, int]
    sensor_size: tuple[int, int, int]
    downsample: int = 1
    polarity: str = "separate"
    dt_us: int | None = 1000
    n_steps: int = 16
    slicing: str = "time"
    crop: tuple[int, int, int, int] | None = None
    max_count: int | None = None

    def __post_init__(self) -> None:
        for name, size in _TUPLE_SIZES.items():
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, list | tuple) or len(value) != size:
                    raise InputFormatError(f"input.{name} is {value!r}; expected {size} integers")
                object.__setattr__(
                    self, name, tuple(_integer(v, f"input.{name}[{i}]") for i, v in enumerate(value))
                )
        for name in ("downsample", "n_steps", "dt_us", "max_count"):
            value = getattr(self, name)
            if value is not None or name not in ("dt_us", "max_count"):
                object.__setattr__(self, name, _integer(value, f"input.{name}"))
        for name in ("polarity", "slicing"):
            if not isinstance(getattr(self, name), str):
                raise InputFormatError(f"input.{name} is {getattr(self, name)!r}; expected a string")
        _check_spec(self)

    @property
    def binned_size(self) -> tuple[int, int]:
        """(H, W) of the sensor after binning by ``downsample``."""
        width, height = self.sensor_size[:2]
        return math.ceil(height / self.downsample), math.ceil(width / self.downsample)

    @property
    def step_us(self) -> int:
        """Microseconds of one step: ``dt_us``, or :data:`NOMINAL_STEP_US` unless time-sliced."""
        return self.dt_us if self.slicing == "time" and self.dt_us else NOMINAL_STEP_US

    @property
    def duration_us(self) -> int | None:
        """Length of one inference in microseconds (``n_steps * dt_us``), None unless time-sliced."""
        return self.n_steps * self.dt_us if self.slicing == "time" and self.dt_us else None


def _integer(value: object, name: str) -> int:
    """``value`` as an int when it is one (NumPy integers too; not bools, not 4.0), else an error
    naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputFormatError(f"{name} is {value!r} ({type(value).__name__}); expected an integer")
    return int(value)


def _check_bounds(spec: InputSpec) -> None:
    """Sizes inside the module's limits (module docstring), so nothing huge is ever allocated."""
    sides = {"input.shape[1]": spec.shape[1], "input.shape[2]": spec.shape[2]}
    sides |= {"input.sensor_size[0]": spec.sensor_size[0], "input.sensor_size[1]": spec.sensor_size[1]}
    sides |= {"input.downsample": spec.downsample}
    for name, value in sides.items():
        if value > MAX_SENSOR_SIDE:
            raise InputFormatError(
                f"{name} is {value}; expected at most {MAX_SENSOR_SIDE} (MAX_SENSOR_SIDE, the largest sensor)"
            )
    if spec.n_steps > MAX_STEPS:
        raise InputFormatError(f"input.n_steps is {spec.n_steps}; expected at most {MAX_STEPS} (MAX_STEPS)")
    if spec.dt_us is not None and spec.dt_us > MAX_DT_US:
        raise InputFormatError(f"input.dt_us is {spec.dt_us}; expected at most {MAX_DT_US} (one hour)")
    values = spec.n_steps * math.prod(spec.shape)
    if values > MAX_FRAME_VALUES:
        raise InputFormatError(
            f"input.n_steps x input.shape = {spec.n_steps} x {list(spec.shape)} is {values:,} values per "
            f"recording; expected at most {MAX_FRAME_VALUES:,} (MAX_FRAME_VALUES)"
        )


def _check_spec(spec: InputSpec) -> None:
    """Raise :class:`InputFormatError` naming the field unless ``spec`` is self-consistent."""
    if spec.polarity not in POLARITY_MODES:
        raise InputFormatError(f"input.polarity {spec.polarity!r} unknown; expected one of {POLARITY_MODES}")
    if spec.slicing not in SLICING_MODES:
        raise InputFormatError(f"input.slicing {spec.slicing!r} unknown; expected one of {SLICING_MODES}")
    if len(spec.shape) != 3 or min(spec.shape) < 1 or len(spec.sensor_size) != 3 or min(spec.sensor_size) < 1:
        raise InputFormatError(
            f"input.shape {spec.shape} and input.sensor_size {spec.sensor_size} must be 3 positive integers"
        )
    if spec.downsample < 1 or spec.n_steps < 1:
        raise InputFormatError(
            f"input.downsample {spec.downsample} and input.n_steps {spec.n_steps} must be >= 1"
        )
    _check_bounds(spec)
    if spec.slicing == "time" and (spec.dt_us is None or spec.dt_us < 1):
        raise InputFormatError(f"input.dt_us {spec.dt_us} must be >= 1 microsecond for slicing 'time'")
    if spec.max_count is not None and spec.max_count < 1:
        raise InputFormatError(f"input.max_count {spec.max_count} must be >= 1 event, or None for no limit")
    if spec.slicing == "frames":
        if spec.max_count is not None:
            raise InputFormatError(
                f"input.max_count {spec.max_count} needs event recordings; slicing 'frames' takes pre-made "
                "frames, which are not re-counted"
            )
        return
    channels = spec.sensor_size[2] if spec.polarity == "separate" else 1
    height, width = spec.binned_size
    top, left, crop_h, crop_w = spec.crop if spec.crop is not None else (0, 0, height, width)
    if top < 0 or left < 0 or top + crop_h > height or left + crop_w > width:
        raise InputFormatError(
            f"input.crop {spec.crop} (top, left, height, width) does not lie inside the binned sensor "
            f"{height}x{width}"
        )
    if spec.shape != (channels, crop_h, crop_w):
        raise InputFormatError(
            f"input.shape {spec.shape} does not follow from sensor {spec.sensor_size}, downsample "
            f"{spec.downsample}, crop {spec.crop} and polarity {spec.polarity!r}: expected "
            f"{(channels, crop_h, crop_w)}"
        )


def centre_crop(binned: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a ``size`` = (H, W) crop centred in ``binned`` = (H, W), the
    way training crops (offsets rounded down).

    Raises:
        InputFormatError: the crop is larger than the binned sensor.
    """
    (height, width), (crop_h, crop_w) = binned, size
    if crop_h > height or crop_w > width:
        raise InputFormatError(f"crop {list(size)} is larger than the binned sensor (H, W) = {binned}")
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def check_sensor(spec: InputSpec, stream: EventStream) -> None:
    """Step 1: raise :class:`InputFormatError` naming the recording unless its sensor (W, H) and
    polarity count fit ``spec``."""
    if spec.slicing == "frames":
        raise InputFormatError(
            f"{stream.source}: this model was trained on pre-made frames (slicing 'frames'); "
            "it takes no event recording"
        )
    if tuple(stream.sensor_size[:2]) != tuple(spec.sensor_size[:2]):
        raise InputFormatError(
            f"{stream.source}: sensor {stream.sensor_size[0]}x{stream.sensor_size[1]} but the model "
            f"expects recordings of a {spec.sensor_size[0]}x{spec.sensor_size[1]} sensor (its input spec)"
        )
    if stream.sensor_size[2] > spec.sensor_size[2]:
        raise InputFormatError(
            f"{stream.source}: {stream.sensor_size[2]} polarities but the model expects {spec.sensor_size[2]}"
        )


def slice_steps(spec: InputSpec, events: np.ndarray, t_start_us: int | None = None) -> np.ndarray:
    """Step 4: int64 [N] step index of each event (may lie outside [0, n_steps)).

    ``t_start_us``: start of step 0 in microseconds for time slicing; None: the first event's time.
    """
    if spec.slicing == "count":
        sizes = equal_count_sizes(len(events), spec.n_steps)
        return np.repeat(np.arange(spec.n_steps, dtype=np.int64), sizes)
    if t_start_us is None:
        t_start_us = int(events["t"][0]) if len(events) else 0
    return np.floor_divide(events["t"] - np.int64(t_start_us), spec.dt_us)


@dataclass(frozen=True)
class ModelEvents:
    """A recording after steps 1-7: the events the model's input is counted from.

    Attributes:
        step: int64 [N] time step of each event, in [0, n_steps).
        channel, y, x: int64 [N] position in the input frame (C, H, W).
        t_us: int64 [N] microseconds from the recording's first event (after augmentation).
    """

    step: np.ndarray
    channel: np.ndarray
    y: np.ndarray
    x: np.ndarray
    t_us: np.ndarray


def model_events(
    spec: InputSpec,
    stream: EventStream,
    augment: EventAugment | None = None,
    t_start_us: int | None = None,
) -> ModelEvents:
    """Steps 1-7 of the contract (module docstring): the events of ``stream`` as the model sees them.

    Args:
        spec: the input spec.
        stream: a recording of the spec's sensor.
        augment: optional event augmentation applied after binning (training only).
        t_start_us: start of step 0 (time slicing); None: the first event's time.

    Raises:
        InputFormatError: the recording does not fit the spec (sensor, polarities).
    """
    check_sensor(spec, stream)
    events, sensor = stream.events, tuple(stream.sensor_size)
    if spec.downsample > 1:
        events, sensor = downsample(events, sensor, spec.downsample)
    if augment is not None:
        events = augment(EventStream(events, sensor, stream.source)).events
    step = slice_steps(spec, events, t_start_us)
    top, left, height, width = spec.crop if spec.crop is not None else (0, 0, *spec.binned_size)
    y = events["y"].astype(np.int64) - top
    x = events["x"].astype(np.int64) - left
    keep = (step >= 0) & (step < spec.n_steps) & (y >= 0) & (y < height) & (x >= 0) & (x < width)
    channel = events["p"].astype(np.int64) if spec.polarity == "separate" else np.zeros(len(events), np.int64)
    t_first = np.int64(events["t"][0]) if len(events) else np.int64(0)
    t_us = events["t"].astype(np.int64) - t_first
    found = ModelEvents(step[keep], channel[keep], y[keep], x[keep], t_us[keep])
    return found if spec.max_count is None else limit_per_pixel(found, spec.shape, spec.max_count)


def limit_per_pixel(found: ModelEvents, shape: tuple[int, int, int], max_count: int) -> ModelEvents:
    """Step 7: keep the first ``max_count`` events (by time, ties in recording order) of each
    (step, channel, y, x) of ``found``, whose positions lie in ``shape`` = (C, H, W)."""
    _, height, width = shape
    cell = ((found.step * shape[0] + found.channel) * height + found.y) * width + found.x
    order = np.lexsort((found.t_us, cell))
    ranked = cell[order]
    first = np.ones(len(ranked), dtype=bool)
    first[1:] = ranked[1:] != ranked[:-1]
    position = np.arange(len(ranked))
    rank = position - np.maximum.accumulate(np.where(first, position, 0))
    keep = np.sort(order[rank < max_count])
    return ModelEvents(found.step[keep], found.channel[keep], found.y[keep], found.x[keep], found.t_us[keep])


def frames_for(
    spec: InputSpec,
    stream: EventStream,
    augment: EventAugment | None = None,
    t_start_us: int | None = None,
) -> np.ndarray:
    """The model input of one recording: float32 [T, C, H, W] event counts, at most
    ``spec.max_count`` each where it is set (module docstring).

    Args:
        spec: the input spec (a folded graph's ``input``, or training's).
        stream: a recording of the spec's sensor.
        augment: optional event augmentation applied after binning (training only).
        t_start_us: start of step 0 in microseconds (time slicing); None: the first event's time.

    Raises:
        InputFormatError: the recording does not fit the spec (sensor, polarities).
    """
    found = model_events(spec, stream, augment, t_start_us)
    return count_events(found.step, found.channel, found.y, found.x, (spec.n_steps, *spec.shape))


def window_frames(spec: InputSpec, stream: EventStream, n_windows: int) -> np.ndarray:
    """The paper's multi-window test input (FACTS.md section 2): ``n_windows`` windows of
    ``n_steps * dt_us`` microseconds spread over the recording
    (:func:`~asa_snn.data.frames.window_starts` over ``t_last - t_first + 1`` microseconds), each
    built by :func:`frames_for` from its start.

    Returns:
        float32 [N_windows, T, C, H, W].

    Raises:
        InputFormatError: the spec is not time-sliced, or the recording does not fit it.
    """
    if spec.slicing != "time":
        raise InputFormatError(f"multi-window evaluation needs time-sliced input, not {spec.slicing!r}")
    times = stream.events["t"]
    t_first = int(times[0]) if len(times) else 0
    span = int(times[-1]) - t_first + 1 if len(times) else 0
    starts = t_first + window_starts(span, spec.dt_us * spec.n_steps, n_windows)
    return np.stack([frames_for(spec, stream, t_start_us=int(start)) for start in starts])
