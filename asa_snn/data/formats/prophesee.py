"""Prophesee recordings: DAT and RAW (EVT 2.0, EVT 3.0), decoded with ``expelliarmus``.

Layouts, from Prophesee's "DAT File Format", "RAW File Format", "EVT 2.0 Format" and
"EVT 3.0 Format" pages (docs.prophesee.ai), all little-endian:

- **Header** (both file kinds): ASCII lines ``% keyword value`` ending in a line feed (0x0A),
  e.g. ``% evt 3.0``, ``% format EVT3;height=720;width=1280``, ``% geometry 1280x720``, ``% end``
  (RAW) or ``% Data file containing CD events``, ``% Version 2``, ``% Width 640``, ``% Height 480``
  (DAT). The data starts at the first line that does not begin with ``%``.
- **DAT**: after the header one byte event type (0 Event2d, 12 EventCD, 14 EventExtTrigger) and
  one byte event size (8), then 8-byte records: uint32 timestamp (us), uint32 word with x in bits
  0-13, y in bits 14-27, polarity in bits 28-31.
- **EVT 2.0**: 32-bit words, type in bits 28-31: CD_OFF 0x0 / CD_ON 0x1 (timestamp bits 5-0 in
  bits 22-27, x in bits 11-21, y in bits 0-10), EVT_TIME_HIGH 0x8 (timestamp bits 33-6 in bits
  0-27), EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0xF; other types are reserved.
- **EVT 3.0**: 16-bit words, type in bits 12-15, decoded against a state: EVT_ADDR_Y 0x0 (y),
  EVT_ADDR_X 0x2 (one event: polarity in bit 11, x), VECT_BASE_X 0x3 (polarity and base x of the
  next vectors), VECT_12 0x4 / VECT_8 0x5 (one event per set bit of a 12- / 8-bit mask at base x +
  bit, then base x advances by 12 / 8), EVT_TIME_LOW 0x6 and EVT_TIME_HIGH 0x8 (bits 11-0 and
  23-12 of a 24-bit time base, us), CONTINUED_4 0x7, EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED_12 0xF.

Polarity 0 is OFF (a decrease in illumination) and 1 is ON, timestamps are microseconds: both as
in :data:`~asa_snn.data.events.EVENT_DTYPE`, so they are copied unchanged.

``expelliarmus`` (C, via ctypes) decodes the events. Its C code trusts the file: a header line
without a line feed makes it loop forever, a failed decode comes back as None with a message on
the C stderr, and its EVT 3.0 timestamps are wrong (see :func:`evt3_timestamps`). So every file is
walked here first, in bounded chunks: header, record alignment, word types and the exact event
count, whose memory (:func:`bytes_per_event`) is checked against
:func:`~asa_snn.data.formats._common.decoded_size_limit` of the file size before the decoder
allocates anything. An EVT 3.0 word can hold 12 events, so a file of nothing but full vectors
declares more than the limit's 100 bytes per stored byte and is refused: the limit allows down to
100 / 37, about 0.37, stored bytes per EVT 3.0 event (0.29 for the others).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asa_snn.data.events import EVENT_DTYPE, EventStream, SensorSize, check_sensor_limit, make_events
from asa_snn.data.formats._common import PathLikeStr, check_decoded_size, existing_file, finish
from asa_snn.errors import InputFormatError

PROPHESEE_ENCODINGS = {
    "dat": "Prophesee DAT",
    "evt2": "Prophesee RAW EVT 2.0",
    "evt3": "Prophesee RAW EVT 3.0",
}
"""Encoding name (as ``expelliarmus`` and :func:`read_events` spell it) -> name in messages."""

HEADER_MAX_BYTES = 2**20
"""Longest ``%`` header read (1 MiB); Prophesee's own headers take well under 1 KiB."""

DECODER_EVENT_BYTES = 16
"""Bytes ``expelliarmus`` allocates per event (its ``event_t``: int64 t, int16 x, int16 y, uint8 p,
padded to 16)."""


def bytes_per_event(encoding: str) -> int:
    """Bytes held per event at the peak of a read, the size checked against the decoded-size limit:
    the decoder's record, the returned :data:`~asa_snn.data.events.EVENT_DTYPE` event and, for
    EVT 3.0, the int64 timestamp computed here."""
    return DECODER_EVENT_BYTES + EVENT_DTYPE.itemsize + (8 if encoding == "evt3" else 0)


