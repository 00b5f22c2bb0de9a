"""Prophesee DAT / EVT 2.0 / EVT 3.0 through read_events: files written here following Prophesee's
published encodings (docs.prophesee.ai: "DAT File Format", "RAW File Format", "EVT 2.0 Format",
"EVT 3.0 Format"), read back and compared with the events written; detection, header geometry,
limits, truncation and corruption."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hostile_writers import assert_refused, run_bounded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asa_snn.cli import main
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.formats import SUPPORTED_FORMATS, _common, detect_format, prophesee, read_events
from asa_snn.errors import InputFormatError

# ---------------------------------------------------------------- writers following the published encodings

WIDTH, HEIGHT = 1280, 720


def header(*lines: str) -> bytes:
    """A ``%`` header: one ``% keyword value`` line per entry, each ending in a line feed."""
    return b"".join(f"% {line}\n".encode() for line in lines)


RAW3_HEADER = header(
    "camera_integrator_name Prophesee",
    "date 2023-03-29 16:37:46",
    "evt 3.0",
    f"format EVT3;height={HEIGHT};width={WIDTH}",
    f"geometry {WIDTH}x{HEIGHT}",
    "end",
)
RAW2_HEADER = header("date 2020-09-14 14:18:29", "evt 2.0", f"geometry {WIDTH}x{HEIGHT}")
DAT_HEADER = header("Data file containing CD events", "Version 2", f"Width {WIDTH}", f"Height {HEIGHT}")


def dat_bytes(events: np.ndarray, head: bytes = DAT_HEADER, kind: int = 12) -> bytes:
    """DAT: header, event type and size bytes, then (uint32 t, uint32 x | y << 14 | p << 28) records."""
    records = np.empty(len(events), dtype=[("t", "<u4"), ("word", "<u4")])
    records["t"] = events["t"]
    word = events["x"].astype(np.uint32) | (events["y"].astype(np.uint32) << 14)
    records["word"] = word | (events["p"].astype(np.uint32) << 28)
    return head + bytes([kind, 8]) + records.tobytes()


def evt2_bytes(events: np.ndarray, head: bytes = RAW2_HEADER) -> bytes:
    """EVT 2.0: an EVT_TIME_HIGH (0x8, t bits 33-6) whenever they change, then one CD word per event:
    type p (CD_OFF 0x0 / CD_ON 0x1), t bits 5-0 in bits 22-27, x in bits 11-21, y in bits 0-10."""
    words, time_high = [0xE << 28], None  # an OTHERS word, to be skipped
    for t, x, y, p in events.tolist():
        if t >> 6 != time_high:
            time_high = t >> 6
            words.append((0x8 << 28) | time_high)
        words.append((p << 28) | ((t & 63) << 22) | (x << 11) | y)
    return head + np.array(words, dtype="<u4").tobytes()


def evt3_bytes(events: np.ndarray, head: bytes = RAW3_HEADER) -> bytes:
    """EVT 3.0 from events sorted by (t, y, p, x): EVT_TIME_HIGH (0x8) and EVT_TIME_LOW (0x6) when
    the 24-bit time (t mod 2**24) changes (a new TIME_HIGH clears the low bits, so TIME_LOW follows
    it), EVT_ADDR_Y (0x0) when y changes; a lone event is an EVT_ADDR_X (0x2: p << 11 | x), two or
    more with equal t, y, p a VECT_BASE_X (0x3: p << 11 | x) and masks: VECT_12 (0x4) over the
    next 12 columns, VECT_8 (0x5) when 8 cover the rest; an OTHERS + CONTINUED_12 pair to skip."""
    words = [0xE000 | 0x14, 0xF000 | 0x123]
    time_high = time_low = y_now = None
    rows = events.tolist()
    i = 0
    while i < len(rows):
        t, _, y, p = rows[i]
        j = i
        while j < len(rows) and (rows[j][0], rows[j][2], rows[j][3]) == (t, y, p):
            j += 1
        xs = [row[1] for row in rows[i:j]]
        high, low = (t >> 12) & 0xFFF, t & 0xFFF
        if high != time_high:
            words.append(0x8000 | high)
            time_high, time_low = high, None
        if low != time_low:
            words.append(0x6000 | low)
            time_low = low
        if y != y_now:
            words.append(0x0000 | y)
            y_now = y
        if len(xs) == 1:
            words.append(0x2000 | (p << 11) | xs[0])
        else:
            k = 0
            while k < len(xs):
                base = xs[k]
                words.append(0x3000 | (p << 11) | base)
                while k < len(xs) and xs[k] < base + 12:
                    if xs[-1] < base + 8 and all(x < base + 8 for x in xs[k:]):
                        mask = sum(1 << (x - base) for x in xs[k:])
                        words.append(0x5000 | mask)
                        k = len(xs)
                        break
                    mask = sum(1 << (x - base) for x in xs[k:] if x < base + 12)
                    words.append(0x4000 | mask)
                    k += sum(1 for x in xs[k:] if x < base + 12)
                    base += 12
                    if k < len(xs) and xs[k] >= base + 12:
                        break  # a gap: a new VECT_BASE_X
        i = j
    return head + np.array(words, dtype="<u2").tobytes()


WRITERS = {"dat": (dat_bytes, ".dat"), "evt2": (evt2_bytes, ".raw"), "evt3": (evt3_bytes, ".raw")}


def recording(seed: int, n: int = 400, t_max: int = 40_000_000) -> np.ndarray:
    """Events sorted by (t, y, p, x) with runs of neighbouring pixels at equal t (vector words)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    t[1::3] = t[0:-1:3][: len(t[1::3])]  # shared timestamps
    x = rng.integers(0, WIDTH, n)
    x[1::3] = np.minimum(x[0:-1:3][: len(x[1::3])] + rng.integers(1, 30, len(x[1::3])), WIDTH - 1)
    y = rng.integers(0, HEIGHT, n)
    y[1::3] = y[0:-1:3][: len(y[1::3])]
    p = rng.integers(0, 2, n)
    p[1::3] = p[0:-1:3][: len(p[1::3])]
    events = make_events(t, x, y, p)
    events = events[np.lexsort((events["x"], events["p"], events["y"], events["t"]))]
    keep = np.ones(len(events), dtype=bool)
    keep[1:] = np.any(
        [events[name][1:] != events[name][:-1] for name in ("t", "x", "y", "p")], axis=0
    )  # one event per pixel and time
    return events[keep]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def read_or_none(path: Path, **options) -> EventStream | None:
    """read_events, or None when it raised InputFormatError (any other exception fails the test)."""
    try:
        return read_events(path, **options)
    except InputFormatError:
        return None


