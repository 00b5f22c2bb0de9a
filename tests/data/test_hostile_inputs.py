"""Hostile and broken event files: declared-size bombs are refused before anything is allocated,
decoder crashes become InputFormatError, previews allocate only what the events span.

The bombs are read in a child Python whose address space is capped (``hostile_writers.run_bounded``):
a reader that allocates what a file declares hits the cap and the test fails."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hostile_writers import (
    AEDAT4_PREAMBLE,
    HDF5_LAYOUTS,
    aedat4_bytes,
    assert_refused,
    event_packet,
    hdf5_declaring,
    npy_declaring,
    npz_declaring,
    npz_zip_bomb,
    run_bounded,
)
from real_data import real_file

from asa_snn.data import events as event_module
from asa_snn.data import preview
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.formats import _common as common
from asa_snn.data.formats import read_aedat4, read_events
from asa_snn.errors import AsaSnnError, InputFormatError

# new names are looked up inside the tests, so this module also collects against the code before
# the fixes and each test fails on its own there


# ---------------------------------------------------------------- declared-size bombs


def test_npz_zip_bomb_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = npz_zip_bomb(tmp_path / "bomb.npz")  # 1.6 MB holding 1.5 GiB of zeros
    assert path.stat().st_size < 2_000_000
    result = run_bounded("read_events(sys.argv[1] + '/bomb.npz')", tmp_path)
    message = assert_refused(result, "bomb.npz: .npz member 'events.npy' declares 1610612864 bytes of data")
    assert f"{common.MAX_EXPANSION}x the stored bytes" in message


@pytest.mark.parametrize("name", ["declared.npz", "declared.npy"])
def test_numpy_header_declaring_4e8_events_refused(tmp_path: Path, name: str) -> None:
    writer = npz_declaring if name.endswith(".npz") else npy_declaring
    writer(tmp_path / name, 400_000_000)  # int64 [4e8, 4]: 12.8 GB declared, 64 bytes held
    result = run_bounded(f"read_events(sys.argv[1] + '/{name}')", tmp_path)
    assert_refused(result, name, "declares 12800000000 bytes of array data", "holds 64 bytes")


@pytest.mark.parametrize("layout", HDF5_LAYOUTS)
def test_hdf5_declaring_4e8_events_refused(tmp_path: Path, layout: str) -> None:
    path = hdf5_declaring(tmp_path / f"{layout}.h5", 400_000_000, layout)
    assert path.stat().st_size < 8_000
    result = run_bounded(f"read_events(sys.argv[1] + '/{layout}.h5')", tmp_path)
    assert_refused(result, f"{layout}.h5: HDF5 ", "'/events'", "declares", "decompression bomb")


def test_hdf5_small_unwritten_dataset_still_reads(tmp_path: Path) -> None:
    # within the 16 MiB every file may decode to: the fill values are read as events
    stream = read_events(hdf5_declaring(tmp_path / "small.h5", 10, "dataset"))
    assert len(stream) == 10 and stream.sensor_size == (1, 1, 2)


def test_decoded_size_limit_bounds() -> None:
    assert common.decoded_size_limit(0) == 16 * 2**20
    assert common.decoded_size_limit(10**6) == common.MAX_EXPANSION * 10**6
    assert common.decoded_size_limit(10**12) == 4 * 2**30


def test_aedat4_declaring_20000_pixel_sensor_refused(tmp_path: Path) -> None:
    (tmp_path / "huge.aedat4").write_bytes(aedat4_bytes(20000, 20000, [event_packet([(1, 2, 3, True)])]))
    body = """
    stream = read_events(sys.argv[1] + '/huge.aedat4')
    preview.render_preview(stream, sys.argv[1] + '/huge.png')
    """
    result = run_bounded(body, tmp_path)
    message = assert_refused(result, "huge.aedat4 (AEDAT 4 event stream 0)", "W x H = 20000 x 20000")
    assert f"limit of {event_module.MAX_SENSOR_SIDE} x {event_module.MAX_SENSOR_SIDE} pixels" in message


def test_aedat4_sensor_at_the_limit_reads(tmp_path: Path) -> None:
    path = tmp_path / "big.aedat4"
    path.write_bytes(aedat4_bytes(4096, 16, [event_packet([(1, 4095, 15, True), (2, 0, 0, False)])]))
    stream = read_aedat4(path)
    assert event_module.MAX_SENSOR_SIDE == 4096 and stream.sensor_size == (4096, 16, 2)
    assert stream.events.tolist() == [(1, 4095, 15, 1), (2, 0, 0, 0)]


@pytest.mark.parametrize("declared", [2**31, 0xFFFFFFF0])
def test_aedat4_huge_header_length_refused_before_the_decoder(tmp_path: Path, declared: int) -> None:
    # the Rust decoder allocates the declared header length up front; under the cap it aborts
    (tmp_path / "header.aedat4").write_bytes(AEDAT4_PREAMBLE + struct.pack("<I", declared) + bytes(64))
    result = run_bounded("read_aedat4(sys.argv[1] + '/header.aedat4')", tmp_path)
    assert_refused(result, "header.aedat4", f"header at byte offset 18 declares {declared} bytes", "82-byte")


def test_aedat4_huge_packet_length_refused_before_the_decoder(tmp_path: Path) -> None:
    data = aedat4_bytes(346, 260, [event_packet([(1, 2, 3, True)])])
    packet = 18 + struct.unpack_from("<I", data, 14)[0]  # after the preamble, header length and header
    corrupt = data[: packet + 4] + struct.pack("<I", 0xFFFFFF00) + data[packet + 8 :]
    (tmp_path / "packet.aedat4").write_bytes(corrupt)
    result = run_bounded("read_aedat4(sys.argv[1] + '/packet.aedat4')", tmp_path)
    assert_refused(result, "packet.aedat4", f"packet at byte offset {packet} declares {0xFFFFFF00} bytes")


# ---------------------------------------------------------------- decoder panics and corrupt AEDAT 4


def test_aedat4_decoder_panic_becomes_input_format_error(tmp_path: Path) -> None:
    # an empty packet makes the flatbuffers crate assert (a Rust panic -> pyo3 PanicException,
    # a BaseException that `except Exception` misses)
    path = tmp_path / "empty_packet.aedat4"
    path.write_bytes(aedat4_bytes(346, 260, [b""]))
    expected = r"empty_packet\.aedat4: AEDAT 4 decoder panicked .*assertion"
    with pytest.raises(InputFormatError, match=expected) as info:
        read_aedat4(path)
    assert "\n" not in str(info.value)


def _corrupt(data: bytes, kind: str) -> bytes:
    """The DAVIS346 sample with one field broken."""
    (header_length,) = struct.unpack_from("<I", data, 14)
    first_packet = 18 + header_length
    description = data.index(b"<dv")
    if kind == "description_not_utf8":  # roxmltree panicked inside a destructor: the process aborted
        return data[: description + 30] + b"\xff" + data[description + 31 :]
    if kind == "header_length":
        return data[:14] + struct.pack("<I", 0xFFFFFFF0) + data[18:]
    if kind == "root_offset":
        return data[:18] + struct.pack("<I", 0x7FFFFFF0) + data[22:]
    if kind == "packet_length":
        return data[: first_packet + 4] + struct.pack("<I", 0x7FFFFFFF) + data[first_packet + 8 :]
    if kind == "empty_first_packet":
        return data[: first_packet + 4] + struct.pack("<I", 0) + data[first_packet + 8 :]
    if kind == "truncated_in_header":
        return data[: 18 + header_length // 2]
    if kind == "truncated_in_packet":
        return data[: first_packet + 100]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("description_not_utf8", "stream description is not UTF-8"),
        ("header_length", "header at byte offset 18 declares 4294967280 bytes"),
        ("root_offset", "header is corrupt: vtable offset at offset 2147483632"),
        ("packet_length", "declares 2147483647 bytes"),
        ("empty_first_packet", "AEDAT 4"),
        ("truncated_in_header", "declares 3104 bytes"),
        ("truncated_in_packet", "declares 3403 bytes"),
    ],
)
def test_aedat4_corrupt_real_file(tmp_path: Path, kind: str, fragment: str) -> None:
    data = real_file("aedat4/davis346_sample.aedat4").read_bytes()
    (tmp_path / "corrupt.aedat4").write_bytes(_corrupt(data, kind))
    result = run_bounded("read_aedat4(sys.argv[1] + '/corrupt.aedat4')", tmp_path)
    assert_refused(result, "corrupt.aedat4: ", fragment)


# ---------------------------------------------------------------- previews


def _stream(rows: list[tuple[int, int, int, int]], sensor: tuple[int, int, int]) -> EventStream:
    t, x, y, p = (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True))
    return EventStream(make_events(t, x, y, p), sensor, "declared")


def test_preview_covers_only_the_events_span() -> None:
    stream = _stream([(0, 2, 1, 1), (1, 9, 4, 0), (2, 9, 4, 0)], (20000, 20000, 2))
    assert preview.preview_shape(stream) == (5, 10, 1)
    image = preview.accumulate(stream)
    assert image.shape == (5, 10) and image.dtype == np.int64
    assert image[1, 2] == 1 and image[4, 9] == -2 and int(np.abs(image).sum()) == 3


def test_preview_bins_a_wide_span() -> None:
    stream = _stream([(0, 0, 0, 1), (1, 32000, 7, 1), (2, 32000, 7, 0)], (32767, 32767, 2))
    rows, columns, factor = preview.preview_shape(stream)
    assert factor == 8 and (rows, columns) == (1, 4001)
    image = preview.accumulate(stream)
    assert image.shape == (1, 4001) and image[0, 0] == 1 and image[0, 4000] == 0
    assert preview.accumulate(stream, max_side=100).shape == (1, 100)


@pytest.mark.parametrize(
    ("rows", "sensor"),
    [
        ([(0, 2, 1, 1), (1, 9, 4, 0)], (20000, 20000, 2)),  # 3.2 GB as a full-sensor int64 image
        ([(0, 0, 0, 1), (1, 30000, 30000, 0)], (30001, 30001, 2)),  # spans 30001 x 30001: binned
        ([(0, 0, 0, 1), (1, 0, 3999, 0)], (1, 4000, 2)),  # a 1-pixel-wide sensor: figure aspect clamped
    ],
)
def test_render_preview_bounded(tmp_path: Path, rows: list[tuple[int, int, int, int]], sensor: tuple) -> None:
    body = f"""
    t, x, y, p = (np.array(c, dtype=np.int64) for c in zip(*{rows!r}))
    stream = EventStream(make_events(t, x, y, p), {sensor!r}, "declared")
    preview.render_preview(stream, sys.argv[1] + '/preview.png')
    """
    result = run_bounded(body, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "preview.png").stat().st_size > 1000


def test_preview_rejects_nonpositive_side() -> None:
    with pytest.raises(AsaSnnError, match=r"max_side is 0"):
        preview.preview_shape(_stream([(0, 1, 1, 1)], (4, 4, 2)), max_side=0)