DAT_RECORD_BYTES = 8
DAT_EVENT_TYPES = {0: "Event2d", 12: "EventCD", 14: "EventExtTrigger"}
"""DAT event type byte -> Prophesee's name; 0 and 12 hold CD events, the only ones read."""

EVT2_TYPES = {
    0x0: "CD_OFF",
    0x1: "CD_ON",
    0x8: "EVT_TIME_HIGH",
    0xA: "EXT_TRIGGER",
    0xE: "OTHERS",
    0xF: "CONTINUED",
}
EVT3_TYPES = {
    0x0: "EVT_ADDR_Y",
    0x2: "EVT_ADDR_X",
    0x3: "VECT_BASE_X",
    0x4: "VECT_12",
    0x5: "VECT_8",
    0x6: "EVT_TIME_LOW",
    0x7: "CONTINUED_4",
    0x8: "EVT_TIME_HIGH",
    0xA: "EXT_TRIGGER",
    0xE: "OTHERS",
    0xF: "CONTINUED_12",
}
"""Word types of the published formats; any other type is reserved and refused."""

_EVT3_UNDECODABLE = {0xA: "EXT_TRIGGER"}
"""EVT 3.0 word types Prophesee defines that ``expelliarmus`` 1.1 rejects (it expects triggers at
type 0xC, a reserved type)."""

_REQUIRED_SUFFIX = {"dat": ".dat", "evt2": ".raw", "evt3": ".raw"}
"""``expelliarmus`` refuses a path whose resolved name does not end in this."""

_WORD_DTYPE = {"evt2": np.dtype("<u4"), "evt3": np.dtype("<u2")}
_CHUNK_WORDS = 2**20
_POPCOUNT = np.array([bin(value).count("1") for value in range(4096)], dtype=np.int64)


@dataclass(frozen=True)
class PropheseeHeader:
    """The ``%`` header of a Prophesee file.

    Args:
        lines: the header lines without ``%`` and line end, stripped.
        data_offset: byte offset of the first data byte.
    """

    lines: tuple[str, ...]
    data_offset: int

    def values(self, keyword: str) -> list[str]:
        """Values of the lines whose first word is ``keyword`` (case-insensitive)."""
        found = []
        for line in self.lines:
            parts = line.split(None, 1)
            if parts and parts[0].lower() == keyword.lower():
                found.append(parts[1].strip() if len(parts) > 1 else "")
        return found


def _split_header(data: bytes) -> tuple[list[str], int, int | None]:
    """(lines, offset after the last complete line, offset of an unterminated line or None)."""
    lines: list[str] = []
    offset = 0
    while offset < len(data) and data[offset] == ord("%"):
        newline = data.find(b"\n", offset)
        if newline < 0:
            return lines, offset, offset
        lines.append(data[offset + 1 : newline].decode("latin-1").strip())
        offset = newline + 1
    return lines, offset, None


def _encodings_named(header: PropheseeHeader) -> set[str]:
    """Encodings the header names: ``% evt 2.0|3.0``, ``% format EVT2|EVT3;...``, ``% Data file
    containing ...`` (DAT); an unsupported one (EVT 2.1, histograms) by its own text."""
    named = set()
    for value in header.values("evt"):
        named.add({"2.0": "evt2", "3.0": "evt3", "2": "evt2", "3": "evt3"}.get(value, f"evt {value}"))
    for value in header.values("format"):
        kind = value.split(";", 1)[0].strip().upper()
        named.add({"EVT2": "evt2", "EVT3": "evt3"}.get(kind, f"format {kind}"))
    if any(line.lower().startswith("data file containing") for line in header.lines):
        named.add("dat")
    return named


def sniff_prophesee(head: bytes) -> str | None:
    """The encoding (``dat``, ``evt2``, ``evt3``) the ``%`` header at the start of ``head`` names,
    or None when it names none, several, or an unsupported one."""
    lines, offset, _ = _split_header(head)
    named = _encodings_named(PropheseeHeader(tuple(lines), offset))
    return next(iter(named)) if len(named) == 1 and named <= set(PROPHESEE_ENCODINGS) else None