# ---------------------------------------------------------------- round trips and detection


@pytest.mark.parametrize("encoding", ["dat", "evt2", "evt3"])
def test_round_trip_through_read_events(tmp_path: Path, encoding: str, capfd) -> None:
    events = recording(1, t_max={"dat": 2**32 - 1, "evt2": 2**34 - 1, "evt3": 2**26}[encoding])
    writer, suffix = WRITERS[encoding]
    path = write(tmp_path / f"rec{suffix}", writer(events))
    assert detect_format(path) == encoding
    stream = read_events(path)
    assert stream.sensor_size == (WIDTH, HEIGHT, 2)
    assert stream.source == str(path)
    np.testing.assert_array_equal(stream.events, events)
    assert capfd.readouterr().err == ""


def test_evt3_vectors_and_time_base_wraps(tmp_path: Path) -> None:
    # a VECT_12 and a VECT_8 of 20 neighbours, then times across a TIME_HIGH step (4095 -> 4097 us,
    # where expelliarmus alone gives 8193), and across the 2**24 us wrap of the 24-bit time base
    rows = [(100, 10 + k, 5, 1) for k in range(20)] + [(4095, 3, 6, 0), (4097, 4, 6, 0)]
    rows += [
        (2**24 - 5, 7, 7, 1),
        (2**24 + 3, 8, 7, 1),
        (2**24 + 3000 * 4096, 9, 8, 0),
        (2**25 + 10, 1, 9, 1),
    ]
    events = make_events(*(np.array(column) for column in zip(*rows, strict=True)))
    data = evt3_bytes(events)
    assert sum(1 for word in np.frombuffer(data[len(RAW3_HEADER) :], "<u2") if word >> 12 in (4, 5)) == 2
    stream = read_events(write(tmp_path / "v.raw", data))
    np.testing.assert_array_equal(stream.events, events)


def test_evt3_repeated_time_high_keeps_the_low_bits(tmp_path: Path) -> None:
    words = [0x8001, 0x6005, 0x0002, 0x2003, 0x8001, 0x2004, 0x8002, 0x2005]  # high 1, low 5; high 2 clears
    stream = read_events(write(tmp_path / "h.raw", RAW3_HEADER + np.array(words, "<u2").tobytes()))
    assert stream.events["t"].tolist() == [4096 + 5, 4096 + 5, 8192]
    assert stream.events["x"].tolist() == [3, 4, 5]


