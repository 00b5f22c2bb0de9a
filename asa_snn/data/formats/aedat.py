"""AEDAT files: 4.0 (DV software), 3.1 (cAER, DVS128 Gesture) and 2.0 (jAER, DVS128 Gait, DailyAction-DVS).

Every file starts with a ``#!AER-DATx.y`` line. Timestamps are returned in microseconds as the
file stores them (absolute for AEDAT 4, since recording start for 2.0 / 3.1).
"""

from __future__ import annotations

import csv
import functools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asa_snn.data.events import (
    EVENT_DTYPE,
    EventStream,
    SensorSize,
    as_event_array,
    check_sensor_limit,
    make_events,
)
from asa_snn.data.formats._common import PathLikeStr, check_decoded_size, existing_file, finish
from asa_snn.errors import InputFormatError

AEDAT4_MAGIC = b"#!AER-DAT4.0"
AEDAT31_MAGIC = b"#!AER-DAT3.1"
AEDAT2_MAGIC = b"#!AER-DAT2.0"

DVS128_SENSOR_SIZE: SensorSize = (128, 128, 2)
"""(W, H, P) of the DVS128."""


def _read_header(data: bytes, file: Path, magic: bytes, end_marker: str | None) -> tuple[list[str], int]:
    """Split the ``#`` header lines off an AEDAT 2.0 / 3.1 file.

    Returns the header lines (without line ends) and the byte offset where binary data starts.
    The header ends at ``end_marker`` when given (required then), else at the first line not
    starting with ``#``.
    """
    if not data.startswith(magic):
        raise InputFormatError(
            f"{file}: expected the file to start with {magic!r}, found {data[: len(magic)]!r}"
        )
    lines: list[str] = []
    offset = 0
    while offset < len(data) and data[offset] == ord("#"):
        newline = data.find(b"\n", offset)
        if newline < 0:
            raise InputFormatError(
                f"{file}: header line at byte offset {offset} is not terminated by a newline"
            )
        lines.append(data[offset:newline].decode("latin-1").rstrip("\r"))
        offset = newline + 1
        if end_marker is not None and lines[-1].replace(" ", "").lower() == end_marker:
            return lines, offset
    if end_marker is not None:
        raise InputFormatError(
            f"{file}: header has no end line '{end_marker}' (searched up to byte offset {offset})"
        )
    return lines, offset


AEDAT4_COMPRESSIONS = ("none", "LZ4", "LZ4 high", "zstd", "zstd high")
"""``Ioheader.compression`` values of AEDAT 4.0, by number (iniVation's ``ioheader.fbs``)."""

_AEDAT4_PREAMBLE = AEDAT4_MAGIC + b"\r\n"
_AEDAT4_PACKET_HEADER = struct.Struct("<iI")


def _fail(file: Path, text: str) -> InputFormatError:
    """The InputFormatError for an AEDAT 4 problem ``text`` in ``file``."""
    return InputFormatError(f"{file}: AEDAT 4 {text}")


def _ioheader_fields(header: bytes, file: Path) -> tuple[int, int]:
    """(compression, file_data_position) of an AEDAT 4 ``Ioheader`` flatbuffer, every offset checked.

    Flatbuffer layout (flatbuffers.dev, "Internals"): a uint32 offset to the root table; the table
    starts with an int32 back-offset to its vtable; the vtable holds uint16 vtable size, uint16
    table size, then one uint16 offset per field (0: absent, default used). ``Ioheader`` fields:
    0 compression (int32, default 0), 1 file_data_position (int64, default -1), 2 description (offset
    to a uint32-length-prefixed UTF-8 string). The ``aedat`` decoder reads this table unchecked, so
    a corrupt one is refused here before it gets there.
    """

    def scalar(fmt: str, at: int, what: str) -> int:
        if not 0 <= at <= len(header) - struct.calcsize(fmt):
            raise _fail(
                file, f"header is corrupt: {what} at offset {at} lies outside its {len(header)} bytes"
            )
        return int(struct.unpack_from(fmt, header, at)[0])

    table = scalar("<I", 0, "root table offset")
    vtable = table - scalar("<i", table, "vtable offset")
    vtable_size = scalar("<H", vtable, "vtable size")

    def field(index: int, fmt: str, default: int) -> tuple[int, int]:
        slot = 4 + 2 * index
        offset = scalar("<H", vtable + slot, f"vtable slot {index}") if slot + 2 <= vtable_size else 0
        return (
            (default, 0) if offset == 0 else (scalar(fmt, table + offset, f"field {index}"), table + offset)
        )

    compression, _ = field(0, "<i", 0)
    data_position, _ = field(1, "<q", -1)
    text_offset, at = field(2, "<I", 0)
    if at == 0:
        raise _fail(file, "header has no stream description")
    start = at + text_offset
    length = scalar("<I", start, "description length")
    if start + 4 + length > len(header):
        raise _fail(
            file, f"header is corrupt: the {length}-byte description overruns its {len(header)} bytes"
        )
    try:
        header[start + 4 : start + 4 + length].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(file, f"header is corrupt: the stream description is not UTF-8 ({exc.reason})") from exc
    if not 0 <= compression < len(AEDAT4_COMPRESSIONS):
        raise _fail(file, f"header has compression {compression}; expected 0..{len(AEDAT4_COMPRESSIONS) - 1}")
    return compression, data_position


