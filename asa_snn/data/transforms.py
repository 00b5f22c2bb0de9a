"""Declarative wrappers around :mod:`asa_snn.data.frames` for data pipelines.

Each transform is a small frozen dataclass that stores its parameters and calls one array function.
Event transforms take an :class:`~asa_snn.data.events.EventStream` and return a new one (so a
downsampling step hands the new sensor size on); :class:`ToFrames` and :class:`ToFramesEqualCount`
end a pipeline and return float32 frames [T, P, H, W]. Randomized transforms own an
``np.random.Generator`` built from their ``seed``, so a pipeline replays exactly from its seeds.

Example::

    pipeline = Compose((Downsample(4), RandomTimeCrop(900_000, seed=0), ToFrames(15_000, 60)))
    frames = pipeline(stream)  # [60, 2, 32, 32] for a 128 x 128 sensor
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asa_snn.data import frames as F
from asa_snn.data.events import EventStream, SensorSize


def _with_events(
    stream: EventStream, events: np.ndarray, sensor_size: SensorSize | None = None
) -> EventStream:
    return EventStream(events, stream.sensor_size if sensor_size is None else sensor_size, stream.source)


def _own_rng(transform: object, seed: int | None) -> None:
    object.__setattr__(transform, "rng", np.random.default_rng(seed))


@dataclass(frozen=True)
class ToFrames:
    """Fixed-time-window frames (:func:`~asa_snn.data.frames.to_frames`), sensor size from the stream.

    Args:
        dt_us: window length in microseconds.
        n_steps: number of windows T.
        t_start_us: start of the first window in microseconds; None: the stream's first event.

    Call: EventStream -> float32 [T, P, H, W] counts.
    """

    dt_us: int
    n_steps: int
    t_start_us: int | None = None

    def __post_init__(self) -> None:
        F.check_positive_int("dt_us", self.dt_us)
        F.check_positive_int("n_steps", self.n_steps)

    def __call__(self, stream: EventStream) -> np.ndarray:
        return F.to_frames(stream.events, stream.sensor_size, self.dt_us, self.n_steps, self.t_start_us)


@dataclass(frozen=True)
class ToFramesEqualCount:
    """Frames of (nearly) equal event count (:func:`~asa_snn.data.frames.to_frames_equal_count`).

    Args:
        n_steps: number of slices T.

    Call: EventStream -> float32 [T, P, H, W] counts.
    """

    n_steps: int

    def __post_init__(self) -> None:
        F.check_positive_int("n_steps", self.n_steps)

    def __call__(self, stream: EventStream) -> np.ndarray:
        return F.to_frames_equal_count(stream.events, stream.sensor_size, self.n_steps)


@dataclass(frozen=True)
class Downsample:
    """Coordinate binning by ``factor`` (:func:`~asa_snn.data.frames.downsample`).

    Call: EventStream -> EventStream with sensor size ``(ceil(W/factor), ceil(H/factor), P)``.
    """

    factor: int

    def __post_init__(self) -> None:
        F.check_positive_int("factor", self.factor)

    def __call__(self, stream: EventStream) -> EventStream:
        events, sensor_size = F.downsample(stream.events, stream.sensor_size, self.factor)
        return _with_events(stream, events, sensor_size)


@dataclass(frozen=True)
class RandomTimeCrop:
    """A uniformly random window of ``duration_us`` microseconds
    (:func:`~asa_snn.data.frames.random_time_crop`).

    Args:
        duration_us: window length in microseconds.
        seed: seed of the transform's own ``rng``.

    Call: EventStream -> EventStream.
    """

    duration_us: int
    seed: int | None = None
    rng: np.random.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        F.check_positive_int("duration_us", self.duration_us)
        _own_rng(self, self.seed)

    def __call__(self, stream: EventStream) -> EventStream:
        return _with_events(stream, F.random_time_crop(stream.events, self.duration_us, self.rng))


@dataclass(frozen=True)
class EventDrop:
    """EventDrop augmentation (:func:`~asa_snn.data.frames.event_drop`).

    Args:
        seed: seed of the transform's own ``rng``.
        event_ratio: fraction of events removed by the random-drop mode, in [0, 1].
        time_ratio: fraction of the recording's span removed by the time-interval mode, in [0, 1].
        area_ratio: fraction of the sensor area removed by the box mode, in [0, 1].
        random_ratios: the three ratios are maxima; each sample's ratio is drawn uniformly in
            [0, ratio) from ``rng``.

    Call: EventStream -> EventStream.
    """

    seed: int | None = None
    event_ratio: float = 0.2
    time_ratio: float = 0.2
    area_ratio: float = 0.2
    random_ratios: bool = False
    rng: np.random.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("event_ratio", "time_ratio", "area_ratio"):
            F.check_ratio(name, getattr(self, name))
        if not isinstance(self.random_ratios, bool):
            raise TypeError(f"EventDrop: random_ratios is {self.random_ratios!r}; expected True or False")
        _own_rng(self, self.seed)

    def __call__(self, stream: EventStream) -> EventStream:
        events = F.event_drop(
            stream.events,
            stream.sensor_size,
            self.rng,
            self.event_ratio,
            self.time_ratio,
            self.area_ratio,
            self.random_ratios,
        )
        return _with_events(stream, events)


@dataclass(frozen=True)
class Compose:
    """Apply ``transforms`` in order: ``Compose((a, b))(x) == b(a(x))``."""

    transforms: Sequence[Callable[[Any], Any]]

    def __call__(self, stream: EventStream) -> Any:
        result: Any = stream
        for transform in self.transforms:
            result = transform(result)
        return result
