"""Event file readers: real recordings, round trips through files written here, bad input."""

from __future__ import annotations

import os
import struct
import tempfile
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from hostile_writers import BOMB_KINDS, write_declared_bomb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from real_data import real_file

from asa_snn.data import events as events_module
from asa_snn.data.events import EVENT_DTYPE, EventStream, make_events
from asa_snn.data.formats import (
    SUPPORTED_FORMATS,
    detect_format,
    guess_aedat2_camera,
    read_aedat2,
    read_aedat4,
    read_aedat31,
    read_aedat31_trials,
    read_events,
    read_hdf5,
    read_nmnist_binary,
    read_numpy,
    write_hdf5,
    write_numpy,
)
from asa_snn.data.preview import accumulate
from asa_snn.errors import AsaSnnError, InputFormatError


def events_of(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """[N] EVENT_DTYPE array from (t, x, y, p) rows."""
    t, x, y, p = (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True))
    return make_events(t, x, y, p)


# ---------------------------------------------------------------- writers following the published formats


def nmnist_bytes(records: list[tuple[int, int, int, int]]) -> bytes:
    """N-MNIST records from (x, y, p, t) with t < 2**23: x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    return b"".join(bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF]) for x, y, p, t in records)


AEDAT31_HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"


def polarity_packet(events: list[tuple[int, int, int, int, int]], overflow: int = 0) -> bytes:
    """cAER polarity packet (eventType 1, 8-byte events) from (t, x, y, p, valid) rows."""
    header = struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, len(events), len(events), len(events))
    words = (struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, t) for t, x, y, p, valid in events)
    return header + b"".join(words)


def imu_packet(count: int) -> bytes:
    """cAER IMU6 packet (eventType 3, 36-byte events) that a polarity reader must skip."""
    return struct.pack("<hhiiiiii", 3, 1, 36, 4, 0, count, count, count) + bytes(range(36)) * count


AEDAT31_EVENTS = events_of([(10, 3, 4, 1), (20, 127, 0, 0), (2**31 + 5, 0, 127, 1), (2**31 + 6, 64, 65, 0)])
AEDAT31_FILE = AEDAT31_HEADER + b"".join(
    [
        polarity_packet([(10, 3, 4, 1, 1), (15, 9, 9, 1, 0), (20, 127, 0, 0, 1)]),
        imu_packet(2),
        polarity_packet([(5, 0, 127, 1, 1), (6, 64, 65, 0, 1)], overflow=1),
    ]
)

DVS128_HEADER = (
    b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
    b"# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n"
)
DAVIS346_HEADER = b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS346B\r\n"


def aedat2_bytes(header: bytes, records: list[tuple[int, int]]) -> bytes:
    """jAER AEDAT 2.0: header lines, then big-endian (uint32 address, int32 timestamp) records."""
    return header + b"".join(struct.pack(">Ii", address, t) for address, t in records)


def dvs128_address(x: int, y: int, p: int) -> int:
    """jAER DVS128 address of the event at (x, y), origin top-left: jAER's y (origin lower-left),
    127 - y, in bits 8-14, 127 - x in bits 1-7, bit 0 = 1 - p (raw 0 is ON)."""
    return ((127 - y) << 8) | ((127 - x) << 1) | (1 - p)


def davis_address(x: int, y: int, p: int, width: int = 346, height: int = 260) -> int:
    """jAER DAVIS DVS address of the event at (x, y), origin top-left: jAER's y (origin lower-left),
    H - 1 - y, in bits 22-30, W - 1 - x in bits 12-21, p in bit 11."""
    return ((height - 1 - y) << 22) | ((width - 1 - x) << 12) | (p << 11)


def davis346_address(x: int, y: int, p: int) -> int:
    """jAER DAVIS346 DVS address: 259 - y in bits 22-30, 345 - x in bits 12-21, p in bit 11."""
    return davis_address(x, y, p, 346, 260)


KNOWN = events_of([(0, 0, 0, 0), (5, 127, 0, 1), (5, 3, 127, 1), (900, 64, 33, 0)])


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- real recordings


def test_nmnist_real_total_count() -> None:
    files = sorted(real_file("nmnist/train").glob("*.bs2"))
    assert len(files) == 1000
    streams = [read_events(path) for path in files]
    assert sum(len(stream) for stream in streams) == 4_133_231
    assert {stream.sensor_size for stream in streams} == {(34, 34, 2)}
    durations = [stream.duration_us for stream in streams]
    assert 250_000 < np.median(durations) < 350_000  # ~0.3 s saccades


def test_ncaltech_real() -> None:
    stream = read_events(real_file("ncaltech101/faces_easy_0001.bin"))
    assert len(stream) == 67_445
    assert stream.sensor_size == (151, 173, 2)  # x up to 150, y up to 172: inferred
    assert 250_000 < stream.duration_us < 350_000


@pytest.mark.parametrize(
    ("name", "count", "size", "seconds"),
    [("davis346_sample", 6_676, (346, 260, 2), 0.17), ("dvxplorer_sample", 111_954, (320, 240, 2), 0.59)],
)
def test_aedat4_real(name: str, count: int, size: tuple[int, int, int], seconds: float) -> None:
    path = real_file(f"aedat4/{name}.aedat4")
    assert detect_format(path) == "aedat4"
    stream = read_events(path)
    assert len(stream) == count
    assert stream.sensor_size == size
    assert stream.duration_us == pytest.approx(seconds * 1e6, rel=0.02)
    assert set(np.unique(stream.events["p"])) == {0, 1}


def test_aedat4_truncated_real(tmp_path: Path) -> None:
    data = real_file("aedat4/davis346_sample.aedat4").read_bytes()
    path = write(tmp_path / "cut.aedat4", data[:200_000])
    with pytest.raises(InputFormatError, match=r"cut\.aedat4.*200000-byte"):
        read_aedat4(path)


# ---------------------------------------------------------------- round trips


def test_nmnist_round_trip_with_overflow_marker(tmp_path: Path) -> None:
    # tonic / Orchard: a y == 240 record is no event and adds 2**13 us to every later timestamp
    data = nmnist_bytes(
        [(1, 2, 1, 100), (33, 33, 0, 8000), (0, 240, 0, 0), (5, 6, 1, 50), (7, 8, 0, 2**23 - 1)]
    )
    stream = read_events(write(tmp_path / "a.bs2", data))
    expected = events_of(
        [(100, 1, 2, 1), (8000, 33, 33, 0), (8192 + 50, 5, 6, 1), (8192 + 2**23 - 1, 7, 8, 0)]
    )
    np.testing.assert_array_equal(stream.events, expected)
    assert stream.sensor_size == (34, 34, 2)


def test_nmnist_larger_than_34_is_inferred(tmp_path: Path) -> None:
    stream = read_nmnist_binary(write(tmp_path / "a.bin", nmnist_bytes([(40, 2, 1, 1), (3, 99, 0, 2)])))
    assert stream.sensor_size == (41, 100, 2)
    assert read_nmnist_binary(tmp_path / "a.bin", sensor_size=(240, 180, 2)).sensor_size == (240, 180, 2)


def test_aedat31_round_trip_skips_other_packets_and_applies_overflow(tmp_path: Path) -> None:
    path = write(tmp_path / "user01_fluorescent.aedat", AEDAT31_FILE)
    assert detect_format(path) == "aedat3"
    stream = read_events(path)
    np.testing.assert_array_equal(stream.events, AEDAT31_EVENTS)
    assert stream.sensor_size == (128, 128, 2)
    assert read_aedat31(path).events["t"][2] == 2147483653


def test_aedat31_trials(tmp_path: Path) -> None:
    path = write(tmp_path / "user01_fluorescent.aedat", AEDAT31_FILE)
    labels = tmp_path / "user01_fluorescent_labels.csv"
    labels.write_text("class,startTime_usec,endTime_usec\n3,10,20\n11,2147483648,2147483654\n")
    trials = read_aedat31_trials(path, labels)
    assert [label for _, label in trials] == [2, 10]
    np.testing.assert_array_equal(trials[0][0].events, AEDAT31_EVENTS[:1])  # end is exclusive
    np.testing.assert_array_equal(trials[1][0].events, AEDAT31_EVENTS[2:3])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("cls,start,end\n1,0,5\n", "expected the header"),
        ("class,startTime_usec,endTime_usec\n12,0,30\n", "class=12"),
        ("class,startTime_usec,endTime_usec\n1,zero,30\n", "line 2"),
        ("class,startTime_usec,endTime_usec\n1,30,40\n", "contains no events"),
    ],
)
def test_aedat31_bad_labels(tmp_path: Path, content: str, fragment: str) -> None:
    path = write(tmp_path / "rec.aedat", AEDAT31_FILE)
    (tmp_path / "rec_labels.csv").write_text(content)
    with pytest.raises(InputFormatError, match=fragment):
        read_aedat31_trials(path, tmp_path / "rec_labels.csv")


def test_aedat2_dvs128_round_trip(tmp_path: Path) -> None:
    records = [(dvs128_address(x, y, p), t) for t, x, y, p in KNOWN.tolist()]
    records.insert(2, (0x8000, 5))  # sync event: dropped
    path = write(tmp_path / "gait.aedat", aedat2_bytes(DVS128_HEADER, records))
    assert detect_format(path) == "aedat2"
    stream = read_events(path)
    np.testing.assert_array_equal(stream.events, KNOWN)
    assert stream.sensor_size == (128, 128, 2)


def test_aedat2_dvs128_hand_decoded(tmp_path: Path) -> None:
    # 0x0203: bit 0 = 1 -> OFF (p 0); bits 1-7 = 1 -> x = 127 - 1 = 126; bits 8-14 = 2 -> jAER
    # y = 2, row 2 from the bottom (jAER's origin is lower-left) -> y = 127 - 2 = 125 from the top
    stream = read_aedat2(write(tmp_path / "a.aedat", aedat2_bytes(DVS128_HEADER, [(0x0203, 7)])))
    assert stream.events.tolist() == [(7, 126, 125, 0)]


def test_aedat2_davis346_round_trip_drops_aps(tmp_path: Path) -> None:
    rows = [(1, 0, 0, 1), (2, 345, 259, 0), (3, 200, 100, 1)]
    records = [(davis346_address(x, y, p), t) for t, x, y, p in rows]
    records.insert(1, (0x80000000 | davis346_address(5, 5, 1), 2))  # APS sample, bit 31 set
    path = write(tmp_path / "daily.aedat", aedat2_bytes(DAVIS346_HEADER, records))
    expected = events_of(rows)
    np.testing.assert_array_equal(read_aedat2(path, camera="davis346").events, expected)
    stream = read_events(path)  # camera from the AEChip header line
    np.testing.assert_array_equal(stream.events, expected)
    assert stream.sensor_size == (346, 260, 2)


def test_aedat2_timestamp_reset_names_record(tmp_path: Path) -> None:
    records = [(dvs128_address(1, 1, 1), 50), (dvs128_address(1, 1, 1), 60), (dvs128_address(1, 1, 1), 3)]
    path = write(tmp_path / "reset.aedat", aedat2_bytes(DVS128_HEADER, records))
    with pytest.raises(InputFormatError, match=r"reset\.aedat.*record 2 .*60 us -> 3 us"):
        read_aedat2(path)


def test_aedat2_unknown_camera(tmp_path: Path) -> None:
    path = write(tmp_path / "a.aedat", aedat2_bytes(DVS128_HEADER, [(0, 1)]))
    with pytest.raises(InputFormatError, match=r"'atis'.*davis346.*dvs128"):
        read_aedat2(path, camera="atis")


def jaer_header(chip: str) -> bytes:
    """An AEDAT 2.0 header as jAER writes it, naming the chip class in its ``# AEChip:`` line."""
    return (
        b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# AEChip: " + chip.encode() + b"\r\n"
    )