def _check_aedat4_layout(file: Path) -> None:
    """Walk the AEDAT 4 file structure without decoding packets.

    Layout (iniVation, "AEDAT 4.0" file format documentation): ``#!AER-DAT4.0\r\n``, a uint32
    header length, the ``Ioheader`` flatbuffer, then packets of int32 stream id, uint32 length and
    that many bytes, up to ``file_data_position`` (the optional packet table) or the end of the
    file. Every length is checked against the file size, so the decoder never allocates a buffer
    for a length the file does not hold.

    Raises:
        InputFormatError: wrong preamble, a corrupt header, a header or packet running past the
            end of the file (the message gives the byte offset), packets not ending at
            ``file_data_position``.
    """
    size = file.stat().st_size
    with open(file, "rb") as handle:
        preamble = handle.read(len(_AEDAT4_PREAMBLE) + 4)
        if len(preamble) < len(_AEDAT4_PREAMBLE) + 4 or not preamble.startswith(_AEDAT4_PREAMBLE):
            raise _fail(
                file, f"file must start with {_AEDAT4_PREAMBLE!r} and a header length, found {preamble!r}"
            )
        (length,) = struct.unpack_from("<I", preamble, len(_AEDAT4_PREAMBLE))
        position = len(preamble) + length
        if position > size:
            raise _fail(
                file,
                f"header at byte offset {len(preamble)} declares {length} bytes but the {size}-byte file "
                f"holds {size - len(preamble)} after it (truncated or corrupt)",
            )
        _, data_position = _ioheader_fields(handle.read(length), file)
        while position < (data_position if data_position >= 0 else size):
            packet = handle.read(_AEDAT4_PACKET_HEADER.size) if handle.seek(position) == position else b""
            if len(packet) < _AEDAT4_PACKET_HEADER.size:
                raise _fail(
                    file, f"truncated packet header at byte offset {position} of this {size}-byte file"
                )
            _, length = _AEDAT4_PACKET_HEADER.unpack(packet)
            if position + _AEDAT4_PACKET_HEADER.size + length > size:
                raise _fail(
                    file,
                    f"packet at byte offset {position} declares {length} bytes, past the end of this "
                    f"{size}-byte file (truncated or corrupt)",
                )
            position += _AEDAT4_PACKET_HEADER.size + length
        if data_position >= 0 and position != data_position:
            raise _fail(
                file,
                f"packets end at byte offset {position}, not at the packet table at byte offset "
                f"{data_position} the header names (corrupt)",
            )