@pytest.mark.parametrize("encoding", ["dat", "evt2"])
def test_files_written_by_expelliarmus(tmp_path: Path, encoding: str) -> None:
    # expelliarmus' own writer (its headers carry no geometry); its EVT 3.0 writer emits one
    # EVT_TIME_HIGH only (expelliarmus issue #20), so it is not used for EVT 3.0
    from expelliarmus import Wizard

    events = recording(2, t_max=2**31)
    path = tmp_path / f"w{WRITERS[encoding][1]}"
    Wizard(encoding=encoding).save(path, events)
    assert detect_format(path) == encoding
    with pytest.raises(InputFormatError, match=r"gives no sensor size.*sensor_size="):
        read_events(path)
    stream = read_events(path, sensor_size=(WIDTH, HEIGHT, 2))
    np.testing.assert_array_equal(stream.events, events)


def test_detection_by_header_not_by_name(tmp_path: Path) -> None:
    events = recording(3, n=30)
    # the format line first, an unusual name: the header decides, a hard link gives expelliarmus '.raw'
    head = header(f"format EVT3;height={HEIGHT};width={WIDTH}", "serial_number 00ca0009")
    path = write(tmp_path / "camera-7.evt", evt3_bytes(events, head))
    assert detect_format(path) == "evt3"
    np.testing.assert_array_equal(read_events(path).events, events)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camera-7.evt"]
    # a .raw without an encoding line: not detected, readable with the format given
    bare = write(tmp_path / "bare.raw", evt2_bytes(events, header(f"geometry {WIDTH}x{HEIGHT}")))
    with pytest.raises(InputFormatError, match=r"cannot tell the event file format"):
        read_events(bare)
    np.testing.assert_array_equal(read_events(bare, format="evt2").events, events)
    with pytest.raises(InputFormatError, match=r"read as evt3, but the header names \['evt2'\]"):
        read_events(write(tmp_path / "two.raw", evt2_bytes(events)), format="evt3")


def test_supported_format_names() -> None:
    assert {"dat", "evt2", "evt3"} <= set(SUPPORTED_FORMATS)
    assert "expelliarmus" in SUPPORTED_FORMATS["evt3"]


# ---------------------------------------------------------------- header geometry and limits

EVENTS = make_events(np.array([10, 20, 30]), np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([0, 1, 1]))