@pytest.mark.parametrize(
    ("chip", "camera", "size"),
    [
        ("ch.unizh.ini.jaer.chip.retina.DVS128", "dvs128", (128, 128, 2)),
        ("eu.seebetter.ini.chips.davis.DAVIS240A", "davis240", (240, 180, 2)),
        ("eu.seebetter.ini.chips.davis.DAVIS240B", "davis240", (240, 180, 2)),
        ("eu.seebetter.ini.chips.davis.DAVIS240C", "davis240", (240, 180, 2)),
        ("eu.seebetter.ini.chips.davis.DVS240", "davis240", (240, 180, 2)),
        ("eu.seebetter.ini.chips.davis.Davis346B", "davis346", (346, 260, 2)),
        ("eu.seebetter.ini.chips.davis.Davis346BColor", "davis346", (346, 260, 2)),
        ("eu.seebetter.ini.chips.davis.Davis346red", "davis346", (346, 260, 2)),
    ],
)
def test_aedat2_camera_from_aechip_line(
    tmp_path: Path, chip: str, camera: str, size: tuple[int, int, int]
) -> None:
    width, height, _ = size
    # the four corners and a centre pixel, origin top-left, each with both polarities
    rows = [
        (1, 0, 0, 1),
        (2, width - 1, 0, 0),
        (3, 0, height - 1, 1),
        (4, width - 1, height - 1, 0),
        (5, 100, 70, 1),
    ]
    if camera == "dvs128":
        records = [(dvs128_address(x, y, p), t) for t, x, y, p in rows]
    else:
        records = [(davis_address(x, y, p, width, height), t) for t, x, y, p in rows]
    path = write(tmp_path / "chip.aedat", aedat2_bytes(jaer_header(chip), records))
    assert guess_aedat2_camera(path) == camera
    stream = read_events(path)
    assert stream.sensor_size == size
    np.testing.assert_array_equal(stream.events, events_of(rows))


