"""Writers of small hostile event files (declared-size bombs, AEDAT 4 from scratch) and a runner
that reads them in a child Python whose address space is capped, so a reader that allocates what
a file declares fails the test instead of taking the machine's memory."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from asa_snn.data.events import EVENT_DTYPE

REPO = Path(__file__).resolve().parents[2]

BUDGET_MB = 768
"""Address space (MiB) the child may add after its imports; every bomb here declares more than twice this."""

_PRELUDE = """\
import resource
import sys

import aedat
import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from asa_snn.data import preview
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.formats import read_aedat4, read_events
from asa_snn.errors import InputFormatError

figure = plt.figure()  # load fonts and the renderer before the cap
figure.savefig(sys.argv[1] + "/warm.png")
plt.close(figure)
with open("/proc/self/status") as status:
    size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
cap = size_kb * 1024 + {budget} * 2**20
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
try:
{body}
except InputFormatError as exc:
    print("InputFormatError:", exc)
"""


def run_bounded(body: str, folder: Path, budget_mb: int = BUDGET_MB) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (Python statements) in a child Python whose address space is capped at what it
    holds after importing numpy, h5py, aedat, matplotlib and asa_snn, plus ``budget_mb`` MiB.

    An :class:`InputFormatError` is printed as ``InputFormatError: <message>`` (exit status 0);
    anything else, a ``MemoryError`` included, gives a traceback and a non-zero status, and an
    allocation the Rust decoder cannot make aborts the child. ``folder`` is the child's scratch
    folder (argv[1]).
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("the address-space cap needs Linux (/proc/self/status, RLIMIT_AS)")
    script = _PRELUDE.format(budget=budget_mb, body=textwrap.indent(textwrap.dedent(body), "    "))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "RUST_BACKTRACE": "0",
    }
    return subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one-line InputFormatError message a bounded run printed, checked for ``fragments``."""
    assert result.returncode == 0, f"child failed (status {result.returncode}):\n{result.stderr[-3000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("InputFormatError: ")]
    assert len(lines) == 1, f"expected one InputFormatError line, got stdout:\n{result.stdout}"
    message = lines[0].removeprefix("InputFormatError: ")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ---------------------------------------------------------------- NumPy


def npy_header(shape: tuple[int, ...], dtype: np.dtype | str = "<i8") -> bytes:
    """A version 1.0 ``.npy`` header declaring ``shape`` x ``dtype`` (no data)."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


_CHUNK = 2**20


def _zip_with_member(name: str, raw_deflate: bytes, crc: int, size: int) -> bytes:
    """A one-member zip (no ZIP64, so ``size`` < 4 GiB) holding a raw deflate stream."""
    encoded = name.encode()
    sizes = (crc, len(raw_deflate), size, len(encoded))  # method 8 = deflate
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, *sizes, 0)
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, *sizes, 0, 0, 0, 0, 0, 0)
    directory_offset = len(local) + len(encoded) + len(raw_deflate)
    directory = central + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), directory_offset, 0)
    return local + encoded + raw_deflate + directory + end


def npz_zip_bomb(path: Path, megabytes: int = 1536) -> Path:
    """A valid ``.npz`` whose member ``events.npy`` is an int64 [N, 4] array of zeros taking
    ``megabytes`` MiB, deflated to about 1/1000 of that (1536 MiB -> 1.6 MB).

    Each MiB of zeros is compressed after a full flush, so every such block is the same bytes and
    the stream is written without ever holding the array: header, the block repeated, the end.
    """
    header = npy_header((megabytes * _CHUNK // 32, 4))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(_CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = head + block * megabytes + compressor.flush()
    crc = zlib.crc32(header)
    zeros = bytes(_CHUNK)
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    path.write_bytes(_zip_with_member("events.npy", stream, crc, len(header) + megabytes * _CHUNK))
    return path


def npz_declaring(path: Path, rows: int) -> Path:
    """An ``.npz`` whose ``events.npy`` header declares an int64 [rows, 4] array but holds 64 bytes."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("events.npy", npy_header((rows, 4)) + bytes(64))
    return path


def npy_declaring(path: Path, rows: int) -> Path:
    """An ``.npy`` whose header declares an int64 [rows, 4] array but holds 64 bytes."""
    path.write_bytes(npy_header((rows, 4)) + bytes(64))
    return path


# ---------------------------------------------------------------- HDF5

HDF5_LAYOUTS = ("dataset", "group", "chunked_gzip")


def hdf5_declaring(path: Path, count: int, layout: str = "dataset") -> Path:
    """An HDF5 file whose events declare ``count`` events that are never written (about 1.4 KB).

    ``dataset``: a structured ``events`` dataset; ``group``: columns ``events/t, x, y, p``;
    ``chunked_gzip``: a gzip-chunked structured dataset with its first chunk written (zeros).
    """
    with h5py.File(path, "w") as h5:
        if layout == "dataset":
            h5.create_dataset("events", shape=(count,), dtype=EVENT_DTYPE)
        elif layout == "group":
            for name in "txyp":
                h5.create_dataset(f"events/{name}", shape=(count,), dtype=EVENT_DTYPE[name], chunks=True)
        else:
            chunk = min(count, 2**16)
            dataset = h5.create_dataset(
                "events", shape=(count,), dtype=EVENT_DTYPE, chunks=(chunk,), compression="gzip"
            )
            dataset[:chunk] = np.zeros(chunk, dtype=EVENT_DTYPE)
    return path


