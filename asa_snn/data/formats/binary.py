"""N-MNIST / N-Caltech101 binary files (``.bin``, ``.bs2``): 5 bytes per event.

Layout of one record (Orchard et al. 2015, the N-MNIST and N-Caltech101 download pages)::

    byte 0      x (uint8)
    byte 1      y (uint8); y == 240 marks a timestamp overflow, not an event
    byte 2      bit 7 polarity, bits 6-0 timestamp bits 22-16
    bytes 3, 4  timestamp bits 15-0 (big-endian), microseconds

Decoding is delegated to ``tonic.io.read_mnist_file``, which drops the overflow markers and adds
2**13 us to every later timestamp per marker, as Orchard's reference reader does.
"""

from __future__ import annotations

import numpy as np

from asa_snn.data.events import EventStream, SensorSize, as_event_array
from asa_snn.data.formats._common import PathLikeStr, existing_file, finish, infer_sensor_size
from asa_snn.errors import InputFormatError

RECORD_BYTES = 5
"""Size of one N-MNIST record in bytes."""

NMNIST_SENSOR_SIZE: SensorSize = (34, 34, 2)
"""(W, H, P) of N-MNIST (28x28 digits on a 34x34 ATIS crop)."""

_TONIC_FIELDS = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "i1")])


def read_nmnist_binary(path: PathLikeStr, sensor_size: SensorSize | None = None) -> EventStream:
    """Read an N-MNIST or N-Caltech101 binary file.

    Args:
        path: ``.bin`` / ``.bs2`` file.
        sensor_size: (W, H, P). When None: (34, 34, 2) if every event fits (N-MNIST), otherwise
            inferred as (max x + 1, max y + 1, 2), because N-Caltech101 images have no fixed size.

    Returns:
        EventStream with timestamps in microseconds, in file order (the format stores them
        non-decreasing; a file where they go backwards is rejected).

    Raises:
        InputFormatError: the byte count is not a multiple of 5 (the message gives the offset of
            the incomplete trailing record), the file holds no events, an event lies outside
            ``sensor_size``, or timestamps go backwards.
    """
    file = existing_file(path)
    size = file.stat().st_size
    if size % RECORD_BYTES:
        raise InputFormatError(
            f"{file}: {size} bytes is not a multiple of the {RECORD_BYTES}-byte N-MNIST record; "
            f"incomplete record at byte offset {size - size % RECORD_BYTES}"
        )
    from tonic.io import read_mnist_file

    events = as_event_array(read_mnist_file(str(file), dtype=_TONIC_FIELDS), str(file))
    if sensor_size is None and len(events):
        fits = all(
            int(events[name].max()) < limit for name, limit in zip("xyp", NMNIST_SENSOR_SIZE, strict=True)
        )
        sensor_size = NMNIST_SENSOR_SIZE if fits else infer_sensor_size(events)
    return finish(events, sensor_size, file)