@pytest.mark.parametrize(
    ("chip", "width", "height"),
    [
        ("ch.unizh.ini.jaer.chip.retina.DVS128", 128, 128),
        ("eu.seebetter.ini.chips.davis.DAVIS240C", 240, 180),
        ("eu.seebetter.ini.chips.davis.Davis346B", 346, 260),
    ],
)
def test_aedat2_preview_is_upright(tmp_path: Path, chip: str, width: int, height: int) -> None:
    # jAER's origin is the lower-left corner (y up): an event in jAER's top row, y_jAER = H - 1,
    # must land in row 0 of our top-left-origin images
    if width == 128:
        top_left = (127 << 8) | (127 << 1) | 0  # jAER x = 127 - 127 = 0, y_jAER = 127, raw 0 = ON
        bottom_right = (0 << 8) | (0 << 1) | 0  # jAER x = 127, y_jAER = 0
    else:
        top_left = ((height - 1) << 22) | ((width - 1) << 12) | (1 << 11)  # jAER x = 0, y_jAER = H - 1
        bottom_right = (0 << 22) | (0 << 12) | (1 << 11)  # jAER x = W - 1, y_jAER = 0
    path = write(tmp_path / "up.aedat", aedat2_bytes(jaer_header(chip), [(top_left, 1), (bottom_right, 2)]))
    stream = read_events(path)
    assert stream.events[["x", "y"]].tolist() == [(0, 0), (width - 1, height - 1)]
    image = accumulate(stream)
    assert image.shape == (height, width) and image[0, 0] == 1 and image[height - 1, width - 1] == 1


