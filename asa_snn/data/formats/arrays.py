"""Events stored as arrays: NumPy ``.npy`` / ``.npz`` and HDF5, read and written.

Layouts read (timestamps in microseconds):

- ``.npy``: a structured [N] array with integer fields t, x, y, p (any order), or an [N, 4]
  integer array with columns t, x, y, p.
- ``.npz``: key ``events`` (either layout above), optional key ``sensor_size`` ([3] integers W, H, P).
- HDF5: dataset ``events`` (structured, as above) or group ``events`` with 1-D datasets
  ``t``, ``x``, ``y``, ``p``; optional attribute ``sensor_size`` on that dataset or group.

Files are never unpickled (``allow_pickle=False``). A given ``sensor_size`` overrides a stored one;
with neither, it is inferred as (max x + 1, max y + 1, max(2, max p + 1)).

Sizes are checked before anything is allocated: an array's declared shape x item size must fit in
the bytes that store it (the rest of an ``.npy`` file; an ``.npz`` member's uncompressed size, itself
at most ``MAX_EXPANSION`` times its compressed size; an HDF5 dataset's allocated storage, times
``MAX_EXPANSION`` when compressed), so a zip bomb or a header declaring 4e8 events is refused with
an :class:`InputFormatError` instead of taking gigabytes.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import tokenize
import typing
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from asa_snn.data.events import EventStream, SensorSize, as_event_array
from asa_snn.data.formats._common import PathLikeStr, check_decoded_size, existing_file, finish
from asa_snn.errors import InputFormatError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

_COLUMNS = ("t", "x", "y", "p")
_NUMPY_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    SyntaxError,
    tokenize.TokenError,  # a corrupt .npy header dict
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    RuntimeError,  # zipfile: an encrypted member
    NotImplementedError,  # zipfile: an unsupported compression method
)
"""What ``np.load`` and ``zipfile`` raise on corrupt or truncated files."""

_NPZ_KEYS = ("events", "sensor_size")
"""The ``.npz`` keys read; ``np.load`` opens member ``key`` if present, else ``key.npy``."""

_SENSOR_SIZE_MAX_ELEMENTS = 64
"""A stored sensor size with more elements than this is refused before it is read (three are expected)."""


def events_from_array(array: np.ndarray, source: str) -> np.ndarray:
    """Convert a structured [N] array (fields t, x, y, p) or an [N, 4] integer array (columns
    t, x, y, p) to an [N] array of ``EVENT_DTYPE``.

    Raises:
        InputFormatError: another shape or dtype, or values that do not fit ``EVENT_DTYPE``.
    """
    if array.dtype.names is not None and array.ndim == 1:
        return as_event_array(array, source)
    if array.ndim == 2 and array.shape[1] == len(_COLUMNS) and array.dtype.kind in "iub":
        columns = np.rec.fromarrays([array[:, i] for i in range(len(_COLUMNS))], names=list(_COLUMNS))
        return as_event_array(columns, source)
    raise InputFormatError(
        f"{source}: events array has shape {array.shape} and dtype {array.dtype}; expected a structured [N] "
        f"array with fields t, x, y, p or an [N, 4] integer array with columns t, x, y, p"
    )


def _sensor_size_value(value: object, source: str) -> SensorSize:
    """Validate a stored sensor size: three positive integers (W, H, P)."""
    array = np.asarray(value)
    if array.shape != (3,) or array.dtype.kind not in "iu" or np.any(array < 1):
        raise InputFormatError(
            f"{source}: stored sensor_size is {array.tolist()} (dtype {array.dtype}); "
            f"expected three positive integers W, H, P"
        )
    return (int(array[0]), int(array[1]), int(array[2]))


def _npy_data_bytes(handle: typing.BinaryIO) -> tuple[int, int]:
    """(bytes of array data the ``.npy`` header at the handle's position declares, header length).

    Only the header is read: ``np.lib.format`` checks the magic and parses the header dict
    (version 3.0 headers differ from 2.0 only in the text encoding of field names, so the 2.0
    reader gives the same shape and item size).
    """
    version = np.lib.format.read_magic(handle)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(handle)
    return math.prod(shape) * dtype.itemsize, handle.tell()


def _check_npy_file(file: Path) -> None:
    """Refuse an ``.npy`` whose header declares more array bytes than the file holds after it."""
    with open(file, "rb") as handle:
        declared, header = _npy_data_bytes(handle)
    held = file.stat().st_size - header
    if declared > held:
        raise InputFormatError(
            f"{file}: .npy header declares {declared} bytes of array data but the file holds {held} bytes "
            f"after its {header}-byte header; expected the array data in full (truncated or corrupt header)"
        )


def _check_npz_members(file: Path) -> None:
    """Refuse ``.npz`` members that ``np.load`` would read and that declare more than they hold.

    For each member named ``events``, ``events.npy``, ``sensor_size`` or ``sensor_size.npy``: its
    uncompressed size must be at most :func:`~asa_snn.data.formats._common.decoded_size_limit` of
    its compressed size, and the shape x item size its ``.npy`` header declares must fit in that
    uncompressed size. Only the zip directory and the member headers are read.
    """
    with zipfile.ZipFile(file) as archive:
        names = set(archive.namelist())
        for name in [n for key in _NPZ_KEYS for n in (key, f"{key}.npy") if n in names]:
            info = archive.getinfo(name)
            check_decoded_size(info.file_size, info.compress_size, file, f".npz member {name!r}")
            with archive.open(info) as member:
                declared, header = _npy_data_bytes(typing.cast(typing.BinaryIO, member))
            if declared > info.file_size - header:
                raise InputFormatError(
                    f"{file}: .npz member {name!r} declares {declared} bytes of array data in its .npy "
                    f"header but holds {info.file_size - header} bytes after it; expected the array data "
                    f"in full (corrupt header)"
                )


def _load_npz(file: Path) -> tuple[np.ndarray, SensorSize | None]:
    _check_npz_members(file)
    with np.load(file, allow_pickle=False) as archive:
        if "events" not in archive.files:
            raise InputFormatError(f"{file}: .npz archive has keys {archive.files}, expected 'events'")
        events = events_from_array(archive["events"], str(file))
        stored = (
            _sensor_size_value(archive["sensor_size"], str(file)) if "sensor_size" in archive.files else None
        )
    return events, stored


def read_numpy(path: PathLikeStr, sensor_size: SensorSize | None = None) -> EventStream:
    """Read events from a ``.npy`` or ``.npz`` file (told apart by their first bytes).

    Args:
        path: the file.
        sensor_size: (W, H, P); when None, the stored ``sensor_size`` of an ``.npz``, else
            inferred as (max x + 1, max y + 1, max(2, max p + 1)).

    Raises:
        InputFormatError: not a NumPy file, a pickled object array (never unpickled), a wrong
            layout, no events, events outside the sensor, timestamps going backwards.
    """
    file = existing_file(path)
    with open(file, "rb") as handle:
        head = handle.read(len(NPY_MAGIC))
    try:
        if head.startswith(ZIP_MAGIC):
            events, stored = _load_npz(file)
        else:
            _check_npy_file(file)
            events, stored = events_from_array(np.load(file, allow_pickle=False), str(file)), None
    except InputFormatError:
        raise
    except _NUMPY_ERRORS as exc:
        raise InputFormatError(
            f"{file}: cannot read it as a NumPy .npy/.npz file without unpickling (allow_pickle=False): "
            f"{' '.join(str(exc).split())}"
        ) from exc
    return finish(events, sensor_size if sensor_size is not None else stored, file)


def _hdf5_sizes(dataset: typing.Any, file: Path) -> tuple[int, int]:
    """(declared bytes, stored bytes) of an HDF5 dataset, read from its metadata only.

    Declared: shape x item size. Stored: what HDF5 has allocated for it (``H5Dget_storage_size``:
    0 for a dataset never written, the compressed size for chunked data). Data kept outside the
    file (external storage, virtual datasets) is refused, since its size cannot be checked against
    the file; so are null dataspaces and variable-length or object types (no event column has them).
    """
    import h5py

    name = f"HDF5 dataset {dataset.name!r}"
    plist = dataset.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count() > 0:
        raise InputFormatError(
            f"{file}: {name} keeps its data outside the file (virtual or external storage); "
            f"expected the data stored in the file"
        )
    if dataset.shape is None or dataset.dtype.kind not in "iubfV" or dataset.dtype.hasobject:
        raise InputFormatError(
            f"{file}: {name} has shape {dataset.shape} and dtype {dataset.dtype}; expected an array of "
            f"fixed-size numbers"
        )
    return math.prod(dataset.shape) * dataset.dtype.itemsize, dataset.id.get_storage_size()


def _check_hdf5_datasets(datasets: list[typing.Any], file: Path, what: str) -> None:
    """Refuse ``datasets`` before reading them when together they declare more bytes than
    :func:`~asa_snn.data.formats._common.decoded_size_limit` of the storage they have."""
    sizes = [_hdf5_sizes(dataset, file) for dataset in datasets]
    check_decoded_size(sum(d for d, _ in sizes), sum(s for _, s in sizes), file, what)


def _stored_sensor_size(node: typing.Any, file: Path) -> SensorSize | None:
    """The ``sensor_size`` attribute of ``node``, checked (its shape first, before reading it)."""
    if "sensor_size" not in node.attrs:
        return None
    shape = node.attrs.get_id("sensor_size").shape
    if shape is None or math.prod(shape) > _SENSOR_SIZE_MAX_ELEMENTS:
        raise InputFormatError(
            f"{file}: stored sensor_size attribute has shape {shape}; expected three integers W, H, P"
        )
    return _sensor_size_value(node.attrs["sensor_size"], str(file))


def _read_hdf5_events(file: Path) -> tuple[np.ndarray, SensorSize | None]:
    import h5py

    with h5py.File(file, "r") as h5:
        if "events" not in h5:
            raise InputFormatError(f"{file}: HDF5 file has entries {list(h5.keys())}, expected 'events'")
        node = h5["events"]
        if isinstance(node, h5py.Group):
            missing = [name for name in _COLUMNS if not isinstance(node.get(name), h5py.Dataset)]
            if missing:
                raise InputFormatError(
                    f"{file}: HDF5 group 'events' lacks dataset(s) {missing}; expected t, x, y, p"
                )
            _check_hdf5_datasets([node[name] for name in _COLUMNS], file, "HDF5 group '/events' (t, x, y, p)")
            columns = [np.asarray(node[name][()]) for name in _COLUMNS]
            if any(column.ndim != 1 for column in columns) or len({len(c) for c in columns}) != 1:
                raise InputFormatError(
                    f"{file}: HDF5 datasets events/t, x, y, p have shapes {[c.shape for c in columns]}; "
                    f"expected 1-D and of equal length"
                )
            events = as_event_array(np.rec.fromarrays(columns, names=list(_COLUMNS)), str(file))
        elif isinstance(node, h5py.Dataset):
            _check_hdf5_datasets([node], file, f"HDF5 dataset {node.name!r}")
            events = events_from_array(np.asarray(node[()]), str(file))
        else:
            raise InputFormatError(
                f"{file}: HDF5 entry 'events' is a {type(node).__name__}; expected a dataset or a group"
            )
        return events, _stored_sensor_size(node, file)


def read_hdf5(path: PathLikeStr, sensor_size: SensorSize | None = None) -> EventStream:
    """Read events from an HDF5 file (layouts in the module docstring).

    Args:
        path: the file.
        sensor_size: (W, H, P); when None, the ``sensor_size`` attribute, else inferred as
            (max x + 1, max y + 1, max(2, max p + 1)).

    Raises:
        InputFormatError: not an HDF5 file or unreadable, no ``events`` entry, wrong layout, no
            events, events outside the sensor, timestamps going backwards.
    """
    file = existing_file(path)
    try:
        events, stored = _read_hdf5_events(file)
    except InputFormatError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise InputFormatError(
            f"{file}: cannot read it as HDF5 event file: {' '.join(str(exc).split())}"
        ) from exc
    return finish(events, sensor_size if sensor_size is not None else stored, file)


def _replace_atomically(path: PathLikeStr, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary file in the folder of ``path``, then move it into place."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def write_numpy(stream: EventStream, path: PathLikeStr) -> None:
    """Write ``stream`` as an ``.npz`` with keys ``events`` ([N] ``EVENT_DTYPE``, t in us) and
    ``sensor_size`` ([3] int64), through a temporary file replaced into place."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, events=stream.events, sensor_size=np.asarray(stream.sensor_size, dtype=np.int64))

    _replace_atomically(path, write)


def write_hdf5(stream: EventStream, path: PathLikeStr) -> None:
    """Write ``stream`` as HDF5: group ``events`` with 1-D datasets t (int64, us), x, y (int16),
    p (int8) and attribute ``sensor_size`` (W, H, P), through a temporary file replaced into place."""
    import h5py

    def write(temporary: Path) -> None:
        with h5py.File(temporary, "w") as h5:
            group = h5.create_group("events")
            for name in _COLUMNS:
                group.create_dataset(name, data=stream.events[name])
            group.attrs["sensor_size"] = np.asarray(stream.sensor_size, dtype=np.int64)

    _replace_atomically(path, write)
