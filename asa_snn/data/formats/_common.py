"""Helpers shared by the event file readers: file checks, sensor-size inference, the final wrap."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from asa_snn.data.events import EventStream, SensorSize
from asa_snn.errors import AsaSnnError, InputFormatError

PathLikeStr = str | PathLike[str]
"""A file path given as a string or a path object."""


def existing_file(path: PathLikeStr) -> Path:
    """Return ``path`` as a :class:`Path`, raising :class:`AsaSnnError` naming it when it is not a file."""
    file = Path(path)
    if not file.is_file():
        raise AsaSnnError(f"{file}: no such event file (expected an existing regular file)")
    return file


def infer_sensor_size(events: np.ndarray) -> SensorSize:
    """Smallest sensor holding every event: (max x + 1, max y + 1, max(2, max p + 1)).

    Used only when neither the caller nor the file gives a sensor size; a recording whose
    brightest column or row saw no event gets a sensor that is too small by that margin.
    """
    return (int(events["x"].max()) + 1, int(events["y"].max()) + 1, max(2, int(events["p"].max()) + 1))


def finish(events: np.ndarray, sensor_size: SensorSize | None, path: Path) -> EventStream:
    """Wrap decoded events into a checked :class:`EventStream`.

    Args:
        events: [N] array of ``EVENT_DTYPE``, timestamps in microseconds.
        sensor_size: (W, H, P), or None to infer it with :func:`infer_sensor_size`.
        path: the file the events came from, used in messages.

    Raises:
        InputFormatError: no events; an event outside the sensor; timestamps going backwards.
    """
    if len(events) == 0:
        raise InputFormatError(f"{path}: file contains no events")
    size = infer_sensor_size(events) if sensor_size is None else sensor_size
    return EventStream(events, size, str(path))