def test_aedat2_davis_special_events_dropped(tmp_path: Path) -> None:
    # DavisChip: bit 31 APS / IMU samples, bit 10 external-input events (EXTERNAL_INPUT_EVENT_ADDR)
    records = [
        (davis_address(3, 4, 1, 240, 180), 1),
        (davis_address(5, 6, 1, 240, 180) | 0x400, 2),
        (davis_address(7, 8, 0, 240, 180) | 0x80000000, 3),
        (0x80000C00, 4),
        (davis_address(9, 10, 0, 240, 180), 5),
    ]
    path = write(
        tmp_path / "s.aedat", aedat2_bytes(jaer_header("eu.seebetter.ini.chips.davis.DAVIS240C"), records)
    )
    assert read_events(path).events.tolist() == [(1, 3, 4, 1), (5, 9, 10, 0)]


def test_aedat2_unknown_chip_refused_and_override(tmp_path: Path) -> None:
    header = jaer_header("ch.unizh.ini.jaer.chip.retina.DVS640")
    path = write(tmp_path / "dvs640.aedat", aedat2_bytes(header, [(dvs128_address(1, 2, 1), 5)]))
    with pytest.raises(InputFormatError) as info:
        read_events(path)
    message = str(info.value)
    assert "dvs640.aedat" in message and "'ch.unizh.ini.jaer.chip.retina.DVS640'" in message
    assert "camera=" in message and "davis240" in message and "\n" not in message
    assert read_aedat2(path, camera="dvs128").events.tolist() == [(5, 1, 2, 1)]