def _decode_aedat4(file: Path) -> tuple[list[np.ndarray], SensorSize] | None:
    """Event packets of the first event stream and its sensor size; None if there is no event stream.

    The sensor size is checked against :data:`~asa_snn.data.events.MAX_SENSOR_SIDE` before any
    packet is decoded, and the decoded events against
    :func:`~asa_snn.data.formats._common.decoded_size_limit` of the file size after each packet.
    """
    import aedat

    _check_aedat4_layout(file)
    decoder = aedat.Decoder(str(file))
    streams = decoder.id_to_stream()
    event_ids = sorted(stream_id for stream_id, stream in streams.items() if stream["type"] == "events")
    if not event_ids:
        return None
    stream = streams[event_ids[0]]
    sensor_size = (int(stream["width"]), int(stream["height"]), 2)
    check_sensor_limit(sensor_size, f"{file} (AEDAT 4 event stream {event_ids[0]})")
    stored, decoded = file.stat().st_size, 0
    packets = []
    for packet in decoder:
        if packet["stream_id"] == event_ids[0] and "events" in packet:
            packets.append(packet["events"])
            decoded += packet["events"].nbytes
            check_decoded_size(decoded, stored, file, "AEDAT 4 event stream")
    return packets, sensor_size


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its type name when empty)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def read_aedat4(path: PathLikeStr) -> EventStream:
    """Read the first event stream of an AEDAT 4.0 file with the ``aedat`` package (as tonic does).

    Frame, IMU and trigger streams are ignored. The sensor size is (width, height, 2) as the
    stream description of the file states it, at most
    :data:`~asa_snn.data.events.MAX_SENSOR_SIDE` pixels per side. The file structure is walked
    first (:func:`_check_aedat4_layout`), so header and packet lengths are known to fit in the file
    before the decoder allocates for them.

    Returns:
        EventStream, timestamps in microseconds (absolute, as DV records them), p = 1 for ON.

    Raises:
        InputFormatError: a corrupt or truncated structure (the message gives the byte offset);
            the decoder fails, panics (pyo3 ``PanicException``, which derives from
            ``BaseException``) or runs out of memory (it reports no byte offset, so the message
            gives the file size); a sensor larger than the limit; decoded events beyond the
            expansion limit; no event stream; no events.
    """
    file = existing_file(path)
    try:
        decoded = _decode_aedat4(file)
    except InputFormatError:
        raise
    except MemoryError as exc:
        raise _fail(file, f"decoder ran out of memory on this {file.stat().st_size}-byte file") from exc
    except Exception as exc:  # the Rust decoder raises plain RuntimeError / OSError
        raise _fail(
            file, f"decoder failed on this {file.stat().st_size}-byte file: {_one_line(exc)}"
        ) from exc
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":  # pyo3's, not importable by name
            raise
        raise _fail(
            file, f"decoder panicked on this {file.stat().st_size}-byte file (corrupt data): {_one_line(exc)}"
        ) from exc
    if decoded is None:
        raise InputFormatError(f"{file}: AEDAT 4 file has no event stream, so it contains no events")
    packets, sensor_size = decoded
    if not packets:
        raise InputFormatError(f"{file}: file contains no events")
    raw = np.concatenate(packets)  # fields t, x, y and 'on' titled 'p'
    columns = np.rec.fromarrays([raw["t"], raw["x"], raw["y"], raw["p"]], names=["t", "x", "y", "p"])
    return finish(as_event_array(columns, str(file)), sensor_size, file)


POLARITY_EVENT_TYPE = 1
"""cAER ``eventType`` of polarity packets."""

_PACKET_HEADER = struct.Struct("<hhiiiiii")
_POLARITY_RECORD = np.dtype([("data", "<u4"), ("timestamp", "<i4")])


def _polarity_events(data: bytes, offset: int, count: int, overflow: int) -> np.ndarray:
    """Decode ``count`` 8-byte cAER polarity events at ``offset``, dropping invalid ones."""
    records = np.frombuffer(data, dtype=_POLARITY_RECORD, count=count, offset=offset)
    records = records[(records["data"] & 1) == 1]
    word = records["data"]
    t = (np.int64(overflow) << 31) | records["timestamp"].astype(np.int64)
    return make_events(t, (word >> 17) & 0x7FFF, (word >> 2) & 0x7FFF, (word >> 1) & 1)