# ---------------------------------------------------------------- AEDAT 4.0, written from scratch

AEDAT4_PREAMBLE = b"#!AER-DAT4.0\r\n"


def ioheader(description: str, compression: int | None = None) -> bytes:
    """An ``Ioheader`` flatbuffer: root offset, file identifier "IOHE", a vtable for fields
    (compression, file_data_position, description), the table, the description string."""
    text = description.encode() + b"\0"
    slots = (8, 0, 4) if compression is not None else (0, 0, 4)
    table_size = 12 if compression is not None else 8
    vtable = struct.pack("<HHHHH", 10, table_size, *slots) + b"\0\0"
    root, table = 4 + 4, 8 + len(vtable)  # root offset and identifier, then the vtable
    fields = struct.pack("<iI", table - root, 4 + (4 if compression is not None else 0))
    if compression is not None:
        fields += struct.pack("<i", compression)
    body = struct.pack("<I4s", table, b"IOHE") + vtable + fields + struct.pack("<I", len(text) - 1) + text
    return body + b"\0" * (-len(body) % 4)


def stream_description(width: int, height: int) -> str:
    """DV's XML description of one event stream (id 0) of a ``width`` x ``height`` sensor."""
    return (
        '<dv version="2.0"><node name="outInfo" path="/outInfo/"><node name="0" path="/outInfo/0/">'
        '<attr key="typeIdentifier" type="string">EVTS</attr><node name="info" path="/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
        "</node></node></node></dv>"
    )


def event_packet(rows: list[tuple[int, int, int, bool]]) -> bytes:
    """A size-prefixed ``EventPacket`` flatbuffer ("EVTS") of (t, x, y, on) events, 16 bytes each."""
    head = struct.pack("<I4s", 16, b"EVTS") + struct.pack("<HHH", 6, 8, 4) + b"\0\0"
    head += struct.pack("<iII", 8, 4, len(rows))
    body = head + b"".join(struct.pack("<qhh?3x", t, x, y, on) for t, x, y, on in rows)
    return struct.pack("<I", len(body)) + body


def aedat4_bytes(width: int, height: int, packets: list[bytes]) -> bytes:
    """An uncompressed AEDAT 4.0 file: preamble, header length, ``Ioheader``, then each packet
    (already a flatbuffer, or any bytes) as stream 0 with its length."""
    header = ioheader(stream_description(width, height))
    framed = b"".join(struct.pack("<iI", 0, len(packet)) + packet for packet in packets)
    return AEDAT4_PREAMBLE + struct.pack("<I", len(header)) + header + framed


# ------------------------------------------------------- declared-size bombs, one per kind, for fuzzing

BOMB_KINDS = (
    "npy_header",
    "npz_header",
    "npz_member_size",
    "hdf5_dataset",
    "hdf5_group",
    "aedat4_header_length",
    "aedat4_packet_length",
    "aedat4_sensor",
)
"""What :func:`write_declared_bomb` can make declare a size it does not hold."""


def write_declared_bomb(folder: Path, kind: str, declared: int) -> Path:
    """A small file of ``kind`` (:data:`BOMB_KINDS`) declaring about ``declared`` bytes (or, for
    ``aedat4_sensor``, a ``declared % 65536`` pixel square sensor) while holding a few bytes."""
    if kind == "npy_header":
        return npy_declaring(folder / "bomb.npy", declared // 32)
    if kind == "npz_header":
        return npz_declaring(folder / "bomb.npz", declared // 32)
    if kind == "npz_member_size":  # the zip directory and the npy header both lie
        header = npy_header((declared // 32, 4))
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        stream = compressor.compress(header + bytes(64)) + compressor.flush()
        size = min(len(header) + declared // 32 * 32, 2**32 - 1)
        path = folder / "member.npz"
        path.write_bytes(_zip_with_member("events.npy", stream, zlib.crc32(header + bytes(64)), size))
        return path
    if kind in ("hdf5_dataset", "hdf5_group"):
        return hdf5_declaring(
            folder / "bomb.h5", declared // EVENT_DTYPE.itemsize, kind.removeprefix("hdf5_")
        )
    if kind == "aedat4_header_length":
        path = folder / "header.aedat4"
        path.write_bytes(AEDAT4_PREAMBLE + struct.pack("<I", declared % 2**32) + bytes(64))
        return path
    if kind == "aedat4_packet_length":
        data = aedat4_bytes(346, 260, [event_packet([(1, 2, 3, True)])])
        packet = len(AEDAT4_PREAMBLE) + 4 + struct.unpack_from("<I", data, len(AEDAT4_PREAMBLE))[0]
        path = folder / "packet.aedat4"
        path.write_bytes(data[: packet + 4] + struct.pack("<I", declared % 2**32) + data[packet + 8 :])
        return path
    if kind == "aedat4_sensor":
        side = declared % 2**16
        path = folder / "sensor.aedat4"
        path.write_bytes(aedat4_bytes(side, side, [event_packet([(1, 0, 0, True)])]))
        return path
    raise ValueError(f"unknown bomb kind {kind!r}; expected one of {BOMB_KINDS}")