@pytest.mark.parametrize(
    ("lines", "size"),
    [
        (["evt 2.0", "geometry 640x480"], (640, 480, 2)),
        (["evt 2.0", "format EVT2;height=320;width=320"], (320, 320, 2)),
        (["evt 2.0", "width 304", "height 240"], (304, 240, 2)),
        (["evt 2.0", "geometry 640x480", "format EVT2;height=480;width=640"], (640, 480, 2)),
    ],
)
def test_header_geometry(tmp_path: Path, lines: list[str], size: tuple[int, int, int]) -> None:
    assert read_events(write(tmp_path / "g.raw", evt2_bytes(EVENTS, header(*lines)))).sensor_size == size


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["evt 2.0"], r"g\.raw: Prophesee RAW EVT 2\.0 header gives no sensor size.*sensor_size=\(W, H, 2\)"),
        (["evt 2.0", "geometry 640x480", "width 320", "height 320"], r"disagree on the sensor size"),
        (["evt 2.0", "geometry 640"], r"geometry is '640'; expected WIDTHxHEIGHT"),
        (["evt 2.0", "geometry 0x480"], r"geometry width is '0'"),
        (["evt 2.0", "geometry 20000x480"], r"20000 x 480 exceeds the limit of 4096"),
        (["evt 2.0", "evt 3.0", "geometry 640x480"], r"the header names \['evt2', 'evt3'\]"),
    ],
)
def test_bad_header_geometry(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write(tmp_path / "g.raw", evt2_bytes(EVENTS, header(*lines)))
    with pytest.raises(InputFormatError, match=message):
        read_events(path, format="evt2")


def test_sensor_size_given_by_the_caller(tmp_path: Path) -> None:
    path = write(tmp_path / "s.raw", evt2_bytes(EVENTS, header("evt 2.0")))
    assert read_events(path, sensor_size=(8, 8, 2)).sensor_size == (8, 8, 2)
    with pytest.raises(InputFormatError, match=r"sensor_size given by the caller.*exceeds"):
        read_events(path, sensor_size=(5000, 8, 2))
    with pytest.raises(InputFormatError, match=r"s\.raw: event 2 has x=3, outside the sensor"):
        read_events(path, sensor_size=(3, 8, 2))


def test_event_count_checked_before_the_decoder_allocates(tmp_path: Path, monkeypatch) -> None:
    # 4000 VECT_12 words with all 12 bits set: 48,000 events (37 bytes each at the peak) in 8 KB
    words = [0x8000, 0x6000, 0x0001, 0x3000] + [0x4FFF] * 4000
    path = write(
        tmp_path / "dense.raw", header("evt 3.0", "geometry 4096x2") + np.array(words, "<u2").tobytes()
    )
    monkeypatch.setattr(_common, "MIN_DECODED_BYTES", 2**16)
    monkeypatch.setattr(_common, "MAX_EXPANSION", 10)
    monkeypatch.setattr(prophesee, "_decode", lambda *args: pytest.fail("decoder called"))
    with pytest.raises(
        InputFormatError, match=r"dense\.raw: .*48000 events \(37 bytes each\) declares 1776000 bytes"
    ):
        read_events(path)


def test_evt3_vector_bomb_refused_in_bounded_memory(tmp_path: Path) -> None:
    # 40 MiB of full VECT_12 words: 252 million events, 9 GB at the peak of a read; refused after
    # the count, before the decoder allocates, in a child whose address space is capped
    words = np.full(20 * 2**20, 0x4FFF, dtype="<u2")
    words[:4] = [0x8000, 0x6000, 0x0001, 0x3000]
    path = write(tmp_path / "bomb.raw", header("evt 3.0", "geometry 2048x2048") + words.tobytes())
    result = run_bounded(f"read_events({str(path)!r})", tmp_path)
    assert_refused(result, "bomb.raw", "251658192 events", "declares")


def test_dense_evt3_reads_in_bounded_memory(tmp_path: Path) -> None:
    # full vectors over 12 rows of 2040 pixels: 24,480 events in 4 KB, decoded under the cap
    row = [0x3000, *([0x4FFF] * 170)]
    words = [0x8000, 0x6000] + [word for y in range(12) for word in [y, *row]]
    path = write(
        tmp_path / "dense.raw", header("evt 3.0", "geometry 2048x12") + np.array(words, "<u2").tobytes()
    )
    result = run_bounded(f"print('events', len(read_events({str(path)!r})))", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "events 24480" in result.stdout


# ---------------------------------------------------------------- truncation and corruption


@pytest.mark.parametrize(
    ("encoding", "cut", "message"),
    [
        ("dat", 3, r"incomplete 8-byte Prophesee DAT record at byte offset \d+ \(5 bytes left"),
        ("evt2", 1, r"incomplete 4-byte Prophesee RAW EVT 2\.0 word at byte offset \d+ \(3 bytes left"),
        ("evt3", 1, r"incomplete 2-byte Prophesee RAW EVT 3\.0 word at byte offset \d+ \(1 bytes left"),
    ],
)
def test_partial_trailing_record(tmp_path: Path, encoding: str, cut: int, message: str) -> None:
    writer, suffix = WRITERS[encoding]
    path = write(tmp_path / f"t{suffix}", writer(recording(4, n=20))[:-cut])
    with pytest.raises(InputFormatError, match=message):
        read_events(path)


@pytest.mark.parametrize("encoding", ["dat", "evt2", "evt3"])
def test_truncated_header_does_not_hang(tmp_path: Path, encoding: str) -> None:
    # expelliarmus loops forever on a '%' line without a line feed; it is refused before
    writer, suffix = WRITERS[encoding]
    data = writer(EVENTS)
    head = data[: data.index(b"\n", data.index(b"geometry" if encoding != "dat" else b"Height"))]
    with pytest.raises(InputFormatError, match=r"header line at byte offset \d+ has no line feed"):
        read_events(write(tmp_path / f"h{suffix}", head), format=encoding)


def test_dat_event_type_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match=r"event type 14 \(EventExtTrigger\).*expected CD events"):
        read_events(write(tmp_path / "trig.dat", dat_bytes(EVENTS, kind=14)))
    with pytest.raises(InputFormatError, match=r"ends at byte offset \d+ inside the event type and size"):
        read_events(write(tmp_path / "short.dat", DAT_HEADER + b"\x0c"))
    with pytest.raises(InputFormatError, match=r"empty\.dat: file contains no events"):
        read_events(write(tmp_path / "empty.dat", DAT_HEADER + b"\x0c\x08"))
    with pytest.raises(InputFormatError, match=r"empty\.raw: file contains no events"):
        read_events(write(tmp_path / "empty.raw", RAW3_HEADER + b"\x01\x80\x02\x60"))
    with pytest.raises(InputFormatError, match=r"x\.dat: expected a Prophesee header"):
        read_events(write(tmp_path / "x.dat", b"\x00" * 64))


@pytest.mark.parametrize(
    ("encoding", "word", "message"),
    [
        ("evt3", 0xA001, r"EXT_TRIGGER \(type 0xA\), which expelliarmus cannot decode"),
        ("evt3", 0xC001, r"type 0xC, a reserved type"),
        ("evt3", 0x1001, r"type 0x1, a reserved type"),
        ("evt2", 0x50000000, r"type 0x5, a reserved type"),
    ],
)
def test_reserved_word_types(tmp_path: Path, encoding: str, word: int, message: str) -> None:
    writer, _ = WRITERS[encoding]
    data = writer(EVENTS)
    dtype = "<u2" if encoding == "evt3" else "<u4"
    at = len(data) - 2 * np.dtype(dtype).itemsize
    corrupt = data[:at] + np.array([word], dtype).tobytes() + data[at:]
    with pytest.raises(InputFormatError, match=rf"w\.raw: .* word at byte offset {at} .*{message}"):
        read_events(write(tmp_path / "w.raw", corrupt))


def test_backwards_timestamps(tmp_path: Path) -> None:
    words = [0x8002, 0x6000, 0x0001, 0x2001, 0x8001, 0x6000, 0x2002]  # high 2 -> 1: backwards, no wrap
    with pytest.raises(InputFormatError, match=r"b\.raw: timestamps go backwards at event 1"):
        read_events(write(tmp_path / "b.raw", RAW3_HEADER + np.array(words, "<u2").tobytes()))


VALID = {encoding: writer(recording(5, n=60)) for encoding, (writer, _) in WRITERS.items()}
VALID_EVENTS = recording(5, n=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoding=st.sampled_from(sorted(VALID)), fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files_fail_or_give_a_prefix(encoding: str, fraction: float) -> None:
    data = VALID[encoding]
    with tempfile.TemporaryDirectory() as folder:
        result = read_or_none(
            write(Path(folder) / f"r{WRITERS[encoding][1]}", data[: int(len(data) * fraction)])
        )
    if result is not None:  # a cut at a record / word boundary is a shorter valid file
        assert len(result) < len(VALID_EVENTS)
        np.testing.assert_array_equal(result.events, VALID_EVENTS[: len(result)])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    encoding=st.sampled_from(sorted(VALID)),
    flips=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 7)), min_size=1, max_size=4),
    junk=st.binary(max_size=8),
)
def test_corrupt_bytes_raise_only_input_format_error(encoding: str, flips, junk: bytes) -> None:
    data = bytearray(VALID[encoding])
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    with tempfile.TemporaryDirectory() as folder:
        for name in (f"c{WRITERS[encoding][1]}", "c.bin"):
            result = read_or_none(write(Path(folder) / name, bytes(data) + junk))
            assert result is None or isinstance(result, EventStream)
        result = read_or_none(write(Path(folder) / "f.raw", bytes(data)), format=encoding)
        assert result is None or isinstance(result, EventStream)


def test_decoder_failure_is_one_input_format_error(tmp_path: Path, monkeypatch) -> None:
    import expelliarmus

    def broken(self, fpath=None):
        os.write(2, b"ERROR: something in C\n")  # as the C library prints it
        raise RuntimeError("ERROR: Something went wrong while creating the array from the file.")

    monkeypatch.setattr(expelliarmus.Wizard, "read", broken)
    path = write(tmp_path / "d.raw", evt2_bytes(EVENTS))
    with pytest.raises(
        InputFormatError, match=r"d\.raw: expelliarmus failed on this \d+-byte .*something in C"
    ):
        read_events(path)
    monkeypatch.setattr(expelliarmus.Wizard, "read", lambda self, fpath=None: None)
    with pytest.raises(InputFormatError, match=r"d\.raw: expelliarmus decoded nothing"):
        read_events(path)


# ---------------------------------------------------------------- the command line


def test_inspect_names_the_prophesee_format(tmp_path: Path, monkeypatch, capsys) -> None:
    path = write(tmp_path / "rec.raw", evt3_bytes(recording(6, n=50)))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "inspect", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["format"], summary["events"], summary["sensor_size"]) == ("evt3", 50, [WIDTH, HEIGHT, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.raw"]
