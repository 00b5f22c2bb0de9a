"""Helpers shared by the event file readers: file checks, sensor-size inference, the final wrap."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from asa_snn.data.events import EventStream, SensorSize, check_sensor_limit
from asa_snn.errors import AsaSnnError, InputFormatError

PathLikeStr = str | PathLike[str]
"""A file path given as a string or a path object."""

MAX_EXPANSION = 100
"""Most bytes a reader decodes per stored byte of compressed data (an ``.npz`` member, an HDF5
dataset, an AEDAT 4 recording). Event arrays compress a few times (sorted int64 timestamps,
small coordinates); deflate's own limit is about 1032, so a zip bomb's ratio lies far above."""

MIN_DECODED_BYTES = 16 * 2**20
"""Bytes (16 MiB) a reader may always decode, whatever the stored size: a small file with well
compressible content is never refused."""

MAX_DECODED_BYTES = 4 * 2**30
"""Most bytes (4 GiB, about 330 million 13-byte events) one file may decode to; split larger recordings."""


def existing_file(path: PathLikeStr) -> Path:
    """Return ``path`` as a :class:`Path`, raising :class:`AsaSnnError` naming it when it is not a file."""
    file = Path(path)
    if not file.is_file():
        raise AsaSnnError(f"{file}: no such event file (expected an existing regular file)")
    return file


def decoded_size_limit(stored_bytes: int) -> int:
    """Most bytes a reader may decode from ``stored_bytes`` stored (compressed) bytes.

    That is ``MAX_EXPANSION * stored_bytes``, at least :data:`MIN_DECODED_BYTES` and at most
    :data:`MAX_DECODED_BYTES`.
    """
    return min(MAX_DECODED_BYTES, max(MIN_DECODED_BYTES, MAX_EXPANSION * max(0, int(stored_bytes))))


def check_decoded_size(declared_bytes: int, stored_bytes: int, path: Path, what: str) -> None:
    """Refuse data that declares more bytes than its stored bytes can hold, before allocating.

    Args:
        declared_bytes: bytes the decoded data would take (shape x item size, uncompressed size).
        stored_bytes: bytes the file really stores for it (compressed size, allocated storage).
        path: the file, used in the message.
        what: names the data in the message, e.g. ``"member 'events.npy'"``.

    Raises:
        InputFormatError: ``declared_bytes`` exceeds :func:`decoded_size_limit` of ``stored_bytes``.
    """
    limit = decoded_size_limit(stored_bytes)
    if declared_bytes > limit:
        raise InputFormatError(
            f"{path}: {what} declares {declared_bytes} bytes of data stored in {stored_bytes} bytes; expected"
            f" at most {limit} ({MAX_EXPANSION}x the stored bytes, within [{MIN_DECODED_BYTES}, "
            f"{MAX_DECODED_BYTES}]): a decompression bomb or a corrupt size field"
        )


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
        InputFormatError: no events; a sensor (given or inferred) wider or taller than
            :data:`~asa_snn.data.events.MAX_SENSOR_SIDE`; an event outside the sensor; timestamps
            going backwards.
    """
    if len(events) == 0:
        raise InputFormatError(f"{path}: file contains no events")
    size = infer_sensor_size(events) if sensor_size is None else sensor_size
    check_sensor_limit(size, str(path) if sensor_size is not None else f"{path} (inferred from the events)")
    return EventStream(events, size, str(path))
