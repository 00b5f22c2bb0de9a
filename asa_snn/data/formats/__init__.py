"""Event file readers: one entry point, :func:`read_events`, that picks the format.

Each format is an :class:`EventFormat` (name, description, magic bytes or a header sniffer,
extensions, reader); the registry :data:`FORMATS` is the only place that lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asa_snn.data.events import EventStream, SensorSize, check_sensor_limit
from asa_snn.data.formats._common import PathLikeStr, existing_file
from asa_snn.data.formats.aedat import (
    AEDAT2_CAMERAS,
    AEDAT2_CHIPS,
    AEDAT2_MAGIC,
    AEDAT4_MAGIC,
    AEDAT31_MAGIC,
    guess_aedat2_camera,
    read_aedat2,
    read_aedat4,
    read_aedat31,
    read_aedat31_trials,
)
from asa_snn.data.formats.arrays import (
    HDF5_MAGIC,
    NPY_MAGIC,
    ZIP_MAGIC,
    read_hdf5,
    read_numpy,
    write_hdf5,
    write_numpy,
)
from asa_snn.data.formats.binary import read_nmnist_binary
from asa_snn.data.formats.prophesee import PROPHESEE_ENCODINGS, read_prophesee, sniff_prophesee
from asa_snn.errors import InputFormatError

__all__ = [
    "AEDAT2_CAMERAS",
    "AEDAT2_CHIPS",
    "FORMATS",
    "PROPHESEE_ENCODINGS",
    "SUPPORTED_FORMATS",
    "EventFormat",
    "detect_format",
    "guess_aedat2_camera",
    "read_aedat2",
    "read_aedat4",
    "read_aedat31",
    "read_aedat31_trials",
    "read_events",
    "read_hdf5",
    "read_nmnist_binary",
    "read_numpy",
    "read_prophesee",
    "write_hdf5",
    "write_numpy",
]

Reader = Callable[[Path, SensorSize | None], EventStream]
"""Reads a file, optionally forcing a sensor size (W, H, P)."""


@dataclass(frozen=True)
class EventFormat:
    """One supported event file format.

    Args:
        name: key used by ``read_events(format=...)`` and the CLI.
        description: one line for help texts.
        read: the reader.
        magic: first bytes that identify the format, or None when it has none.
        extensions: lower-case file suffixes that identify it when the magic does not.
        sniff: for a format without fixed first bytes, a test of the file's first
            :data:`SNIFF_BYTES` bytes (a text header naming the format), tried after every magic.
    """

    name: str
    description: str
    read: Reader
    magic: bytes | None = None
    extensions: tuple[str, ...] = ()
    sniff: Callable[[bytes], bool] | None = None


SNIFF_BYTES = 64 * 1024
"""Bytes :func:`detect_format` reads from the start of a file for the magic bytes and the sniffers."""


def _with_sensor_size(stream: EventStream, sensor_size: SensorSize | None) -> EventStream:
    """Re-check ``stream`` against a caller's sensor size (formats that store their own), which
    must respect :data:`~asa_snn.data.events.MAX_SENSOR_SIDE` like a stored one."""
    if sensor_size is None:
        return stream
    check_sensor_limit(sensor_size, f"{stream.source} (sensor_size given by the caller)")
    return EventStream(stream.events, sensor_size, stream.source)


def _read_aedat4(path: Path, sensor_size: SensorSize | None) -> EventStream:
    return _with_sensor_size(read_aedat4(path), sensor_size)


def _read_aedat31(path: Path, sensor_size: SensorSize | None) -> EventStream:
    return _with_sensor_size(read_aedat31(path), sensor_size)


def _read_aedat2(path: Path, sensor_size: SensorSize | None) -> EventStream:
    return _with_sensor_size(read_aedat2(path), sensor_size)


def _read_dat(path: Path, sensor_size: SensorSize | None) -> EventStream:
    return read_prophesee(path, "dat", sensor_size)


def _read_evt2(path: Path, sensor_size: SensorSize | None) -> EventStream:
    return read_prophesee(path, "evt2", sensor_size)


def _read_evt3(path: Path, sensor_size: SensorSize | None) -> EventStream:
    return read_prophesee(path, "evt3", sensor_size)


FORMATS: tuple[EventFormat, ...] = (
    EventFormat(
        "nmnist",
        "N-MNIST / N-Caltech101 binary, 5 bytes per event (.bin, .bs2)",
        read_nmnist_binary,
        extensions=(".bin", ".bs2"),
    ),
    EventFormat(
        "aedat4", "AEDAT 4.0 (iniVation DV), first event stream", _read_aedat4, AEDAT4_MAGIC, (".aedat4",)
    ),
    EventFormat("aedat3", "AEDAT 3.1 (cAER, DVS128 Gesture), polarity packets", _read_aedat31, AEDAT31_MAGIC),
    EventFormat(
        "aedat2",
        "AEDAT 2.0 (jAER: DVS128, DAVIS240, DAVIS346), big-endian address/timestamp",
        _read_aedat2,
        AEDAT2_MAGIC,
    ),
    EventFormat("npy", "NumPy .npy: structured t,x,y,p or [N, 4] t,x,y,p", read_numpy, NPY_MAGIC, (".npy",)),
    EventFormat("npz", "NumPy .npz: key 'events' (+ 'sensor_size')", read_numpy, ZIP_MAGIC, (".npz",)),
    EventFormat(
        "hdf5",
        "HDF5: dataset or group 'events' (+ attribute sensor_size)",
        read_hdf5,
        HDF5_MAGIC,
        (".h5", ".hdf5"),
    ),
    EventFormat(
        "dat",
        "Prophesee DAT (.dat), CD events, '% Data file containing' header, via expelliarmus",
        _read_dat,
        extensions=(".dat",),
        sniff=lambda head: sniff_prophesee(head) == "dat",
    ),
    EventFormat(
        "evt2",
        "Prophesee RAW EVT 2.0 (.raw, '% evt 2.0' header), via expelliarmus",
        _read_evt2,
        sniff=lambda head: sniff_prophesee(head) == "evt2",
    ),
    EventFormat(
        "evt3",
        "Prophesee RAW EVT 3.0 (.raw, '% evt 3.0' header), via expelliarmus, timestamps decoded here",
        _read_evt3,
        sniff=lambda head: sniff_prophesee(head) == "evt3",
    ),
)
"""Every supported format, in the order :func:`detect_format` tries their magic bytes, then their sniffers."""

SUPPORTED_FORMATS: dict[str, str] = {spec.name: spec.description for spec in FORMATS}
"""Format name -> one-line description."""

_BY_NAME = {spec.name: spec for spec in FORMATS}


def _unknown(what: str) -> InputFormatError:
    listing = "; ".join(f"{name}: {text}" for name, text in SUPPORTED_FORMATS.items())
    return InputFormatError(f"{what}. Supported formats: {listing}")


def detect_format(path: PathLikeStr) -> str:
    """Name of the format of ``path``: from its first bytes (magic bytes, then a text header such as
    Prophesee's ``% evt 3.0``), else from its extension.

    Raises:
        AsaSnnError: the file does not exist.
        InputFormatError: neither the first bytes nor the extension identify a supported
            format (the message lists them).
    """
    file = existing_file(path)
    with open(file, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    for spec in FORMATS:
        if spec.magic is not None and head.startswith(spec.magic):
            return spec.name
    for spec in FORMATS:
        if spec.sniff is not None and spec.sniff(head):
            return spec.name
    for spec in FORMATS:
        if file.suffix.lower() in spec.extensions:
            return spec.name
    raise _unknown(
        f"{file}: cannot tell the event file format from the extension '{file.suffix}' "
        f"or the first bytes {head[:16]!r}"
    )


def read_events(
    path: PathLikeStr, format: str | None = None, sensor_size: SensorSize | None = None
) -> EventStream:
    """Read an event file of any supported format.

    Args:
        path: the file.
        format: a key of :data:`SUPPORTED_FORMATS`, or None to use :func:`detect_format`.
        sensor_size: (W, H, P) to check the events against, at most
            :data:`~asa_snn.data.events.MAX_SENSOR_SIDE` pixels per side; None keeps the size the format
            stores or implies (AEDAT 2.0 files: camera from the jAER ``# AEChip:`` header line,
            DVS128 when there is none; Prophesee files: the header geometry, required when the
            header has none).

    Returns:
        EventStream, timestamps in microseconds.

    Raises:
        AsaSnnError: the file does not exist.
        InputFormatError: unknown format (the message lists the supported ones), or anything
            the format's reader rejects.
    """
    file = existing_file(path)
    name = detect_format(file) if format is None else format
    if name not in _BY_NAME:
        raise _unknown(f"{file}: unknown event file format '{name}'")
    return _BY_NAME[name].read(file, sensor_size)