def read_header(path: PathLikeStr) -> PropheseeHeader:
    """Read the ``%`` header of a Prophesee file.

    Raises:
        InputFormatError: the file does not start with ``%``; a header line without a line feed
            (a truncated header; ``expelliarmus`` would loop forever on it); a header longer than
            :data:`HEADER_MAX_BYTES`.
    """
    file = existing_file(path)
    with open(file, "rb") as handle:
        data = handle.read(HEADER_MAX_BYTES + 1)
    if not data.startswith(b"%"):
        raise InputFormatError(
            f"{file}: expected a Prophesee header (lines starting with '%'), found the first bytes "
            f"{data[:16]!r}"
        )
    lines, offset, unterminated = _split_header(data[:HEADER_MAX_BYTES])
    if unterminated is not None:
        if len(data) <= HEADER_MAX_BYTES:
            raise InputFormatError(
                f"{file}: header line at byte offset {unterminated} has no line feed before the end of "
                f"the {len(data)}-byte file (truncated header)"
            )
        raise InputFormatError(
            f"{file}: header is longer than {HEADER_MAX_BYTES} bytes; expected a few lines"
        )
    return PropheseeHeader(tuple(lines), offset)


def _positive(text: str, what: str, file: Path) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputFormatError(f"{file}: header {what} is {text!r}; expected a positive integer")
    return value


def header_geometry(header: PropheseeHeader, file: Path) -> tuple[int, int] | None:
    """Sensor (width, height) from ``% geometry WxH``, ``% format ...;height=H;width=W`` or
    ``% width`` / ``% height`` (DAT writes ``Width`` / ``Height``); None when the header has none.

    Raises:
        InputFormatError: a malformed value, or lines that disagree.
    """
    found: dict[tuple[int, int], str] = {}
    for value in header.values("geometry"):
        width, sep, height = value.lower().partition("x")
        if not sep:
            raise InputFormatError(f"{file}: header geometry is {value!r}; expected WIDTHxHEIGHT")
        size = (_positive(width, "geometry width", file), _positive(height, "geometry height", file))
        found.setdefault(size, f"geometry {value}")
    for value in header.values("format"):
        options = dict(part.partition("=")[::2] for part in value.split(";")[1:])
        options = {key.strip().lower(): item.strip() for key, item in options.items()}
        if "width" in options or "height" in options:
            size = (
                _positive(options.get("width", ""), "format width", file),
                _positive(options.get("height", ""), "format height", file),
            )
            found.setdefault(size, f"format {value}")
    widths, heights = header.values("width"), header.values("height")
    if widths or heights:
        if len(widths) != 1 or len(heights) != 1:
            raise InputFormatError(
                f"{file}: header has {len(widths)} width and {len(heights)} height lines; expected one "
                f"of each"
            )
        size = (_positive(widths[0], "width", file), _positive(heights[0], "height", file))
        found.setdefault(size, f"width {widths[0]} / height {heights[0]}")
    if len(found) > 1:
        raise InputFormatError(
            f"{file}: header lines disagree on the sensor size: {'; '.join(found.values())}"
        )
    return next(iter(found), None)


def _chunks(file: Path, offset: int, dtype: np.dtype) -> Iterator[tuple[int, np.ndarray]]:
    """(byte offset, words) of the data from ``offset`` on, at most :data:`_CHUNK_WORDS` at a time."""
    with open(file, "rb") as handle:
        handle.seek(offset)
        while block := handle.read(_CHUNK_WORDS * dtype.itemsize):
            if len(block) % dtype.itemsize:
                raise InputFormatError(f"{file}: file changed while it was read (byte offset {offset})")
            yield offset, np.frombuffer(block, dtype=dtype)
            offset += len(block)


def _events_per_word(kind: np.ndarray, words: np.ndarray, encoding: str) -> np.ndarray:
    """Events each word encodes: 1 per CD word (EVT 2.0) or EVT_ADDR_X word (EVT 3.0), one per set
    mask bit of VECT_12 / VECT_8, 0 for the rest."""
    if encoding == "evt2":
        return (kind <= 0x1).astype(np.int64)
    counts = (kind == 0x2).astype(np.int64)
    payload = words.astype(np.int64)
    for vector, mask in ((0x4, 0xFFF), (0x5, 0xFF)):
        where = kind == vector
        counts[where] = _POPCOUNT[payload[where] & mask]
    return counts