def test_aedat2_without_aechip_line_is_dvs128(tmp_path: Path) -> None:
    path = write(tmp_path / "old.aedat", aedat2_bytes(b"#!AER-DAT2.0\r\n", [(dvs128_address(4, 5, 0), 9)]))
    assert guess_aedat2_camera(path) == "dvs128"
    assert read_events(path).events.tolist() == [(9, 4, 5, 0)]


def test_npy_structured_any_field_order(tmp_path: Path) -> None:
    array = np.zeros(len(KNOWN), dtype=[("p", "u1"), ("y", "<i4"), ("x", "<u2"), ("t", "<u8")])
    for name in "txyp":
        array[name] = KNOWN[name]
    np.save(tmp_path / "a.npy", array)
    assert detect_format(tmp_path / "a.npy") == "npy"
    stream = read_events(tmp_path / "a.npy")
    np.testing.assert_array_equal(stream.events, KNOWN)
    assert stream.sensor_size == (128, 128, 2)  # inferred: max x 127, max y 127


def test_npy_columns(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.stack([KNOWN[name].astype(np.int64) for name in "txyp"], axis=1))
    stream = read_numpy(tmp_path / "a.npy", sensor_size=(200, 200, 2))
    np.testing.assert_array_equal(stream.events, KNOWN)
    assert stream.sensor_size == (200, 200, 2)


def test_npy_float_columns_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 4)))
    with pytest.raises(InputFormatError, match=r"a\.npy.*shape \(3, 4\) and dtype float64"):
        read_numpy(tmp_path / "a.npy")


def test_npz_and_hdf5_writers_round_trip(tmp_path: Path) -> None:
    stream = EventStream(KNOWN, (130, 140, 2), "known")
    write_numpy(stream, tmp_path / "a.npz")
    write_hdf5(stream, tmp_path / "a.h5")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.h5", "a.npz"]  # no temporary left
    for name, expected_format in [("a.npz", "npz"), ("a.h5", "hdf5")]:
        assert detect_format(tmp_path / name) == expected_format
        back = read_events(tmp_path / name)
        np.testing.assert_array_equal(back.events, KNOWN)
        assert back.sensor_size == (130, 140, 2)
    write_numpy(EventStream(KNOWN[:2], (128, 128, 2)), tmp_path / "a.npz")  # replaces the file
    assert len(read_numpy(tmp_path / "a.npz")) == 2