def read_aedat31(path: PathLikeStr) -> EventStream:
    """Read the polarity events of an AEDAT 3.1 file as DVS128 Gesture stores it.

    tonic's ``get_aer_events_from_file`` reads 3.1 packets but ignores each packet's event type,
    size and count and the timestamp overflow, so the packets are parsed here. After the ``#``
    header (ending with ``#!END-HEADER``) come packets, each a 28-byte little-endian header::

        int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset,
        int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid

    followed by eventCapacity * eventSize payload bytes. Polarity packets (eventType 1) hold
    8-byte events: uint32 data (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and
    int32 timestamp; the full timestamp is t = (eventTSOverflow << 31) | timestamp (us).
    Packets of other types are skipped, invalid events dropped.

    Returns:
        EventStream with sensor size (128, 128, 2) (DVS128), timestamps in microseconds.

    Raises:
        InputFormatError: bad header, truncated packet header or payload (message gives the byte
            offset), inconsistent packet fields, no events, events outside 128x128, timestamps
            going backwards.
    """
    file = existing_file(path)
    data = file.read_bytes()
    _, offset = _read_header(data, file, AEDAT31_MAGIC, end_marker="#!end-header")
    chunks = []
    while offset < len(data):
        if len(data) - offset < _PACKET_HEADER.size:
            raise InputFormatError(
                f"{file}: truncated packet header at byte offset {offset}: {len(data) - offset} bytes "
                f"left, expected {_PACKET_HEADER.size}"
            )
        event_type, _, size, _, overflow, capacity, number, _ = _PACKET_HEADER.unpack_from(data, offset)
        if size < 0 or capacity < 0 or not 0 <= number <= capacity or overflow < 0:
            raise InputFormatError(
                f"{file}: invalid packet header at byte offset {offset}: eventSize={size}, "
                f"eventCapacity={capacity}, eventNumber={number}, eventTSOverflow={overflow} "
                f"(expected non-negative values with eventNumber <= eventCapacity)"
            )
        payload = offset + _PACKET_HEADER.size
        end = payload + capacity * size
        if end > len(data):
            raise InputFormatError(
                f"{file}: truncated packet payload at byte offset {payload}: eventCapacity {capacity} x "
                f"eventSize {size} = {capacity * size} bytes expected, {len(data) - payload} left"
            )
        if event_type == POLARITY_EVENT_TYPE:
            if size != _POLARITY_RECORD.itemsize:
                raise InputFormatError(
                    f"{file}: polarity packet at byte offset {offset} has eventSize={size}, expected 8"
                )
            chunks.append(_polarity_events(data, payload, number, overflow))
        offset = end
    events = np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE)
    if np.any(events["t"] < 0):
        i = int(np.flatnonzero(events["t"] < 0)[0])
        raise InputFormatError(f"{file}: polarity event {i} has negative timestamp {int(events['t'][i])} us")
    return finish(events, DVS128_SENSOR_SIZE, file)


GESTURE_LABEL_HEADER = ["class", "startTime_usec", "endTime_usec"]
"""Header of the DVS128 Gesture ``<name>_labels.csv`` files."""

GESTURE_CLASSES = 11
"""DVS128 Gesture classes, numbered 1..11 in the label files."""


def _read_gesture_labels(labels_csv: Path) -> list[tuple[int, int, int]]:
    """Rows (class 1..11, start us, end us) of a DVS128 Gesture label file."""
    with open(labels_csv, newline="", encoding="utf-8", errors="replace") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows or [cell.strip() for cell in rows[0]] != GESTURE_LABEL_HEADER:
        raise InputFormatError(
            f"{labels_csv}: expected the header {','.join(GESTURE_LABEL_HEADER)}, "
            f"found {rows[0] if rows else 'nothing'}"
        )
    trials = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            label, start, end = (int(cell) for cell in row)
        except ValueError as exc:
            raise InputFormatError(f"{labels_csv}: line {line} is {row}, expected three integers") from exc
        if not 1 <= label <= GESTURE_CLASSES or start > end:
            raise InputFormatError(
                f"{labels_csv}: line {line} has class={label}, start={start}, end={end}; expected "
                f"1 <= class <= {GESTURE_CLASSES} and start <= end"
            )
        trials.append((label, start, end))
    return trials


def read_aedat31_trials(path: PathLikeStr, labels_csv: PathLikeStr) -> list[tuple[EventStream, int]]:
    """Cut a DVS128 Gesture recording into its labelled trials.

    Args:
        path: the AEDAT 3.1 recording (see :func:`read_aedat31`).
        labels_csv: ``<name>_labels.csv`` with header ``class,startTime_usec,endTime_usec``.

    Returns:
        One (events, label) per label row, in file order: the events with start <= t < end
        (microseconds) and label = class - 1 in 0..10.

    Raises:
        InputFormatError: bad label file, or a trial without events.
    """
    stream = read_aedat31(path)
    labels = existing_file(labels_csv)
    t = stream.events["t"]
    trials = []
    for i, (label, start, end) in enumerate(_read_gesture_labels(labels)):
        first, stop = np.searchsorted(t, [start, end], side="left")
        if first == stop:
            raise InputFormatError(
                f"{labels}: trial {i} (class {label}, {start} us to {end} us) "
                f"contains no events of {stream.source}"
            )
        source = f"{stream.source}[trial {i}]"
        trials.append((EventStream(stream.events[first:stop], stream.sensor_size, source), label - 1))
    return trials