def _count_words(file: Path, offset: int, encoding: str) -> int:
    """Walk the EVT words, refuse reserved (or undecodable) types, and count the events."""
    dtype = _WORD_DTYPE[encoding]
    shift = 8 * dtype.itemsize - 4
    known = EVT2_TYPES if encoding == "evt2" else EVT3_TYPES
    allowed = np.zeros(16, dtype=bool)
    allowed[[key for key in known if encoding == "evt2" or key not in _EVT3_UNDECODABLE]] = True
    total = 0
    for start, words in _chunks(file, offset, dtype):
        kind = (words >> shift).astype(np.intp)
        bad = np.flatnonzero(~allowed[kind])
        if bad.size:
            index = int(bad[0])
            value = int(kind[index])
            at = start + index * dtype.itemsize
            name = PROPHESEE_ENCODINGS[encoding]
            if value in _EVT3_UNDECODABLE and encoding == "evt3":
                raise InputFormatError(
                    f"{file}: {name} word at byte offset {at} is an {_EVT3_UNDECODABLE[value]} (type "
                    f"0x{value:X}), which expelliarmus cannot decode; re-export the recording without "
                    f"trigger events"
                )
            raise InputFormatError(
                f"{file}: {name} word at byte offset {at} has type 0x{value:X}, a reserved type (expected "
                f"{', '.join(f'0x{key:X} {text}' for key, text in known.items())}); corrupt data"
            )
        total += int(_events_per_word(kind, words, encoding).sum())
    return total


def _ffill(mask: np.ndarray, values: np.ndarray, carry: int) -> np.ndarray:
    """At each position, ``values`` at the last position where ``mask`` is set, ``carry`` before the first."""
    index = np.where(mask, np.arange(len(mask)), -1)
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, values[index], carry)


EVT3_LOOP_DROP = 2048
"""An EVT_TIME_HIGH at least this much below the previous one starts a new 2**24 us loop."""


