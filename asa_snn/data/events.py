"""The one event representation of the project.

An event recording is a structured NumPy array with the fields

==== ======= ===========================================================
name dtype   meaning
==== ======= ===========================================================
t    int64   timestamp in microseconds, non-decreasing
x    int16   column, 0 <= x < W
y    int16   row, 0 <= y < H
p    int8    polarity index, 0 <= p < P (0 = OFF, 1 = ON for two-polarity sensors)
==== ======= ===========================================================

plus a sensor size ``(W, H, P)``, carried together as an :class:`EventStream`. Every reader
returns one, every frame function and augmentation takes the array and the sensor size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asa_snn.errors import InputFormatError

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
"""Structured dtype of one event: t (us), x, y, p."""

SensorSize = tuple[int, int, int]
"""(W, H, P): width and height in pixels, number of polarities."""

MAX_SENSOR_SIDE = 4096
"""Largest width or height in pixels a sensor read from a file may have.

Larger than any event camera sold: the biggest have at most 1280 pixels per side (Sony / Prophesee
IMX636: 1280 x 720; Samsung DVS-Gen4: 1280 x 960; CelePixel CeleX-V: 1280 x 800). A file declaring
more is corrupt or hostile; refusing it keeps a 4096 x 4096 x 2 frame (32 Mi pixels) the largest
image built from one file.
"""


def check_sensor_limit(sensor_size: SensorSize, source: str = "<array>") -> None:
    """Raise :class:`InputFormatError` when ``sensor_size`` (W, H, P) is wider or taller than
    :data:`MAX_SENSOR_SIDE` pixels; the message names ``source``, the size and the limit."""
    width, height = int(sensor_size[0]), int(sensor_size[1])
    if max(width, height) > MAX_SENSOR_SIDE:
        raise InputFormatError(
            f"{source}: sensor size W x H = {width} x {height} exceeds the limit of {MAX_SENSOR_SIDE} x "
            f"{MAX_SENSOR_SIDE} pixels (larger than any event camera sold); expected a real sensor size"
        )


def make_events(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pack four equal-length 1-D arrays into an [N] array of :data:`EVENT_DTYPE`.

    Args:
        t: timestamps in microseconds, shape [N].
        x: columns, shape [N].
        y: rows, shape [N].
        p: polarity indices, shape [N] (booleans become 0 / 1).
    """
    columns = {"t": t, "x": x, "y": y, "p": p}
    lengths = {name: np.shape(values) for name, values in columns.items()}
    if len({shape for shape in lengths.values()}) != 1 or len(lengths["t"]) != 1:
        raise InputFormatError(f"event columns must be 1-D and of equal length, got shapes {lengths}")
    events = np.empty(len(t), dtype=EVENT_DTYPE)
    for name, values in columns.items():
        events[name] = np.asarray(values).astype(EVENT_DTYPE[name], copy=False)
    return events


def as_event_array(array: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Convert a structured array with fields t, x, y, p (any order, any integer or bool
    dtype) to :data:`EVENT_DTYPE`, checking that the values fit.

    Args:
        array: structured array, shape [N].
        source: name used in error messages (a file path, usually).

    Raises:
        InputFormatError: a field is missing, or a value does not fit its field.
    """
    names = array.dtype.names or ()
    missing = [name for name in EVENT_DTYPE.names if name not in names]
    if missing:
        raise InputFormatError(
            f"{source}: event array lacks field(s) {missing}; expected fields t, x, y, p, found {list(names)}"
        )
    for name in EVENT_DTYPE.names:
        column = np.asarray(array[name])
        if column.dtype.kind == "f":
            if not np.all(np.isfinite(column)) or np.any(column != np.round(column)):
                raise InputFormatError(f"{source}: field '{name}' holds non-integer values")
        elif column.dtype.kind not in "iub":
            raise InputFormatError(f"{source}: field '{name}' has dtype {column.dtype}, expected integers")
        info = np.iinfo(EVENT_DTYPE[name])
        if len(column) and (column.min() < info.min or column.max() > info.max):
            raise InputFormatError(
                f"{source}: field '{name}' has values in [{column.min()}, {column.max()}], "
                f"outside the range of {EVENT_DTYPE[name]}"
            )
    return make_events(array["t"], array["x"], array["y"], array["p"])


def check_events(events: np.ndarray, sensor_size: SensorSize, source: str = "<array>") -> None:
    """Raise :class:`InputFormatError` unless ``events`` is a valid recording for ``sensor_size``.

    Checks the dtype, non-decreasing timestamps, and that every x, y, p lies inside
    (W, H, P). The message names the source, the field, the first offending event index and
    its value.
    """
    if events.dtype != EVENT_DTYPE:
        raise InputFormatError(f"{source}: events have dtype {events.dtype}, expected {EVENT_DTYPE}")
    if len(sensor_size) != 3 or min(sensor_size) < 1:
        raise InputFormatError(
            f"{source}: sensor size must be (W, H, P) with positive entries, got {sensor_size}"
        )
    if len(events) == 0:
        return
    for name, limit in zip("xyp", sensor_size, strict=True):
        bad = np.flatnonzero((events[name] < 0) | (events[name] >= limit))
        if bad.size:
            i = int(bad[0])
            raise InputFormatError(
                f"{source}: event {i} has {name}={int(events[name][i])}, outside the sensor "
                f"(expected 0 <= {name} < {limit} for sensor size W,H,P={tuple(sensor_size)}); "
                f"{bad.size} event(s) out of range"
            )
    backwards = np.flatnonzero(np.diff(events["t"]) < 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise InputFormatError(
            f"{source}: timestamps go backwards at event {i} "
            f"({int(events['t'][i - 1])} us -> {int(events['t'][i])} us); sort the events by t"
        )


@dataclass(frozen=True)
class EventStream:
    """An event recording: an [N] array of :data:`EVENT_DTYPE` and its sensor size.

    Args:
        events: structured array, shape [N], timestamps in microseconds, non-decreasing.
        sensor_size: (W, H, P).
        source: where the events came from (file path), used in messages.
    """

    events: np.ndarray
    sensor_size: SensorSize
    source: str = "<array>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        check_events(self.events, self.sensor_size, self.source)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def duration_us(self) -> int:
        """Time from the first to the last event, in microseconds (0 for fewer than 2 events)."""
        if len(self.events) < 2:
            return 0
        return int(self.events["t"][-1] - self.events["t"][0])

    @property
    def rate_hz(self) -> float:
        """Mean event rate in events per second (0.0 when the duration is 0)."""
        return len(self.events) / (self.duration_us * 1e-6) if self.duration_us else 0.0