@dataclass(frozen=True)
class AddressLayout:
    """How a jAER camera packs one event into a 32-bit AEDAT 2.0 address.

    Args:
        sensor_size: (W, H, P).
        decode: maps an [N] uint32 address array to (keep [N] bool, x, y, p), where ``keep`` is
            False for samples that are not polarity events (APS, IMU, sync / special events);
            x, y with the origin at the top-left corner, as AEDAT 4 and our frames use.
    """

    sensor_size: SensorSize
    decode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _decode_dvs128(address: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """jAER ``ch.unizh.ini.jaer.chip.retina.DVS128.Extractor``: x_jAER = 127 - ((a & 0xFE) >> 1),
    y_jAER = (a & 0x7F00) >> 8, p = 1 - (a & 1) (raw 0 is ON); addresses with bit 15 (sync,
    ``CypressFX2DVS128HardwareInterface.SYNC_EVENT_BITMASK``) or bit 31
    (``BasicEvent.SPECIAL_EVENT_BIT_MASK``) set are special events, dropped. jAER puts the origin
    at the lower-left corner, y up (its sources say so, e.g. ``RosbagFileInputStream``: "jaer uses
    0,0 as lower left"), so y = 127 - y_jAER puts it at the top-left.

    tonic's ``read_dvs_128`` instead takes x from bits 8-14 and y from bits 1-7 without flips
    and keeps the raw polarity bit; jAER's convention is followed here because jAER wrote the files.
    """
    keep = (address & 0x80008000) == 0
    y_jaer = (address & 0x7F00) >> 8
    return keep, 127 - ((address & 0xFE) >> 1), 127 - y_jaer, 1 - (address & 1)


def _decode_davis(
    address: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """jAER ``eu.seebetter.ini.chips.DavisChip`` address of a DAVIS DVS event (read by
    ``DavisBaseCamera.DavisEventExtractor``): y_jAER in bits 22-30 (``YMASK = 511 << 22``),
    x_jAER = (W - 1) - bits 12-21 (``XMASK = 1023 << 12``), p = bit 11 (``POLMASK``, 1 is ON).
    Bit 31 set (``ADDRESS_TYPE_APS``, also in ``ADDRESS_TYPE_IMU``) marks APS / IMU samples and
    bit 10 (``EXTERNAL_INPUT_EVENT_ADDR``) external-input special events; both are dropped. With
    jAER's lower-left origin, y = (H - 1) - y_jAER puts the origin at the top-left corner.
    """
    keep = (address & 0x80000400) == 0
    x = (width - 1) - ((address & 0x3FF000) >> 12).astype(np.int64)
    y = (height - 1) - ((address & 0x7FC00000) >> 22).astype(np.int64)
    return keep, x, y, (address & 0x800) >> 11


AEDAT2_CAMERAS: dict[str, AddressLayout] = {
    "dvs128": AddressLayout(DVS128_SENSOR_SIZE, _decode_dvs128),
    "davis240": AddressLayout((240, 180, 2), functools.partial(_decode_davis, width=240, height=180)),
    "davis346": AddressLayout((346, 260, 2), functools.partial(_decode_davis, width=346, height=260)),
}
"""Address layouts :func:`read_aedat2` knows, by camera name."""

AEDAT2_CHIPS: tuple[tuple[str, str], ...] = (
    ("DVS128", "dvs128"),
    ("DAVIS240[ABC]|DVS240", "davis240"),
    (r"DAVIS346\w*", "davis346"),
)
"""(pattern, camera): jAER chip classes (the simple class name in the ``# AEChip:`` header line,
matched whole, ignoring case) whose address layout :data:`AEDAT2_CAMERAS` holds. jAER's DAVIS240A/B/C
and DVS240 extend ``DAVIS240BaseCamera`` (240 x 180); Davis346B, Davis346blue, Davis346red,
Davis346cBSI, Davis346BColor, Davis346Zynq extend ``Davis346BaseCamera`` (346 x 260); all decode DVS
addresses as :func:`_decode_davis` describes."""

_AEDAT2_RECORD = np.dtype([("address", ">u4"), ("timestamp", ">i4")])
_AECHIP_LINE = re.compile(r"#\s*AEChip\s*:\s*(\S+)")


def _camera_from_header(lines: list[str], file: Path) -> str:
    """Camera name for the ``# AEChip: <Java class>`` line jAER writes (``AEChip.java``:
    ``" AEChip: " + getClass().getName()``); "dvs128" when the header has none."""
    chips = [match.group(1) for line in lines if (match := _AECHIP_LINE.match(line))]
    if not chips:
        return "dvs128"
    simple = chips[-1].rsplit(".", 1)[-1]
    for pattern, camera in AEDAT2_CHIPS:
        if re.fullmatch(pattern, simple, flags=re.IGNORECASE):
            return camera
    raise InputFormatError(
        f"{file}: unknown jAER chip '{chips[-1]}' in the '# AEChip:' header line; expected DVS128, "
        f"DAVIS240A/B/C, DVS240 or a Davis346 class, or pass read_aedat2(path, camera=...) with one of "
        f"{sorted(AEDAT2_CAMERAS)} to override"
    )


def guess_aedat2_camera(path: PathLikeStr) -> str:
    """Camera name for :func:`read_aedat2` from the jAER header's ``# AEChip:`` line.

    Returns:
        a key of :data:`AEDAT2_CAMERAS`; "dvs128" when the header has no ``AEChip`` line (jAER's
        default chip).

    Raises:
        InputFormatError: bad header, or a chip class :data:`AEDAT2_CHIPS` does not know (the
            message names it and the ``camera=`` override).
    """
    file = existing_file(path)
    lines, _ = _read_header(file.read_bytes(), file, AEDAT2_MAGIC, end_marker=None)
    return _camera_from_header(lines, file)


def read_aedat2(path: PathLikeStr, camera: str | None = None) -> EventStream:
    """Read a jAER AEDAT 2.0 file: ``#`` header lines, then big-endian (uint32 address,
    int32 timestamp in us) pairs, 8 bytes per record.

    Parsed here rather than with tonic's ``read_aedat_header_from_file`` /
    ``get_aer_events_from_file``: those check the file with ``assert``, parse the version
    with ``float`` on a slice, and silently drop a trailing partial record.

    Args:
        path: ``.aedat`` file.
        camera: key of :data:`AEDAT2_CAMERAS` ("dvs128", "davis240", "davis346"), the address
            layout; None reads it from the ``# AEChip:`` header line (:func:`guess_aedat2_camera`).

    Returns:
        EventStream of the polarity events, sensor size of the camera, origin at the top-left
        corner (jAER's lower-left origin flipped), timestamps in microseconds; non-polarity
        samples (APS, IMU, sync, external input) are dropped.

    Raises:
        InputFormatError: unknown camera or jAER chip, trailing partial record (message gives its
            offset), no events, events outside the sensor, timestamps going backwards (jAER
            timestamp resets; the message names the record).
    """
    file = existing_file(path)
    if camera is not None and camera not in AEDAT2_CAMERAS:
        raise InputFormatError(
            f"{file}: unknown AEDAT 2.0 camera '{camera}', expected one of {sorted(AEDAT2_CAMERAS)}"
        )
    data = file.read_bytes()
    lines, start = _read_header(data, file, AEDAT2_MAGIC, end_marker=None)
    layout = AEDAT2_CAMERAS[camera if camera is not None else _camera_from_header(lines, file)]
    count, partial = divmod(len(data) - start, _AEDAT2_RECORD.itemsize)
    if partial:
        raise InputFormatError(
            f"{file}: incomplete {_AEDAT2_RECORD.itemsize}-byte record at byte offset "
            f"{start + count * _AEDAT2_RECORD.itemsize} ({partial} bytes left)"
        )
    records = np.frombuffer(data, dtype=_AEDAT2_RECORD, count=count, offset=start)
    keep, x, y, p = layout.decode(records["address"].astype(np.uint32))
    index = np.flatnonzero(keep)
    t = records["timestamp"][index].astype(np.int64)
    backwards = np.flatnonzero(np.diff(t) < 0)
    if backwards.size:
        j = int(backwards[0]) + 1
        record = int(index[j])
        raise InputFormatError(
            f"{file}: timestamps go backwards at record {record} (byte offset "
            f"{start + record * _AEDAT2_RECORD.itemsize}): {int(t[j - 1])} us -> {int(t[j])} us; "
            f"jAER resets timestamps, split the recording there"
        )
    events = make_events(t, x[index].astype(np.int64), y[index].astype(np.int64), p[index])
    return finish(events, layout.sensor_size, file)