def evt3_timestamps(file: Path, offset: int, count: int) -> np.ndarray:
    """Timestamps (us) of the ``count`` events of an EVT 3.0 file, decoded per Prophesee's spec.

    ``expelliarmus`` 1.1 adds 4096 us whenever EVT_TIME_LOW decreases, also when EVT_TIME_HIGH has
    just advanced, so its timestamps run fast on camera recordings (expelliarmus issue #19: 5.1 s
    for a 2.3 s recording). Here, as in Prophesee's OpenEB EVT 3.0 decoder: EVT_TIME_LOW sets bits
    11-0; EVT_TIME_HIGH sets bits 23-12 and, when its value changes, clears bits 11-0; an
    EVT_TIME_HIGH at least :data:`EVT3_LOOP_DROP` below the previous one adds 2**24 us (the 24-bit
    time base wrapped). An event takes the time at its word; events come in word order, mask bits
    in increasing order, as ``expelliarmus`` returns them.
    """
    times = np.empty(count, dtype=np.int64)
    filled, high, loops, base, low = 0, 0, 0, 0, 0
    for _, words in _chunks(file, offset, _WORD_DTYPE["evt3"]):
        kind = words >> 12
        payload = (words & 0xFFF).astype(np.int64)
        is_high = kind == 0x8
        highs = payload[is_high]
        previous = np.concatenate(([high], highs[:-1]))
        chunk_loops = loops + np.cumsum(previous >= highs + EVT3_LOOP_DROP)
        bases = np.zeros(len(words), dtype=np.int64)
        bases[is_high] = (chunk_loops << 24) | (highs << 12)
        lows = np.full(len(words), -1, dtype=np.int64)
        lows[kind == 0x6] = payload[kind == 0x6]
        lows[np.flatnonzero(is_high)[highs != previous]] = 0
        word_base = _ffill(is_high, bases, base)
        word_low = _ffill(lows >= 0, lows, low)
        chunk = np.repeat(word_base + word_low, _events_per_word(kind, words, "evt3"))
        if filled + len(chunk) > count:
            raise InputFormatError(f"{file}: file changed while it was read (more than {count} events)")
        times[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
        if highs.size:
            high, loops = int(highs[-1]), int(chunk_loops[-1])
        base, low = int(word_base[-1]), int(word_low[-1])
    if filled != count:
        raise InputFormatError(f"{file}: file changed while it was read ({filled} events, expected {count})")
    return times


def _count_events(file: Path, header: PropheseeHeader, encoding: str) -> tuple[int, int]:
    """(events, offset of the first event word / record) after checking the data layout."""
    size = file.stat().st_size
    start = header.data_offset
    name = PROPHESEE_ENCODINGS[encoding]
    if encoding == "dat":
        with open(file, "rb") as handle:
            handle.seek(start)
            kind_size = handle.read(2)
        if len(kind_size) < 2:
            raise InputFormatError(
                f"{file}: {name} file ends at byte offset {size} inside the event type and size bytes "
                f"expected after the header (truncated)"
            )
        kind, record = kind_size
        if kind not in (0, 12) or record != DAT_RECORD_BYTES:
            label = DAT_EVENT_TYPES.get(kind, "unknown")
            raise InputFormatError(
                f"{file}: {name} event type {kind} ({label}) of size {record} at byte offset {start}; "
                f"expected CD events: type 0 (Event2d) or 12 (EventCD) of size {DAT_RECORD_BYTES}"
            )
        start += 2
        count, partial = divmod(size - start, DAT_RECORD_BYTES)
        unit = DAT_RECORD_BYTES
    else:
        unit = _WORD_DTYPE[encoding].itemsize
        count, partial = None, (size - start) % unit
    if partial:
        raise InputFormatError(
            f"{file}: incomplete {unit}-byte {name} {'record' if encoding == 'dat' else 'word'} at byte "
            f"offset {size - partial} ({partial} bytes left; truncated)"
        )
    if count is None:
        count = _count_words(file, start, encoding)
    if count == 0:
        raise InputFormatError(f"{file}: file contains no events")
    declared = count * bytes_per_event(encoding)
    check_decoded_size(
        declared, size, file, f"{name} data of {count} events ({bytes_per_event(encoding)} bytes each)"
    )
    return count, start


@contextlib.contextmanager
def _decoder_path(file: Path, encoding: str) -> Iterator[Path]:
    """``file``, or a hard link to it named ``recording.dat`` / ``.raw`` in a temporary folder when its
    name lacks the suffix ``expelliarmus`` insists on (it resolves symbolic links before checking)."""
    resolved = file.resolve()
    suffix = _REQUIRED_SUFFIX[encoding]
    if str(resolved).endswith(suffix):
        yield resolved
        return
    with tempfile.TemporaryDirectory(prefix="asa_snn_prophesee_") as folder:
        link = Path(folder) / f"recording{suffix}"
        try:
            os.link(resolved, link)
        except OSError as exc:
            raise InputFormatError(
                f"{file}: expelliarmus reads {PROPHESEE_ENCODINGS[encoding]} files only under a name "
                f"ending in '{suffix}' and a link with that name could not be made ({exc.strerror}); "
                f"rename the file"
            ) from exc
        yield link


@contextlib.contextmanager
def _c_stderr_captured() -> Iterator[list[str]]:
    """Send what the C decoder prints on file descriptor 2 to a temporary file; the list holds it
    afterwards (so a command line keeps its one error line)."""
    captured: list[str] = []
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2: nothing to keep clean
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(" ".join(sink.read(4096).decode("utf-8", "replace").split()))


def _decode(file: Path, encoding: str) -> np.ndarray:
    """Events decoded by ``expelliarmus`` (fields t, x, y, p), every decoder failure an InputFormatError."""
    from expelliarmus import Wizard

    size = file.stat().st_size
    name = PROPHESEE_ENCODINGS[encoding]
    stderr: list[str] = []
    try:
        with _decoder_path(file, encoding) as target, _c_stderr_captured() as stderr:
            decoded = Wizard(encoding=encoding).read(target)
    except InputFormatError:
        raise
    except MemoryError as exc:
        raise InputFormatError(
            f"{file}: expelliarmus ran out of memory on this {size}-byte {name} file"
        ) from exc
    except Exception as exc:  # ValueError / RuntimeError / TypeError / OSError from the wrapper
        said = f" (it printed: {stderr[0]})" if stderr and stderr[0] else ""
        raise InputFormatError(
            f"{file}: expelliarmus failed on this {size}-byte {name} file: "
            f"{' '.join(str(exc).split()) or type(exc).__name__}{said}"
        ) from exc
    if decoded is None:
        said = f": {stderr[0]}" if stderr and stderr[0] else ""
        raise InputFormatError(
            f"{file}: expelliarmus decoded nothing from this {size}-byte {name} file{said}"
        )
    return decoded


def read_prophesee(
    path: PathLikeStr, encoding: str | None = None, sensor_size: SensorSize | None = None
) -> EventStream:
    """Read a Prophesee DAT or RAW (EVT 2.0 / EVT 3.0) file with ``expelliarmus``.

    Args:
        path: ``.dat`` or ``.raw`` file (any name: a hard link in a temporary folder gives
            ``expelliarmus`` the suffix it requires).
        encoding: ``"dat"``, ``"evt2"`` or ``"evt3"``; None takes the one the header names
            (``% evt 2.0`` / ``% evt 3.0``, ``% format EVT2|EVT3;...``, ``% Data file containing``).
        sensor_size: (W, H, P) to use instead of the header's geometry, at most
            :data:`~asa_snn.data.events.MAX_SENSOR_SIDE` pixels per side; needed when the header
            has no ``% geometry``, ``% format ...;height=;width=`` or ``% width`` / ``% height`` line.

    Returns:
        EventStream with sensor size (W, H, 2) from the header (or ``sensor_size``), timestamps in
        microseconds as recorded (DAT: a 32-bit timestamp lower than the previous one is taken as
        its wrap after 2**32 us, as ``expelliarmus`` does), p = 0 OFF, 1 ON. EVT 3.0 timestamps are
        decoded here (:func:`evt3_timestamps`), x, y and p by ``expelliarmus``.

    Raises:
        InputFormatError: (the message names the file, and the byte offset where there is one)
            no or a truncated ``%`` header; an encoding the header does not name, names twice or
            contradicts; no sensor geometry and no ``sensor_size``; a sensor larger than the
            limit; a DAT event type other than CD; a trailing partial record or word; a reserved
            word type; EVT 3.0 trigger words (``expelliarmus`` cannot decode them); more events
            than :func:`~asa_snn.data.formats._common.decoded_size_limit` allows; anything the
            decoder reports; no events; events outside the sensor; timestamps going backwards.
    """
    file = existing_file(path)
    if encoding is not None and encoding not in PROPHESEE_ENCODINGS:
        raise InputFormatError(
            f"{file}: unknown Prophesee encoding {encoding!r}; expected one of {sorted(PROPHESEE_ENCODINGS)}"
        )
    header = read_header(file)
    named = _encodings_named(header)
    if encoding is None:
        if len(named) != 1 or not named <= set(PROPHESEE_ENCODINGS):
            raise InputFormatError(
                f"{file}: header names the encoding(s) {sorted(named) or 'none'}; expected exactly one of "
                f"'% evt 2.0', '% evt 3.0', '% format EVT2|EVT3;...' or '% Data file containing CD events' "
                f"(or pass the format: dat, evt2, evt3)"
            )
        encoding = next(iter(named))
    elif named and named != {encoding}:
        raise InputFormatError(
            f"{file}: read as {encoding}, but the header names {sorted(named)}; expected {encoding} or no "
            f"encoding line"
        )
    if sensor_size is not None:
        check_sensor_limit(sensor_size, f"{file} (sensor_size given by the caller)")
        size = tuple(int(v) for v in sensor_size)
    else:
        geometry = header_geometry(header, file)
        if geometry is None:
            raise InputFormatError(
                f"{file}: {PROPHESEE_ENCODINGS[encoding]} header gives no sensor size (no '% geometry WxH', "
                f"'% format ...;height=H;width=W' or '% width' / '% height' line); pass "
                f"sensor_size=(W, H, 2) (command line: --sensor-size W,H,2)"
            )
        size = (*geometry, 2)
        check_sensor_limit(size, f"{file} (header geometry)")
    count, start = _count_events(file, header, encoding)
    decoded = _decode(file, encoding)
    if len(decoded) != count:
        raise InputFormatError(
            f"{file}: expelliarmus decoded {len(decoded)} events where the data holds {count}; corrupt data"
        )
    t = evt3_timestamps(file, start, count) if encoding == "evt3" else decoded["t"]
    events = make_events(t, decoded["x"], decoded["y"], decoded["p"])
    return finish(events, size, file)