def test_npz_without_sensor_size_infers(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", events=KNOWN)
    assert read_numpy(tmp_path / "a.npz").sensor_size == (128, 128, 2)


def test_hdf5_structured_dataset(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.hdf5", "w") as h5:
        h5.create_dataset("events", data=KNOWN)
        h5["events"].attrs["sensor_size"] = [128, 128, 2]
    stream = read_hdf5(tmp_path / "a.hdf5")
    np.testing.assert_array_equal(stream.events, KNOWN)
    assert stream.sensor_size == (128, 128, 2)


def test_hdf5_group_missing_column(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        for name in "txy":
            h5.create_dataset(f"events/{name}", data=KNOWN[name])
    with pytest.raises(InputFormatError, match=r"a\.h5.*lacks dataset\(s\) \['p'\]"):
        read_hdf5(tmp_path / "a.h5")


# ---------------------------------------------------------------- bad input


def test_nmnist_truncated_gives_offset(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.bs2", nmnist_bytes([(1, 2, 1, 100), (3, 4, 0, 200)])[:8])
    with pytest.raises(InputFormatError, match=r"cut\.bs2.*8 bytes.*byte offset 5"):
        read_events(path)


@pytest.mark.parametrize(
    ("cut", "fragment"),
    [
        (len(AEDAT31_HEADER) + 10, rf"truncated packet header at byte offset {len(AEDAT31_HEADER)}"),
        (len(AEDAT31_HEADER) + 30, rf"truncated packet payload at byte offset {len(AEDAT31_HEADER) + 28}"),
        (14, "header has no end line .* byte offset 14"),
        (20, "header line at byte offset 14 is not terminated"),
    ],
)
def test_aedat31_truncated_gives_offset(tmp_path: Path, cut: int, fragment: str) -> None:
    path = write(tmp_path / "cut.aedat", AEDAT31_FILE[:cut])
    with pytest.raises(InputFormatError, match=rf"cut\.aedat.*{fragment}"):
        read_aedat31(path)


def test_aedat31_bad_event_size(tmp_path: Path) -> None:
    packet = struct.pack("<hhiiiiii", 1, 1, 6, 4, 0, 1, 1, 1) + bytes(6)
    path = write(tmp_path / "a.aedat", AEDAT31_HEADER + packet)
    with pytest.raises(
        InputFormatError, match=rf"byte offset {len(AEDAT31_HEADER)} has eventSize=6, expected 8"
    ):
        read_aedat31(path)


def test_aedat2_truncated_gives_offset(tmp_path: Path) -> None:
    data = aedat2_bytes(DVS128_HEADER, [(dvs128_address(1, 1, 1), 5)] * 2)
    path = write(tmp_path / "cut.aedat", data[:-3])
    with pytest.raises(
        InputFormatError, match=rf"cut\.aedat.*byte offset {len(DVS128_HEADER) + 8} \(5 bytes left\)"
    ):
        read_aedat2(path)


def test_aedat4_garbage_after_magic(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.aedat4", b"#!AER-DAT4.0\r\n" + bytes(range(50)))
    # bytes 14-17 (0x00 0x01 0x02 0x03) read as the header length 50462976, far past the end
    expected = r"bad\.aedat4: AEDAT 4 header at byte offset 18 declares 50462976 bytes but the 64-byte file"
    with pytest.raises(InputFormatError, match=expected):
        read_events(path)


def test_unknown_extension_and_magic(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", b"hello events")
    with pytest.raises(InputFormatError, match=r"notes\.txt.*'\.txt'.*hello events") as info:
        read_events(path)
    assert all(name in str(info.value) for name in SUPPORTED_FORMATS)
    with pytest.raises(InputFormatError, match=r"unknown event file format 'evt4'.*nmnist.*hdf5.*evt3"):
        read_events(path, format="evt4")


def test_supported_formats_names() -> None:
    assert list(SUPPORTED_FORMATS) == [
        "nmnist",
        "aedat4",
        "aedat3",
        "aedat2",
        "npy",
        "npz",
        "hdf5",
        "dat",
        "evt2",
        "evt3",
    ]


@pytest.mark.parametrize(
    ("name", "data"),
    [("empty.bs2", b""), ("empty.aedat", DVS128_HEADER), ("empty31.aedat", AEDAT31_HEADER + imu_packet(1))],
)
def test_empty_recordings(tmp_path: Path, name: str, data: bytes) -> None:
    with pytest.raises(InputFormatError, match=rf"{name}: file contains no events"):
        read_events(write(tmp_path / name, data))


def test_empty_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros(0, dtype=EVENT_DTYPE))
    with pytest.raises(InputFormatError, match=r"e\.npy: file contains no events"):
        read_events(tmp_path / "e.npy")
    write_hdf5(EventStream(np.zeros(0, dtype=EVENT_DTYPE), (2, 2, 2)), tmp_path / "e.h5")
    with pytest.raises(InputFormatError, match=r"e\.h5: file contains no events"):
        read_events(tmp_path / "e.h5")


class _Trap:
    """Unpickling this would create the folder named ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.marker,)


def test_pickled_object_array_refused(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    np.save(tmp_path / "evil.npy", np.array([_Trap(str(marker))], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "evil.npz", events=np.array([_Trap(str(marker))], dtype=object))
    for name in ("evil.npy", "evil.npz"):
        with pytest.raises(InputFormatError, match=rf"{name}.*allow_pickle=False"):
            read_events(tmp_path / name)
    assert not marker.exists()


def test_events_outside_given_sensor(tmp_path: Path) -> None:
    path = write(tmp_path / "a.bs2", nmnist_bytes([(1, 2, 1, 100), (12, 4, 0, 200)]))
    with pytest.raises(InputFormatError, match=r"a\.bs2: event 1 has x=12, outside the sensor"):
        read_events(path, sensor_size=(10, 10, 2))
    aedat = write(tmp_path / "a.aedat", AEDAT31_FILE)
    with pytest.raises(InputFormatError, match=r"a\.aedat: event 1 has x=127"):
        read_events(aedat, sensor_size=(64, 128, 2))


@pytest.mark.parametrize(
    ("name", "data"), [("a.aedat", AEDAT31_FILE), ("b.bs2", nmnist_bytes([(1, 2, 1, 100)]))]
)
def test_given_sensor_size_above_the_limit_refused(tmp_path: Path, name: str, data: bytes) -> None:
    # a caller's sensor size obeys the same limit as a stored one, for every format
    with pytest.raises(
        InputFormatError, match=rf"{name}.*W x H = 5000 x 128 exceeds the limit of 4096 x 4096"
    ):
        read_events(write(tmp_path / name, data), sensor_size=(5000, 128, 2))


def test_aedat31_x_outside_dvs128(tmp_path: Path) -> None:
    path = write(tmp_path / "a.aedat", AEDAT31_HEADER + polarity_packet([(1, 1, 1, 1, 1), (2, 300, 1, 1, 1)]))
    with pytest.raises(InputFormatError, match=r"a\.aedat: event 1 has x=300"):
        read_aedat31(path)


def test_nmnist_timestamps_backwards(tmp_path: Path) -> None:
    path = write(tmp_path / "b.bs2", nmnist_bytes([(1, 2, 1, 100), (3, 4, 0, 50)]))
    with pytest.raises(InputFormatError, match=r"b\.bs2: timestamps go backwards at event 1"):
        read_events(path)


@pytest.mark.parametrize(
    "reader",
    [
        read_events,
        detect_format,
        read_nmnist_binary,
        read_aedat4,
        read_aedat31,
        read_aedat2,
        read_numpy,
        read_hdf5,
    ],
)
def test_missing_file(tmp_path: Path, reader) -> None:
    with pytest.raises(AsaSnnError, match=r"nothing\.bin: no such event file"):
        reader(tmp_path / "nothing.bin")


# ---------------------------------------------------------------- property-based: only InputFormatError

READERS = [
    read_events,
    read_nmnist_binary,
    read_aedat4,
    read_aedat31,
    read_aedat2,
    lambda path: read_aedat2(path, camera="davis346"),
    lambda path: read_aedat2(path, camera="davis240"),
    read_numpy,
    read_hdf5,
]
PREFIXES = [
    b"",
    b"#!AER-DAT4.0\r\n",
    AEDAT31_HEADER,
    DVS128_HEADER,
    b"\x93NUMPY",
    b"PK\x03\x04",
    b"\x89HDF\r\n\x1a\n",
]
SUFFIXES = [".bin", ".aedat4", ".aedat", ".npy", ".npz", ".h5", ".dat"]


def read_or_format_error(reader, path: Path) -> EventStream | None:
    """The reader's result, or None when it raised InputFormatError (any other exception fails)."""
    try:
        return reader(path)
    except InputFormatError:
        return None


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from(PREFIXES),
    body=st.binary(max_size=300),
    suffix=st.sampled_from(SUFFIXES),
    reader=st.sampled_from(READERS),
)
def test_random_bytes_raise_only_input_format_error(prefix: bytes, body: bytes, suffix: str, reader) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / f"random{suffix}", prefix + body)
        result = read_or_format_error(reader, path)
        assert result is None or isinstance(result, EventStream)


PEAK_BYTES = 160 * 2**20
"""Most Python / NumPy memory (tracemalloc) reading one declared-size bomb may take: the 16 MiB any
file may decode to, a few copies of it, and the readers' own overhead."""


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(BOMB_KINDS),
    declared=st.one_of(
        st.integers(0, 2**40), st.sampled_from([2**24, 2**24 + 1, 2**31, 2**32 - 1, 2**32, 2**40])
    ),
)
def test_declared_size_bombs_refused_in_bounded_memory(kind: str, declared: int) -> None:
    # a file declaring up to 1 TB while holding a few bytes: InputFormatError or a small stream,
    # never more than PEAK_BYTES allocated, never a sensor above MAX_SENSOR_SIDE
    with tempfile.TemporaryDirectory() as folder:
        path = write_declared_bomb(Path(folder), kind, declared)
        tracemalloc.start()
        try:
            result = read_or_format_error(read_events, path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{kind} declaring {declared} bytes took {peak} bytes to read"
    if result is not None:
        assert max(result.sensor_size[:2]) <= events_module.MAX_SENSOR_SIDE
        assert result.events.nbytes <= 16 * 2**20


def _valid_files() -> dict[str, tuple[bytes, np.ndarray, object]]:
    """name -> (file bytes, events it holds, reader) for every format written here."""
    rows = [(t, x % 34, y % 34, p) for t, x, y, p in KNOWN.tolist()]
    files = {
        "a.bs2": (nmnist_bytes([(x, y, p, t) for t, x, y, p in rows]), events_of(rows), read_nmnist_binary),
        "a31.aedat": (AEDAT31_FILE, AEDAT31_EVENTS, read_aedat31),
        "a2.aedat": (
            aedat2_bytes(DVS128_HEADER, [(dvs128_address(x, y, p), t) for t, x, y, p in KNOWN.tolist()]),
            KNOWN,
            read_aedat2,
        ),
    }
    with tempfile.TemporaryDirectory() as folder:
        stream = EventStream(KNOWN, (128, 128, 2))
        np.save(Path(folder) / "a.npy", KNOWN)
        write_numpy(stream, Path(folder) / "a.npz")
        write_hdf5(stream, Path(folder) / "a.h5")
        for name, reader in [("a.npy", read_numpy), ("a.npz", read_numpy), ("a.h5", read_hdf5)]:
            files[name] = ((Path(folder) / name).read_bytes(), KNOWN, reader)
    return files


VALID_FILES = _valid_files()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(VALID_FILES)), fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files_fail_or_give_a_prefix(name: str, fraction: float) -> None:
    data, events, reader = VALID_FILES[name]
    cut = int(len(data) * fraction)
    with tempfile.TemporaryDirectory() as folder:
        result = read_or_format_error(reader, write(Path(folder) / name, data[:cut]))
    if result is not None:  # a cut at a record / packet boundary is a shorter valid file
        assert len(result) < len(events)
        np.testing.assert_array_equal(result.events, events[: len(result)])


def test_valid_files_read_whole() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, (data, events, reader) in VALID_FILES.items():
            np.testing.assert_array_equal(reader(write(Path(folder) / name, data)).events, events)
