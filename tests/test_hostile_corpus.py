"""A corpus of corrupted, hostile and unusual inputs, each run through the command line in its own
process: every one must end with exit status 1 and exactly one line on stderr (no traceback),
within 20 s and 1 GiB of resident memory.

Kinds of input (``CASES``; counts in :func:`test_corpus_size`): event files of every format
(empty, truncated, bit-flipped, renamed, garbage, declared-size bombs, directories, symlink loops,
FIFOs, devices, unreadable files), the ``--data`` of ``simulate``, training configs (TOML and YAML:
bad types, NaN, huge numbers, billion laughs, null sections), checkpoints (truncated, pickles
renamed ``.safetensors``, wrong metadata), folded graphs (``graph.json`` with wrong types, missing
fields, bad shapes, NaN, unknown ops, another version; tensors truncated), budget files, and
writes that fail (a full disk simulated with ``RLIMIT_FSIZE``, occupied output folders, whose files
must survive).

How the processes run. A driver child (``python -c _DRIVER``) imports the command line and the
libraries its commands import once, then forks one process per input, at most ``WORKERS`` at a
time, and runs ``asa_snn.cli.main(argv)`` there with stdout and stderr (file descriptors 1 and 2,
so native libraries' writes are caught too) going to files; an exception escaping ``main`` is
printed as the interpreter would (a traceback) and the process exits 1. ``os.wait4`` gives each
process's peak resident set size; a process still running 10 s after ``LIMIT_S`` is killed. Each
process's address space is capped at what the driver holds plus 2 GiB (less where a case says),
so a reader that allocates what a file declares fails here instead of taking the machine's
memory. Inputs that must be unreadable drop the capabilities that let root read any file
(``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``) when the tests run as root.
:func:`test_console_script_matches_the_driver` runs one input of each kind through the real
``python -m asa_snn.cli`` as well.

Cases with ``either=True`` may also be valid (a flipped bit can land in an event's coordinates):
they pass with exit status 0 and nothing on stderr, or with the one-line error.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

if str(Path(__file__).resolve().parent / "data") not in sys.path:  # the shared hostile writers
    sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from hostile_writers import (
    BOMB_KINDS,
    aedat4_bytes,
    event_packet,
    npz_zip_bomb,
    write_declared_bomb,
)

from asa_snn.data.events import EventStream, make_events
from asa_snn.data.formats import write_hdf5, write_numpy

pytestmark = [
    pytest.mark.hostile,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, wait4 and rlimits: Linux only"),
]

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 20.0
"""Wall seconds one input may take."""
LIMIT_RSS_MIB = 1024
"""Peak resident memory (MiB) one process may reach (the imported libraries included)."""
WORKERS = max(1, min(4, os.cpu_count() or 1))
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# ---------------------------------------------------------------- valid samples of every format


def _events(count: int = 24, side: int = 16) -> EventStream:
    rng = np.random.default_rng(3)
    t = np.sort(rng.integers(0, 200_000, count))
    events = make_events(
        t, rng.integers(0, side, count), rng.integers(0, side, count), rng.integers(0, 2, count)
    )
    return EventStream(events, (side, side, 2), "sample")


def nmnist_bytes(stream: EventStream) -> bytes:
    """N-MNIST records: x, y, p << 7 | t[22:16], t[15:8], t[7:0]."""
    return b"".join(
        bytes([int(e["x"]), int(e["y"]), (int(e["p"]) << 7) | (int(e["t"]) >> 16), (int(e["t"]) >> 8) & 255])
        + bytes([int(e["t"]) & 255])
        for e in stream.events
    )


def aedat31_bytes(stream: EventStream) -> bytes:
    """AEDAT 3.1 (cAER): header lines, then one polarity packet (eventType 1, 8-byte events)."""
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    n = len(stream)
    packet = struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, n, n, n)
    packet += b"".join(
        struct.pack("<Ii", (int(e["x"]) << 17) | (int(e["y"]) << 2) | (int(e["p"]) << 1) | 1, int(e["t"]))
        for e in stream.events
    )
    return header + packet


def aedat2_bytes(stream: EventStream) -> bytes:
    """jAER AEDAT 2.0 (DVS128): header lines, then big-endian (address, timestamp) records."""
    header = b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n"
    records = (
        struct.pack(
            ">Ii", ((127 - int(e["y"])) << 8) | ((127 - int(e["x"])) << 1) | (1 - int(e["p"])), int(e["t"])
        )
        for e in stream.events
    )
    return header + b"".join(records)


def prophesee_header(*lines: str) -> bytes:
    return b"".join(f"% {line}\n".encode() for line in lines)


def dat_bytes(stream: EventStream) -> bytes:
    """Prophesee DAT: header, event type 12 and size 8, (uint32 t, x | y << 14 | p << 28) records."""
    head = prophesee_header("Data file containing CD events", "Version 2", "Width 16", "Height 16")
    records = b"".join(
        struct.pack("<II", int(e["t"]), int(e["x"]) | int(e["y"]) << 14 | int(e["p"]) << 28)
        for e in stream.events
    )
    return head + bytes([12, 8]) + records


def evt2_bytes(stream: EventStream) -> bytes:
    """Prophesee RAW EVT 2.0: a TIME_HIGH word (t bits 33-6) and a CD word per event."""
    words = []
    for e in stream.events:
        t, x, y, p = (int(e[name]) for name in "txyp")
        words += [0x8 << 28 | t >> 6, p << 28 | (t & 63) << 22 | x << 11 | y]
    return prophesee_header("evt 2.0", "geometry 16x16") + struct.pack(f"<{len(words)}I", *words)


def evt3_bytes(stream: EventStream) -> bytes:
    """Prophesee RAW EVT 3.0: TIME_HIGH, TIME_LOW, ADDR_Y and ADDR_X words per event."""
    words = []
    for e in stream.events:
        t, x, y, p = (int(e[name]) for name in "txyp")
        words += [0x8000 | (t >> 12) & 0xFFF, 0x6000 | t & 0xFFF, y, 0x2000 | p << 11 | x]
    head = prophesee_header("evt 3.0", "format EVT3;height=16;width=16", "geometry 16x16", "end")
    return head + struct.pack(f"<{len(words)}H", *words)


def sample_bytes(folder: Path) -> dict[str, tuple[str, bytes]]:
    """Format name -> (extension, bytes of a small valid recording of 16 x 16 pixels)."""
    stream = _events()
    np.save(folder / "s.npy", stream.events)  # a structured .npy (write_numpy writes .npz)
    write_numpy(stream, folder / "s.npz")
    write_hdf5(stream, folder / "s.h5")
    rows = [(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"])) for e in stream.events]
    return {
        "nmnist": (".bs2", nmnist_bytes(stream)),
        "aedat4": (".aedat4", aedat4_bytes(16, 16, [event_packet(rows)])),
        "aedat3": (".aedat", aedat31_bytes(stream)),
        "aedat2": (".aedat", aedat2_bytes(stream)),
        "npy": (".npy", (folder / "s.npy").read_bytes()),
        "npz": (".npz", (folder / "s.npz").read_bytes()),
        "hdf5": (".h5", (folder / "s.h5").read_bytes()),
        "dat": (".dat", dat_bytes(stream)),
        "evt2": (".raw", evt2_bytes(stream)),
        "evt3": (".raw", evt3_bytes(stream)),
    }


# ---------------------------------------------------------------- the corpus


@dataclass
class Base:
    """Valid artefacts every case may start from (made once per test session)."""

    root: Path
    samples: dict[str, tuple[str, bytes]]
    graph: Path  # a quantized Speck graph folder (tests/graph_builders.speck_graph)
    loihi: Path  # a quantized Loihi graph folder
    checkpoint: Path  # best.safetensors of a one-epoch tiny training run
    config: str  # the tiny training config (TOML text)
    budget: Path  # a valid budget file


@dataclass
class Case:
    """One hostile input: ``make(folder, base)`` writes it into ``folder`` and returns the argv.

    Attributes:
        either: the input may also be valid (exit 0 with nothing on stderr passes too).
        names: text the error line must contain (usually the file's name).
        xfail: reason, when the case exposes a bug not fixed yet.
        fsize: RLIMIT_FSIZE in bytes for the process (a disk that fills up), or None.
        unreadable: paths (relative to ``folder``) to make unreadable; the process then runs as
            without root's power to read any file.
        keep: files (relative to ``folder``) that must still exist with the same bytes afterwards.
        headroom_mib: address space (MiB) the process may add to what the driver holds.
    """

    name: str
    make: Callable[[Path, Base], list[str]]
    either: bool = False
    names: str = ""
    xfail: str = ""
    fsize: int | None = None
    unreadable: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    headroom_mib: int = 2048
    kind: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.kind = self.name.split("/")[0]


CASES: list[Case] = []


def case(name: str, **options) -> Callable[[Callable[[Path, Base], list[str]]], Callable]:
    """Register the decorated writer as a case."""

    def register(make: Callable[[Path, Base], list[str]]) -> Callable:
        CASES.append(Case(name, make, **options))
        return make

    return register


def add(name: str, make: Callable[[Path, Base], list[str]], **options) -> None:
    CASES.append(Case(name, make, **options))


def inspect_argv(path: Path) -> list[str]:
    return ["data", "inspect", str(path), "--preview", str(path.parent / "preview.png")]


def write_file(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


# ---- event files: every format, broken in every way


FORMATS = ("nmnist", "aedat4", "aedat3", "aedat2", "npy", "npz", "hdf5", "dat", "evt2", "evt3")


def _sample(fmt: str, base: Base) -> tuple[str, bytes]:
    return base.samples[fmt]


def _event_case(fmt: str, what: str, transform: Callable[[bytes], bytes], ext: str | None = None, **options):
    def make(folder: Path, base: Base) -> list[str]:
        suffix, data = _sample(fmt, base)
        path = write_file(folder, f"rec_{fmt}{ext or suffix}", transform(data))
        return inspect_argv(path)

    add(f"events/{fmt}/{what}", make, names=f"rec_{fmt}", **options)


def _flip(data: bytes, position: int, bit: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ (1 << bit)]) + data[position + 1 :]


for _fmt in FORMATS:
    _event_case(_fmt, "empty", lambda data: b"")
    _event_case(_fmt, "first_byte", lambda data: data[:1])
    _event_case(_fmt, "first_12_bytes", lambda data: data[:12])
    # N-MNIST has no header: half of the records is a valid recording
    _event_case(_fmt, "truncated_half", lambda data: data[: len(data) // 2], either=_fmt == "nmnist")
    _event_case(_fmt, "truncated_last_byte", lambda data: data[:-1], either=_fmt in ("nmnist",))
    # N-MNIST has no magic bytes; a Prophesee header is only known by its "%" lines
    _event_case(
        _fmt, "magic_bit_flip", lambda data: _flip(data, 1, 5), either=_fmt in ("nmnist", "dat", "evt3")
    )
    for _seed in range(3):
        _rng = random.Random(f"{_fmt}-{_seed}")
        _position, _bit = _rng.randrange(1 << 30), _rng.randrange(8)
        _event_case(
            _fmt, f"bit_flip_{_seed}", lambda data, p=_position, b=_bit: _flip(data, p, b), either=True
        )
    _event_case(_fmt, "random_bytes", lambda data: random.Random(7).randbytes(4096))
    _event_case(_fmt, "zeros", lambda data: bytes(4096), either=_fmt == "nmnist")
    _event_case(_fmt, "text", lambda data: b"hello, this is not a recording\n")
    # bytes after a NumPy array, a zip directory or an HDF5 file are ignored by their decoders
    _event_case(_fmt, "duplicated", lambda data: data + data, either=_fmt != "aedat4")

# content of one format under the extension of another: magic bytes win where the format has them
_event_case("nmnist", "named_npy", lambda data: data, ext=".npy")
_event_case("nmnist", "named_h5", lambda data: data, ext=".h5")
_event_case("nmnist", "named_aedat4", lambda data: data, ext=".aedat4")
_event_case("nmnist", "named_npz", lambda data: data, ext=".npz")
_event_case("nmnist", "named_txt", lambda data: data, ext=".txt")
_event_case("aedat4", "truncated_named_bs2", lambda data: data[:40], ext=".bs2")
_event_case("npz", "truncated_named_aedat4", lambda data: data[:40], ext=".aedat4")
_event_case("hdf5", "truncated_named_npy", lambda data: data[:100], ext=".npy")
_event_case("npy", "header_only", lambda data: data[: data.index(b"\n") + 1])

for _kind in BOMB_KINDS:

    def _bomb(folder: Path, base: Base, kind: str = _kind) -> list[str]:
        return inspect_argv(write_declared_bomb(folder, kind, 2**34))

    add(f"events/bomb/{_kind}", _bomb)


@case("events/bomb/npz_zip_bomb_1536MiB", names="bomb.npz")
def _zip_bomb(folder: Path, base: Base) -> list[str]:
    return inspect_argv(npz_zip_bomb(folder / "bomb.npz"))


@case("events/npz/no_events_member", names="noevents.npz")
def _npz_no_events(folder: Path, base: Base) -> list[str]:
    np.savez(folder / "noevents.npz", other=np.zeros(3))
    return inspect_argv(folder / "noevents.npz")


@case("events/npz/object_array", names="objects.npz")
def _npz_pickled(folder: Path, base: Base) -> list[str]:
    np.savez(folder / "objects.npz", events=np.array([{"t": 1}, None], dtype=object))
    return inspect_argv(folder / "objects.npz")


@case("events/npy/wrong_dtype_strings", names="strings.npy")
def _npy_strings(folder: Path, base: Base) -> list[str]:
    np.save(folder / "strings.npy", np.array(["a", "b"]))
    return inspect_argv(folder / "strings.npy")


@case("events/npy/nan_timestamps", names="nan.npy")
def _npy_nan(folder: Path, base: Base) -> list[str]:
    np.save(folder / "nan.npy", np.array([[np.nan, 1, 1, 1], [np.inf, 2, 2, 0]]))
    return inspect_argv(folder / "nan.npy")


@case("events/npy/negative_coordinates", names="negative.npy")
def _npy_negative(folder: Path, base: Base) -> list[str]:
    np.save(folder / "negative.npy", np.array([[0, -5, 1, 1], [10, 2, -7, 0]], dtype=np.int64))
    return inspect_argv(folder / "negative.npy")


@case("events/npy/coordinates_past_int16", names="wide.npy")
def _npy_wide(folder: Path, base: Base) -> list[str]:
    np.save(folder / "wide.npy", np.array([[0, 70000, 1, 1], [10, 2, 2**40, 0]], dtype=np.int64))
    return inspect_argv(folder / "wide.npy")


@case("events/npy/three_columns", names="cols.npy")
def _npy_columns(folder: Path, base: Base) -> list[str]:
    np.save(folder / "cols.npy", np.zeros((5, 3), dtype=np.int64))
    return inspect_argv(folder / "cols.npy")


@case("events/npy/zero_dimensional", names="scalar.npy")
def _npy_scalar(folder: Path, base: Base) -> list[str]:
    np.save(folder / "scalar.npy", np.int64(5))
    return inspect_argv(folder / "scalar.npy")


@case("events/hdf5/events_is_a_string", names="string.h5")
def _h5_string(folder: Path, base: Base) -> list[str]:
    import h5py

    with h5py.File(folder / "string.h5", "w") as h5:
        h5["events"] = "not events"
    return inspect_argv(folder / "string.h5")


@case("events/hdf5/no_events", names="empty.h5")
def _h5_empty(folder: Path, base: Base) -> list[str]:
    import h5py

    with h5py.File(folder / "empty.h5", "w") as h5:
        h5.create_group("nothing")
    return inspect_argv(folder / "empty.h5")


@case("events/hdf5/external_link_loop", names="link.h5")
def _h5_external(folder: Path, base: Base) -> list[str]:
    import h5py

    with h5py.File(folder / "link.h5", "w") as h5:
        h5["events"] = h5py.ExternalLink("link.h5", "/events")
    return inspect_argv(folder / "link.h5")


@case("events/hdf5/soft_link_loop", names="soft.h5")
def _h5_soft(folder: Path, base: Base) -> list[str]:
    import h5py

    with h5py.File(folder / "soft.h5", "w") as h5:
        h5["events"] = h5py.SoftLink("/events")
    return inspect_argv(folder / "soft.h5")


@case("events/aedat4/empty_packet_decoder_panic", names="panic.aedat4")
def _aedat4_panic(folder: Path, base: Base) -> list[str]:
    return inspect_argv(write_file(folder, "panic.aedat4", aedat4_bytes(346, 260, [b""])))


@case("events/aedat4/sensor_65535_square", names="sensor.aedat4")
def _aedat4_sensor(folder: Path, base: Base) -> list[str]:
    rows = [(1, 0, 0, True)]
    return inspect_argv(write_file(folder, "sensor.aedat4", aedat4_bytes(65535, 65535, [event_packet(rows)])))


@case("events/aedat4/event_outside_sensor", names="outside.aedat4")
def _aedat4_outside(folder: Path, base: Base) -> list[str]:
    rows = [(1, 40, 3, True)]
    return inspect_argv(write_file(folder, "outside.aedat4", aedat4_bytes(16, 16, [event_packet(rows)])))


@case("events/aedat2/header_never_ends", names="header.aedat")
def _aedat2_header(folder: Path, base: Base) -> list[str]:
    return inspect_argv(write_file(folder, "header.aedat", b"#!AER-DAT2.0\r\n" + b"# comment\r\n" * 5000))


@case("events/aedat3/packet_declares_2e9_events", names="packet.aedat")
def _aedat3_packet(folder: Path, base: Base) -> list[str]:
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"
    packet = struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 2**31 - 1, 2**31 - 1, 2**31 - 1) + bytes(16)
    return inspect_argv(write_file(folder, "packet.aedat", header + packet))


@case("events/aedat3/event_size_zero", names="size0.aedat")
def _aedat3_size0(folder: Path, base: Base) -> list[str]:
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"
    packet = struct.pack("<hhiiiiii", 1, 1, 0, 4, 0, 5, 5, 5) + bytes(16)
    return inspect_argv(write_file(folder, "size0.aedat", header + packet))


@case("events/evt3/header_line_without_line_feed", names="noline.raw")
def _evt3_no_line_feed(folder: Path, base: Base) -> list[str]:
    # expelliarmus' C header parser loops forever on it
    return inspect_argv(write_file(folder, "noline.raw", b"% evt 3.0\n% geometry 16x16"))


@case("events/evt2/geometry_100000_square", names="wide.raw")
def _evt2_geometry(folder: Path, base: Base) -> list[str]:
    data = prophesee_header("evt 2.0", "geometry 100000x100000") + struct.pack("<2I", 0x8 << 28, 1 << 28)
    return inspect_argv(write_file(folder, "wide.raw", data))


@case("events/dat/event_size_zero", names="size0.dat")
def _dat_size0(folder: Path, base: Base) -> list[str]:
    head = prophesee_header("Data file containing CD events", "Version 2", "Width 16", "Height 16")
    return inspect_argv(write_file(folder, "size0.dat", head + bytes([12, 0]) + bytes(64)))


@case("events/evt3/vector_bomb", names="vectors.raw")
def _evt3_vectors(folder: Path, base: Base) -> list[str]:
    # each VECT_12 word of all ones is 12 events: 24 bytes of events per stored byte pair
    head = prophesee_header("evt 3.0", "format EVT3;height=16;width=16", "geometry 16x16", "end")
    words = [0x8000, 0x6000, 0x0000, 0x3000] + [0x4FFF] * 200_000
    return inspect_argv(write_file(folder, "vectors.raw", head + struct.pack(f"<{len(words)}H", *words)))


# ---- event paths that are not regular files


@case("events/path/directory_named_npz", names="folder.npz")
def _directory(folder: Path, base: Base) -> list[str]:
    (folder / "folder.npz").mkdir()
    return inspect_argv(folder / "folder.npz")


@case("events/path/missing", names="missing.aedat4")
def _missing(folder: Path, base: Base) -> list[str]:
    return inspect_argv(folder / "missing.aedat4")


@case("events/path/symlink_loop", names="loop.npz")
def _loop(folder: Path, base: Base) -> list[str]:
    (folder / "loop.npz").symlink_to("loop2.npz")
    (folder / "loop2.npz").symlink_to("loop.npz")
    return inspect_argv(folder / "loop.npz")


@case("events/path/dangling_symlink", names="dangling.h5")
def _dangling(folder: Path, base: Base) -> list[str]:
    (folder / "dangling.h5").symlink_to(folder / "nowhere.h5")
    return inspect_argv(folder / "dangling.h5")


@case("events/path/fifo", names="pipe.npz")
def _fifo(folder: Path, base: Base) -> list[str]:
    os.mkfifo(folder / "pipe.npz")
    return inspect_argv(folder / "pipe.npz")


@case("events/path/dev_zero", names="/dev/zero")
def _dev_zero(folder: Path, base: Base) -> list[str]:
    return ["data", "inspect", "/dev/zero", "--format", "nmnist", "--preview", str(folder / "p.png")]


@case("events/path/dev_null", names="/dev/null")
def _dev_null(folder: Path, base: Base) -> list[str]:
    return ["data", "inspect", "/dev/null", "--preview", str(folder / "p.png")]


@case("events/path/unreadable_file", names="locked.npz", unreadable=("locked.npz",))
def _unreadable(folder: Path, base: Base) -> list[str]:
    write_file(folder, "locked.npz", base.samples["npz"][1])
    return inspect_argv(folder / "locked.npz")


@case("events/path/inside_unreadable_folder", names="rec.npz", unreadable=("closed",))
def _unreadable_folder(folder: Path, base: Base) -> list[str]:
    write_file(folder, "closed/rec.npz", base.samples["npz"][1])
    return ["data", "inspect", str(folder / "closed" / "rec.npz"), "--preview", str(folder / "p.png")]


@case("events/path/newline_in_name", names="line")
def _newline(folder: Path, base: Base) -> list[str]:
    return inspect_argv(write_file(folder, "two\nline.bs2", b"\x01\x02\x03"))


@case("events/path/name_not_utf8", names="rec")
def _not_utf8(folder: Path, base: Base) -> list[str]:
    name = os.fsdecode(b"rec_\xff\xfe.bs2")
    return inspect_argv(write_file(folder, name, b"\x01\x02\x03"))


@case("events/path/name_too_long")
def _too_long(folder: Path, base: Base) -> list[str]:
    return inspect_argv(folder / ("x" * 300 + ".npz"))


@case("events/path/empty_string")
def _empty_path(folder: Path, base: Base) -> list[str]:
    return ["data", "inspect", "", "--preview", str(folder / "p.png")]


@case("events/option/unknown_format", names="bogus")
def _format_unknown(folder: Path, base: Base) -> list[str]:
    path = write_file(folder, "rec.npz", base.samples["npz"][1])
    return [*inspect_argv(path), "--format", "bogus"]


@case("events/option/format_mismatch", names="rec.aedat4")
def _format_mismatch(folder: Path, base: Base) -> list[str]:
    path = write_file(folder, "rec.aedat4", base.samples["aedat4"][1])
    return [*inspect_argv(path), "--format", "npz"]


@case("events/option/preview_under_a_file", names="afile")
def _preview_under_file(folder: Path, base: Base) -> list[str]:
    path = write_file(folder, "rec.npz", base.samples["npz"][1])
    write_file(folder, "afile", b"")
    return ["data", "inspect", str(path), "--preview", str(folder / "afile" / "p.png")]


@case("events/option/preview_on_full_disk", fsize=2048)
def _preview_full(folder: Path, base: Base) -> list[str]:
    return inspect_argv(write_file(folder, "rec.npz", base.samples["npz"][1]))


@case("events/option/preview_is_a_directory", names="shown")
def _preview_dir(folder: Path, base: Base) -> list[str]:
    path = write_file(folder, "rec.npz", base.samples["npz"][1])
    (folder / "shown.png").mkdir()
    return ["data", "inspect", str(path), "--preview", str(folder / "shown.png")]


# ---- what simulate reads: --data


def simulate_argv(base: Base, data: str, *extra: str) -> list[str]:
    return ["simulate", str(base.graph), "--backend", "speck", "--data", data, *extra]


for _spelling in (
    "builtin:other",
    "builtin:synthetic:abc",
    "builtin:synthetic:0",
    "builtin:synthetic:99999999999",
    "builtin:",
    "builtin:synthetic:-1",
):
    add(
        f"data/{_spelling}",
        lambda folder, base, s=_spelling: simulate_argv(base, s),
        names="builtin:synthetic",
    )

add(
    "data/max_samples_0",
    lambda folder, base: simulate_argv(base, "builtin:synthetic:2", "--max-samples", "0"),
    names="max_samples",
)
add(
    "data/max_samples_negative",
    lambda folder, base: simulate_argv(base, "builtin:synthetic:2", "--max-samples", "-3"),
    names="max_samples",
)
add(
    "data/unknown_backend",
    lambda folder, base: ["simulate", str(base.graph), "--backend", "toaster"],
    names="toaster",
)


@case("data/missing_path", names="nothing_here")
def _data_missing(folder: Path, base: Base) -> list[str]:
    return simulate_argv(base, str(folder / "nothing_here"))


@case("data/empty_folder", names="empty")
def _data_empty(folder: Path, base: Base) -> list[str]:
    (folder / "empty").mkdir()
    return simulate_argv(base, str(folder / "empty"))


@case("data/folder_of_hidden_files_and_folders", names="hidden")
def _data_hidden(folder: Path, base: Base) -> list[str]:
    write_file(folder, "hidden/.rec.npz", base.samples["npz"][1])
    (folder / "hidden" / "sub").mkdir()
    return simulate_argv(base, str(folder / "hidden"))


@case("data/folder_with_one_broken_file", names="b_broken.bs2")
def _data_broken(folder: Path, base: Base) -> list[str]:
    write_file(folder, "recs/a_good.npz", base.samples["npz"][1])
    write_file(folder, "recs/b_broken.bs2", b"\x01\x02\x03")
    return simulate_argv(base, str(folder / "recs"))


@case("data/folder_with_symlink_loop", names="recs")
def _data_loop(folder: Path, base: Base) -> list[str]:
    (folder / "recs").mkdir()
    (folder / "recs" / "loop.npz").symlink_to("loop.npz")
    return simulate_argv(base, str(folder / "recs"))


@case("data/unreadable_folder", names="closed", unreadable=("closed",))
def _data_unreadable(folder: Path, base: Base) -> list[str]:
    write_file(folder, "closed/rec.npz", base.samples["npz"][1])
    return simulate_argv(base, str(folder / "closed"))


@case("data/recording_larger_than_the_sensor", names="big.npy")
def _data_too_big(folder: Path, base: Base) -> list[str]:
    t = np.arange(5, dtype=np.int64)
    write_numpy(EventStream(make_events(t, t * 20, t * 20, t % 2), (128, 128, 2), "big"), folder / "big.npy")
    return simulate_argv(base, str(folder / "big.npy"))


@case("data/recording_past_int_time", names="late.npz", either=True)
def _data_late(folder: Path, base: Base) -> list[str]:
    t = np.array([0, 2**62], dtype=np.int64)
    write_numpy(EventStream(make_events(t, t % 2, t % 3, t % 2), (16, 16, 2), "late"), folder / "late.npz")
    return simulate_argv(base, str(folder / "late.npz"))


@case("data/builtin_prefix_path_missing", names="builtin:synthetic")
def _data_builtin_path(folder: Path, base: Base) -> list[str]:
    return simulate_argv(base, "builtin:synthetic/x")


# ---- training configs


def train_argv(folder: Path, config: Path, *overrides: str) -> list[str]:
    return ["train", str(config), *overrides, "--out", str(folder / "run")]


def _config_case(name: str, text: str | bytes, suffix: str = ".toml", *overrides: str, **options) -> None:
    def make(folder: Path, base: Base) -> list[str]:
        body = text.replace("{tiny}", base.config) if isinstance(text, str) else text
        return train_argv(folder, write_file(folder, f"config{suffix}", body), *overrides)

    add(f"config/{name}", make, names=options.pop("names", "config"), **options)


def _tiny_with(replacements: dict[str, str]) -> Callable[[Path, Base], list[str]]:
    def make(folder: Path, base: Base) -> list[str]:
        text = base.config
        for old, new in replacements.items():
            assert old in text, old
            text = text.replace(old, new)
        return train_argv(folder, write_file(folder, "config.toml", text))

    return make


for _label, _old, _new in [
    ("epochs_string", "epochs = 1", 'epochs = "ten"'),
    ("epochs_zero", "epochs = 1", "epochs = 0"),
    ("epochs_negative", "epochs = 1", "epochs = -4"),
    ("epochs_float", "epochs = 1", "epochs = 1.5"),
    ("epochs_huge", "epochs = 1", "epochs = 9223372036854775807"),
    ("epochs_bool", "epochs = 1", "epochs = true"),
    ("lr_nan", "lr = 1e-2", "lr = nan"),
    ("lr_inf", "lr = 1e-2", "lr = inf"),
    ("lr_negative", "lr = 1e-2", "lr = -1.0"),
    ("lr_1e308", "lr = 1e-2", "lr = 1e308"),
    ("lr_string", "lr = 1e-2", 'lr = "fast"'),
    ("batch_size_zero", "batch_size = 8", "batch_size = 0"),
    ("batch_size_huge", "batch_size = 8", "batch_size = 100000000000"),
    ("n_steps_huge", "n_steps = 4", "n_steps = 1000000000"),
    ("n_samples_negative", "n_samples = 16", "n_samples = -16"),
    ("sensor_size_huge", "sensor_size = [16, 16]", "sensor_size = [1000000, 1000000]"),
    ("sensor_size_string", "sensor_size = [16, 16]", 'sensor_size = "big"'),
    ("sensor_size_three", "sensor_size = [16, 16]", "sensor_size = [16, 16, 16]"),
    ("input_shape_huge", "input_shape = [2, 16, 16]", "input_shape = [2, 100000, 100000]"),
    ("input_shape_zero", "input_shape = [2, 16, 16]", "input_shape = [0, 16, 16]"),
    ("channels_huge", "channels = [4, 8]", "channels = [1000000, 8]"),
    ("channels_nested", "channels = [4, 8]", "channels = [[4], 8]"),
    ("num_classes_one", "num_classes = 3", "num_classes = 1"),
    ("timesteps_nan", "timesteps = 4", "timesteps = nan"),
    ("network_unknown", 'network = "speck_net"', 'network = "toaster_net"'),
    ("network_number", 'network = "speck_net"', "network = 5"),
    ("kind_unknown", 'kind = "synthetic"', 'kind = "imagenet"'),
    ("folder_root_missing", 'kind = "synthetic"', 'kind = "folder"\nroot = "no/such/folder"'),
    ("unknown_key", "seed = 0", "seed = 0\nturbo = true"),
    ("unknown_section", "[train]", "[warp]\nspeed = 9\n\n[train]"),
    ("section_is_a_string", "[optim]\nlr = 1e-2\nweight_decay = 0.0\nlr_min = 1e-3", 'optim = "adam"'),
    ("duplicate_key", "seed = 0", "seed = 0\nseed = 1"),
    ("integer_past_int64", "seed = 0", "seed = 99999999999999999999999"),
]:
    add(f"config/toml_{_label}", _tiny_with({_old: _new}), names="config.toml|channels|data.root")

_config_case("toml_syntax_error", "[data\nkind = synthetic\n")
_config_case("toml_empty", "")
_config_case("toml_binary", bytes(range(256)) * 4)
_config_case("toml_not_utf8", b'[model]\nnetwork = "speck\xff\xfe"\n')
_config_case("toml_nul_bytes", "[model]\nnetwork = 'speck_net'\x00\n")
_config_case("toml_deep_nesting", "x = " + "[" * 50_000 + "]" * 50_000 + "\n")
_config_case("toml_huge_string", '[model]\nnetwork = "' + "a" * 3_000_000 + '"\n')
_config_case(
    "yaml_billion_laughs",
    textwrap.dedent(
        """\
    a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
    a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]
    a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]
    a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
    a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]
    a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]
    a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]
    a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]
    model: {network: speck_net, options: *a8}
    """
    ),
    ".yaml",
)
_config_case("yaml_null_model", "model: null\ndata: {kind: synthetic}\n", ".yaml")
_config_case("yaml_null_data", "data: ~\nmodel: {network: speck_net}\n", ".yaml")
_config_case("yaml_empty_sections", "data:\nmodel:\noptim:\ntrain:\n", ".yaml")
_config_case("yaml_top_level_list", "- model\n- data\n", ".yaml")
_config_case("yaml_top_level_scalar", "42\n", ".yaml")
_config_case("yaml_python_object_tag", "model: !!python/object/apply:os.system ['true']\n", ".yml")
_config_case("yaml_nan_lr", "model: {network: speck_net}\noptim: {lr: .nan}\n", ".yaml")
_config_case(
    "yaml_huge_integer", "model: {network: speck_net}\ntrain: {epochs: " + "9" * 400 + "}\n", ".yaml"
)
_config_case(
    "yaml_integer_past_digit_limit",
    "model: {network: speck_net}\ntrain: {epochs: " + "9" * 5000 + "}\n",
    ".yaml",
)
_config_case("yaml_deep_nesting", "x: " + "[" * 20_000 + "]" * 20_000 + "\n", ".yaml")
_config_case("yaml_tab_indent", "model:\n\tnetwork: speck_net\n", ".yaml")
_config_case("yaml_binary_tag", "model: {network: !!binary aGVsbG8=}\n", ".yaml")
_config_case("yaml_timestamp_epochs", "model: {network: speck_net}\ntrain: {epochs: 2001-12-14}\n", ".yaml")
_config_case("json_extension", '{"model": {"network": "speck_net"}}', ".json")
_config_case("no_extension", "{tiny}", "")
add(
    "config/override_unknown_section",
    lambda f, b: train_argv(f, write_file(f, "c.toml", b.config), "warp.x=1"),
    names="warp",
)
add(
    "config/override_bad_value",
    lambda f, b: train_argv(f, write_file(f, "c.toml", b.config), "train.epochs=abc"),
    names="epochs",
)
add(
    "config/override_no_equals",
    lambda f, b: train_argv(f, write_file(f, "c.toml", b.config), "train.epochs"),
    names="train.epochs",
)
add(
    "config/override_empty_key",
    lambda f, b: train_argv(f, write_file(f, "c.toml", b.config), "=5"),
    names="=5",
)
add(
    "config/override_inf",
    lambda f, b: train_argv(f, write_file(f, "c.toml", b.config), "optim.lr=inf"),
    names="lr",
)
add(
    "config/override_into_a_value",
    lambda f, b: train_argv(f, write_file(f, "c.toml", b.config), "train.epochs.x=1"),
    names="epochs",
)
add(
    "config/override_unknown_attention",
    lambda f, b: train_argv(f, write_file(f, "c.toml", b.config), "model.attention=bogus"),
    names="bogus",
)
add("config/missing_file", lambda f, b: train_argv(f, f / "nope.toml"), names="nope.toml")
add("config/directory", lambda f, b: train_argv(f, f), names="")
add(
    "config/unreadable",
    lambda f, b: train_argv(f, write_file(f, "locked.toml", b.config)),
    names="locked.toml",
    unreadable=("locked.toml",),
)
add(
    "config/resume_without_a_run",
    lambda f, b: [*train_argv(f, write_file(f, "c.toml", b.config)), "--resume"],
    names="run",
)


@case("config/out_is_a_file", names="run")
def _out_file(folder: Path, base: Base) -> list[str]:
    write_file(folder, "run", "my notes\n")
    return train_argv(folder, write_file(folder, "c.toml", base.config))


# --out folders asa-snn did not write (no .asa-snn-output marker) holding files of the output's names:
# README "Command line": such a folder stops the command with an error naming it


@case("config/out_holds_user_files", names="run", keep=("run/thesis.tex", "run/result.json"))
def _out_user(folder: Path, base: Base) -> list[str]:
    write_file(folder, "run/thesis.tex", "\\documentclass{article}\n")
    write_file(folder, "run/result.json", '{"mine": true}\n')
    return train_argv(folder, write_file(folder, "c.toml", base.config))


@case("config/disk_full_while_writing_checkpoints", fsize=4096)
def _train_full(folder: Path, base: Base) -> list[str]:
    return train_argv(folder, write_file(folder, "c.toml", base.config))


# ---- checkpoints (analyze and fold)


def _checkpoint_parts(data: bytes) -> tuple[int, dict, bytes]:
    (length,) = struct.unpack_from("<Q", data)
    return length, json.loads(data[8 : 8 + length]), data[8 + length :]


def _with_header(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _with_metadata(data: bytes, change: Callable[[dict], object]) -> bytes:
    _, header, body = _checkpoint_parts(data)
    meta = json.loads(header["__metadata__"]["asa_snn"])
    header["__metadata__"]["asa_snn"] = json.dumps(change(meta))
    return _with_header(header, body)


def _checkpoint_case(name: str, transform: Callable[[bytes], bytes], commands=("analyze", "fold"), **options):
    for command in commands:

        def make(folder: Path, base: Base, command: str = command) -> list[str]:
            path = write_file(folder, "model.safetensors", transform(base.checkpoint.read_bytes()))
            argv = [command, str(path), "--out", str(folder / "out")]
            return [*argv, "--max-samples", "4"] if command == "analyze" else [*argv, "--finetune", "0"]

        add(
            f"checkpoint/{name}/{command}",
            make,
            names=options.get("names", "model.safetensors"),
            **{k: v for k, v in options.items() if k != "names"},
        )


def _set(meta: dict, path: str, value: object) -> dict:
    target = meta
    *parents, last = path.split(".")
    for part in parents:
        target = target[part]
    target[last] = value
    return meta


def _drop(meta: dict, key: str) -> dict:
    meta.pop(key)
    return meta


def _pickle_bytes(data: bytes) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(3)}, buffer)
    return buffer.getvalue()


def _state_header_change(data: bytes, change: Callable[[dict], None]) -> bytes:
    _, header, body = _checkpoint_parts(data)
    change(header)
    return _with_header(header, body)


def _first_model_tensor(header: dict) -> str:
    return next(k for k in sorted(header) if k.startswith("model.") and "weight" in k)


_checkpoint_case("empty", lambda data: b"")
_checkpoint_case("eight_bytes", lambda data: data[:8])
_checkpoint_case("truncated_in_header", lambda data: data[: 8 + _checkpoint_parts(data)[0] // 2])
_checkpoint_case(
    "truncated_in_tensors", lambda data: data[: (8 + _checkpoint_parts(data)[0] + len(data)) // 2]
)
_checkpoint_case("last_byte_missing", lambda data: data[:-1])
_checkpoint_case("pickle_renamed", _pickle_bytes)
_checkpoint_case("zip_renamed", lambda data: b"PK\x03\x04" + bytes(60))
_checkpoint_case("random_bytes", lambda data: random.Random(5).randbytes(2048))
_checkpoint_case("header_length_2e60", lambda data: struct.pack("<Q", 2**60) + data[8:])
_checkpoint_case("header_length_past_the_file", lambda data: struct.pack("<Q", len(data)) + data[8:])
_checkpoint_case("header_not_json", lambda data: struct.pack("<Q", 16) + b"{not json at all" + data[24:])
_checkpoint_case(
    "tensor_offsets_past_the_file",
    lambda data: _state_header_change(
        data, lambda h: h[_first_model_tensor(h)].__setitem__("data_offsets", [0, 10**12])
    ),
)
_checkpoint_case(
    "tensor_dtype_unknown",
    lambda data: _state_header_change(data, lambda h: h[_first_model_tensor(h)].__setitem__("dtype", "Q7")),
)
_checkpoint_case("no_metadata", lambda data: _state_header_change(data, lambda h: h.pop("__metadata__")))
_checkpoint_case(
    "metadata_not_json",
    lambda data: _state_header_change(data, lambda h: h["__metadata__"].__setitem__("asa_snn", "{oops")),
)
_checkpoint_case("format_other", lambda data: _with_metadata(data, lambda m: _set(m, "format", "keras")))
_checkpoint_case("version_99", lambda data: _with_metadata(data, lambda m: _set(m, "version", 99)))
_checkpoint_case("metadata_is_a_list", lambda data: _with_metadata(data, lambda m: [m]))
_checkpoint_case("model_spec_missing", lambda data: _with_metadata(data, lambda m: _drop(m, "model_spec")))
_checkpoint_case("model_spec_null", lambda data: _with_metadata(data, lambda m: _set(m, "model_spec", None)))
_checkpoint_case(
    "model_spec_timesteps_string",
    lambda data: _with_metadata(data, lambda m: _set(m, "model_spec.timesteps", "x")),
)
_checkpoint_case(
    "model_spec_input_huge",
    lambda data: _with_metadata(data, lambda m: _set(m, "model_spec.input_shape", [2, 100000, 100000])),
    names="100000",
)
_checkpoint_case(
    "model_spec_network_unknown",
    lambda data: _with_metadata(data, lambda m: _set(m, "model_spec.network", "toaster_net")),
    names="toaster_net",
)
_checkpoint_case("config_missing", lambda data: _with_metadata(data, lambda m: _drop(m, "config")))
_checkpoint_case("config_wrong_type", lambda data: _with_metadata(data, lambda m: _set(m, "config", "tiny")))
_checkpoint_case(
    "config_epochs_nan",
    lambda data: _with_metadata(data, lambda m: _set(m, "config.train.epochs", float("nan"))),
    names="train.epochs",
)
_checkpoint_case(
    "state_tensor_renamed",
    lambda data: _state_header_change(
        data, lambda h: h.__setitem__("model.renamed", h.pop(_first_model_tensor(h)))
    ),
)


@case("checkpoint/directory/analyze", names="model.safetensors")
def _checkpoint_dir(folder: Path, base: Base) -> list[str]:
    (folder / "model.safetensors").mkdir()
    return ["analyze", str(folder / "model.safetensors"), "--out", str(folder / "out")]


@case("checkpoint/missing/fold", names="model.safetensors")
def _checkpoint_missing(folder: Path, base: Base) -> list[str]:
    return ["fold", str(folder / "model.safetensors"), "--out", str(folder / "out")]


@case("checkpoint/unreadable/fold", names="model.safetensors", unreadable=("model.safetensors",))
def _checkpoint_unreadable(folder: Path, base: Base) -> list[str]:
    shutil.copy(base.checkpoint, folder / "model.safetensors")
    return ["fold", str(folder / "model.safetensors"), "--out", str(folder / "out")]


@case("checkpoint/compare_truncated/analyze", names="other.safetensors")
def _checkpoint_compare(folder: Path, base: Base) -> list[str]:
    write_file(folder, "other.safetensors", base.checkpoint.read_bytes()[:100])
    argv = ["analyze", str(base.checkpoint), "--compare", str(folder / "other.safetensors")]
    return [*argv, "--out", str(folder / "out"), "--max-samples", "4"]


@case("checkpoint/analyze_data_unknown/analyze", names="nonsense")
def _analyze_data(folder: Path, base: Base) -> list[str]:
    return ["analyze", str(base.checkpoint), "--data", "nonsense", "--out", str(folder / "out")]


@case("checkpoint/fold_target_unknown/fold", names="toaster")
def _fold_target(folder: Path, base: Base) -> list[str]:
    return ["fold", str(base.checkpoint), "--target", "toaster", "--out", str(folder / "out")]


@case("checkpoint/fold_calib_broken/fold", names="calib.toml")
def _fold_calib(folder: Path, base: Base) -> list[str]:
    write_file(folder, "calib.toml", "[data\n")
    return ["fold", str(base.checkpoint), "--calib", str(folder / "calib.toml"), "--out", str(folder / "out")]


# ---- folded graphs (check, simulate, deploy speck --dry-run, budget)


def _graph_copy(folder: Path, base: Base, source: Path | None = None) -> Path:
    target = folder / "graph"
    shutil.copytree(source or base.graph, target)
    return target


def _graph_command(command: str, graph: Path, folder: Path, base: Base) -> list[str]:
    if command == "check":
        return ["check", str(graph), "--target", "speck"]
    if command == "simulate":
        return ["simulate", str(graph), "--data", "builtin:synthetic:2"]
    if command == "deploy":
        return ["deploy", "speck", str(graph), "--dry-run", "--out", str(folder / "deployed")]
    return [
        "budget",
        str(graph),
        "--budget",
        str(base.budget),
        "--data",
        "builtin:synthetic:2",
        "--out",
        str(folder / "budget"),
    ]


def _graph_case(name: str, change: Callable[[dict], object], commands=("check",), **options) -> None:
    for command in commands:

        def make(folder: Path, base: Base, command: str = command) -> list[str]:
            graph = _graph_copy(folder, base)
            document = json.loads((graph / "graph.json").read_text())
            changed = change(document)
            text = (
                changed if isinstance(changed, str) else json.dumps(document if changed is None else changed)
            )
            (graph / "graph.json").write_text(text)
            return _graph_command(command, graph, folder, base)

        add(
            f"graph/{name}/{command}",
            make,
            names=options.get("names", "graph|layer '"),
            **{k: v for k, v in options.items() if k != "names"},
        )


def _layer(document: dict, index: int) -> dict:
    return document["layers"][index]


ALL = ("check", "simulate", "deploy", "budget")
_graph_case("not_json", lambda d: "{layers: [", ALL)
_graph_case("empty", lambda d: "")
_graph_case("array", lambda d: [])
_graph_case("null", lambda d: "null")
_graph_case("deep_nesting", lambda d: "[" * 100_000 + "]" * 100_000)
_graph_case("format_other", lambda d: d.update(format="onnx"))
_graph_case("version_1", lambda d: d.update(version=1), ALL)
_graph_case("version_3", lambda d: d.update(version=3))
_graph_case("version_string", lambda d: d.update(version="2"))
_graph_case("layers_missing", lambda d: d.pop("layers") and None)
_graph_case("layers_object", lambda d: d.update(layers={}))
_graph_case("layers_empty", lambda d: d.update(layers=[]), ("check", "simulate"))
_graph_case("layer_is_a_number", lambda d: d.update(layers=[1, 2]))
_graph_case("layer_name_missing", lambda d: _layer(d, 0).pop("name") and None)
_graph_case("layer_name_number", lambda d: _layer(d, 0).update(name=5))
_graph_case("layer_op_missing", lambda d: _layer(d, 0).pop("op") and None)
_graph_case("layer_op_unknown", lambda d: _layer(d, 0).update(op="attention_magic"), ("check", "simulate"))
_graph_case("layer_output_shape_missing", lambda d: _layer(d, 0).pop("output_shape") and None)
_graph_case("layer_output_shape_negative", lambda d: _layer(d, 0).update(output_shape=[4, -8, 8]), ALL)
_graph_case("layer_output_shape_huge", lambda d: _layer(d, 0).update(output_shape=[4, 100000, 100000]), ALL)
_graph_case("layer_output_shape_string", lambda d: _layer(d, 0).update(output_shape="4x8x8"))
_graph_case(
    "layer_output_shape_floats", lambda d: _layer(d, 0).update(output_shape=[4.5, 8, 8]), ("simulate",)
)
_graph_case(
    "layer_duplicate_names", lambda d: _layer(d, 3).update(name=_layer(d, 0)["name"]), ("check", "simulate")
)
_graph_case("layer_inputs_unknown", lambda d: _layer(d, 3).update(inputs=["ghost"]), ("check", "simulate"))
_graph_case("layer_tensors_missing_entry", lambda d: _layer(d, 0)["tensors"].update(bias={"shape": [4]}))
_graph_case(
    "layer_tensor_shape_differs", lambda d: _layer(d, 0)["tensors"]["weight"].update(shape=[4, 2, 5, 5])
)
_graph_case("layer_tensors_null", lambda d: _layer(d, 0).update(tensors=None))
_graph_case(
    "neuron_kind_unknown",
    lambda d: _layer(d, 0)["neuron"].update(kind="hodgkin_huxley"),
    ("check", "simulate"),
)
_graph_case("neuron_threshold_nan", lambda d: _layer(d, 0)["neuron"].update(threshold=float("nan")), ALL)
_graph_case(
    "neuron_threshold_infinite",
    lambda d: _layer(d, 0)["neuron"].update(threshold=float("inf")),
    ("check", "simulate"),
)
_graph_case(
    "neuron_threshold_string",
    lambda d: _layer(d, 0)["neuron"].update(threshold="high"),
    ("check", "simulate"),
)
_graph_case(
    "neuron_threshold_zero", lambda d: _layer(d, 0)["neuron"].update(threshold=0), ("check", "simulate")
)
_graph_case("neuron_reset_unknown", lambda d: _layer(d, 0)["neuron"].update(reset="explode"))
_graph_case("neuron_unknown_field", lambda d: _layer(d, 0)["neuron"].update(colour="blue"))
_graph_case("neuron_is_a_list", lambda d: _layer(d, 0).update(neuron=[1, 2]))
_graph_case(
    "quant_bits_string", lambda d: _layer(d, 0)["quant"].update(weight_bits="eight"), ("check", "simulate")
)
_graph_case(
    "quant_scale_nan", lambda d: _layer(d, 0)["quant"].update(scale=float("nan")), ("check", "simulate")
)
_graph_case(
    "attrs_kernel_zero", lambda d: _layer(d, 0)["attrs"].update(kernel_size=[0, 0]), ("check", "simulate")
)
_graph_case("attrs_stride_zero", lambda d: _layer(d, 0)["attrs"].update(stride=[0, 0]), ("check", "simulate"))
_graph_case(
    "attrs_padding_negative", lambda d: _layer(d, 0)["attrs"].update(padding=[-3, -3]), ("check", "simulate")
)
_graph_case(
    "attrs_pool_kernel_string", lambda d: _layer(d, 1)["attrs"].update(kernel_size="2"), ("check", "simulate")
)
_graph_case("input_missing", lambda d: d.pop("input") and None)
_graph_case("input_n_steps_zero", lambda d: d["input"].update(n_steps=0), ("check", "simulate"))
_graph_case("input_n_steps_huge", lambda d: d["input"].update(n_steps=1_000_000_000), ("simulate", "budget"))
_graph_case("input_shape_huge", lambda d: d["input"].update(shape=[2, 100000, 100000]), ("check", "simulate"))
_graph_case("input_sensor_huge", lambda d: d["input"].update(sensor_size=[100000, 100000, 2]), ("simulate",))
_graph_case("input_dt_negative", lambda d: d["input"].update(dt_us=-20000), ("check", "simulate"))
_graph_case("input_unknown_field", lambda d: d["input"].update(gamma=2.2))
_graph_case("num_classes_zero", lambda d: d.update(num_classes=0), ("check", "simulate"))
_graph_case("num_classes_string", lambda d: d.update(num_classes="three"), ("check", "simulate"))
_graph_case("vote_zero", lambda d: d.update(vote=0), ("simulate",))
_graph_case("target_unknown", lambda d: d.update(target="toaster"), ("check", "deploy"))
_graph_case("target_not_identifier", lambda d: d.update(target="Speck; rm -rf /"), ("check", "simulate"))
_graph_case("target_number", lambda d: d.update(target=7), ("check",))
_graph_case("num_classes_float", lambda d: d.update(num_classes=3.0), ("check",))
_graph_case("input_shape_floats", lambda d: d["input"].update(shape=[2, 16.5, 16]), ("check",))
_graph_case(
    "input_frames_huge",  # 10,000 steps of 2 x 128 x 128: each in range, 1.3 GiB of frames together
    lambda d: d["input"].update(
        n_steps=10_000, shape=[2, 128, 128], sensor_size=[128, 128, 2], downsample=1, crop=None
    ),
    ("simulate",),
)
_graph_case("quant_bits_huge", lambda d: _layer(d, 0)["quant"].update(state_bits=4096), ("check", "simulate"))
_graph_case("quantized_string", lambda d: d.update(quantized="yes"), ("check", "simulate"))


def _tensor_case(name: str, change: Callable[[Path, Base], None], commands=("check",), **options) -> None:
    for command in commands:

        def make(folder: Path, base: Base, command: str = command) -> list[str]:
            graph = _graph_copy(folder, base)
            change(graph, base)
            return _graph_command(command, graph, folder, base)

        add(
            f"graph/{name}/{command}",
            make,
            names=options.get("names", "graph|layer '"),
            **{k: v for k, v in options.items() if k != "names"},
        )


def _rewrite_tensors(graph: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(graph / "tensors.safetensors")
    change(tensors)
    save_file(tensors, graph / "tensors.safetensors")


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


_tensor_case("tensors_truncated", lambda g, b: _truncate(g / "tensors.safetensors", 40), ALL, names="tensors")
_tensor_case(
    "tensors_last_byte_missing",
    lambda g, b: _truncate(g / "tensors.safetensors", -1),
    ("check", "simulate"),
    names="tensors",
)
_tensor_case("tensors_empty", lambda g, b: _truncate(g / "tensors.safetensors", 0), names="tensors")
_tensor_case(
    "tensors_missing", lambda g, b: (g / "tensors.safetensors").unlink(), ("check", "deploy"), names="tensors"
)
_tensor_case(
    "tensors_pickle",
    lambda g, b: (g / "tensors.safetensors").write_bytes(_pickle_bytes(b"")),
    names="tensors",
)
_tensor_case(
    "tensors_header_2e60",
    lambda g, b: (g / "tensors.safetensors").write_bytes(
        struct.pack("<Q", 2**60) + (g / "tensors.safetensors").read_bytes()[8:]
    ),
    names="tensors",
)
_tensor_case(
    "tensors_is_a_directory",
    lambda g, b: ((g / "tensors.safetensors").unlink(), (g / "tensors.safetensors").mkdir()),
    names="tensors",
)
_tensor_case(
    "graph_json_is_a_directory",
    lambda g, b: ((g / "graph.json").unlink(), (g / "graph.json").mkdir()),
    names="graph|layer '",
)
_tensor_case(
    "graph_json_missing", lambda g, b: (g / "graph.json").unlink(), ("check", "budget"), names="graph"
)
_tensor_case(
    "graph_json_unreadable",
    lambda g, b: None,
    ("check",),
    names="graph.json",
    unreadable=("graph/graph.json",),
)
_tensor_case(
    "weights_float_nan",
    lambda g, b: _rewrite_tensors(g, lambda t: t.update({k: np.full(v.shape, np.nan) for k, v in t.items()})),
    ("check", "simulate", "deploy"),
    names="graph|layer '",
)
_tensor_case(
    "weights_float_in_quantized",
    lambda g, b: _rewrite_tensors(
        g, lambda t: t.update({k: v.astype(np.float32) + 0.5 for k, v in t.items()})
    ),
    ("check", "simulate"),
    names="graph|layer '",
)
_tensor_case(
    "weights_int64_extremes",
    lambda g, b: _rewrite_tensors(
        g, lambda t: t.update({k: np.full(v.shape, 2**62, np.int64) for k, v in t.items()})
    ),
    ("check", "simulate"),
    names="graph|layer '",
)
_tensor_case(
    "weight_dropped",
    lambda g, b: _rewrite_tensors(g, lambda t: t.pop(sorted(t)[0])),
    ("check",),
    names="graph|layer '",
)
add("graph/missing_folder/check", lambda f, b: ["check", str(f / "nowhere")], names="nowhere")
add(
    "graph/a_file/simulate",
    lambda f, b: ["simulate", str(write_file(f, "graph.txt", "hi"))],
    names="graph.txt",
)
add(
    "graph/loihi_graph_on_speck/deploy",
    lambda f, b: ["deploy", "speck", str(b.loihi), "--dry-run", "--out", str(f / "d")],
    names="loihi|Speck",
)
add(
    "graph/check_target_unknown/check",
    lambda f, b: ["check", str(b.graph), "--target", "toaster"],
    names="toaster",
)


@case("graph/deploy_events_broken/deploy", names="bad.bs2")
def _deploy_events(folder: Path, base: Base) -> list[str]:
    write_file(folder, "bad.bs2", b"\x01\x02")
    return [
        "deploy",
        "speck",
        str(base.graph),
        "--dry-run",
        "--events",
        str(folder / "bad.bs2"),
        "--out",
        str(folder / "d"),
    ]


@case("graph/deploy_loihi_disk_full/deploy", fsize=2048)
def _deploy_loihi_full(folder: Path, base: Base) -> list[str]:
    return ["deploy", "loihi", str(base.loihi), "--out", str(folder / "d")]


@case("graph/simulate_out_under_a_file/simulate", names="afile")
def _simulate_out(folder: Path, base: Base) -> list[str]:
    write_file(folder, "afile", "")
    return [
        "simulate",
        str(base.graph),
        "--data",
        "builtin:synthetic:2",
        "--out",
        str(folder / "afile" / "s.json"),
    ]


@case("graph/deploy_out_holds_user_files/deploy", names="deployed", keep=("deployed/deploy_speck.json",))
def _deploy_out_user(folder: Path, base: Base) -> list[str]:
    write_file(folder, "deployed/deploy_speck.json", '{"mine": true}\n')
    return ["deploy", "speck", str(base.graph), "--dry-run", "--out", str(folder / "deployed")]


# ---- budget files


def budget_argv(folder: Path, base: Base, budget: Path) -> list[str]:
    return [
        "budget",
        str(base.graph),
        "--budget",
        str(budget),
        "--data",
        "builtin:synthetic:2",
        "--out",
        str(folder / "out"),
    ]


def _budget_case(name: str, text: str | bytes, suffix: str = ".toml", **options) -> None:
    def make(folder: Path, base: Base) -> list[str]:
        return budget_argv(folder, base, write_file(folder, f"budget{suffix}", text))

    add(f"budget/{name}", make, names=options.pop("names", "budget"), **options)


_budget_case("syntax_error", "[network\nfiring_rate = 0.1\n")
_budget_case("limit_string", '[network]\nfiring_rate = "low"\n')
_budget_case("limit_nan", "[network]\nfiring_rate = nan\n")
_budget_case("limit_inf", "[network]\nspikes_per_inference = inf\n")
_budget_case("limit_negative", "[network]\nspikes_per_inference = -5\n")
_budget_case("limit_bool", "[network]\nlatency_steps = true\n")
_budget_case("limit_array", "[network]\nfiring_rate = [0.1, 0.2]\n")
_budget_case("limit_huge_integer", "[network]\nspikes_per_inference = 9223372036854775807\n", either=True)
_budget_case("unknown_metric", "[network]\nhappiness = 3\n")
_budget_case("unknown_section", "[cosmos]\nfiring_rate = 0.1\n")
_budget_case("network_is_a_number", "network = 5\n")
_budget_case("energy_not_a_table", "[network]\nenergy_uj = 500\n")
_budget_case("energy_unknown_preset", "[network]\nenergy_uj = { toaster = 5 }\n")
_budget_case("energy_nan", "[network]\nenergy_uj = { speck = nan }\n")
_budget_case("layer_unknown", "[layers.ghost]\nfiring_rate = 0.1\n", names="ghost")
_budget_case("layers_not_a_table", 'layers = "conv1"\n')
_budget_case("description_number", "description = 5\n")
_budget_case("not_utf8", b"[network]\nfiring_rate = 0.1 # \xff\xfe\n")
_budget_case(  # a list of 10**9 ones once the aliases expand; its repr in an error would be gigabytes
    "yaml_billion_laughs",
    "network:\n  firing_rate:\n    - &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    + "".join(f"    - &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 9))
    + "    - *a8\n",
    ".yaml",
    headroom_mib=768,  # fail fast: with 2 GiB the repr takes 28 s to run out
)
_budget_case("yaml_null_network", "network: null\nlayers: ~\n", ".yaml", either=True)
_budget_case("yaml_top_level_list", "- network\n", ".yaml")
_budget_case("yaml_python_tag", "network: !!python/object/apply:os.system ['true']\n", ".yml")
_budget_case("yaml_deep_nesting", "network: " + "[" * 20_000 + "]" * 20_000 + "\n", ".yaml")
_budget_case("json_extension", '{"network": {}}', ".json")
add("budget/missing", lambda f, b: budget_argv(f, b, f / "none.toml"), names="none.toml")
add("budget/directory", lambda f, b: budget_argv(f, b, f), names="")
add(
    "budget/unreadable",
    lambda f, b: budget_argv(f, b, write_file(f, "locked.toml", "[network]\n")),
    names="locked.toml",
    unreadable=("locked.toml",),
)


@case("budget/out_holds_user_files", names="out", keep=("out/data.csv", "out/budget.json"))
def _budget_out(folder: Path, base: Base) -> list[str]:
    write_file(folder, "out/data.csv", "1,2,3\n")
    write_file(folder, "out/budget.json", '{"mine": true}\n')
    return budget_argv(folder, base, base.budget)


# ---- the command line itself


add("cli/unknown_option", lambda f, b: ["check", str(b.graph), "--frobnicate"], names="--frobnicate")
add("cli/unknown_command", lambda f, b: ["frobnicate"], names="frobnicate")
add(
    "cli/max_samples_not_a_number",
    lambda f, b: ["simulate", str(b.graph), "--max-samples", "many"],
    names="--max-samples",
)
add("cli/missing_argument", lambda f, b: ["check"], names="graph_dir")


# ---------------------------------------------------------------- running the corpus

_DRIVER = r"""
import importlib, json, os, resource, signal, sys, time, traceback

jobs = json.load(sys.stdin)
workers = int(sys.argv[1])
import matplotlib
matplotlib.use("Agg")
import asa_snn.cli as cli
for name in (
    "asa_snn.data.formats", "asa_snn.data.preview", "asa_snn.convert.graph", "asa_snn.train",
    "asa_snn.train.config", "asa_snn.workflows.simulate", "asa_snn.workflows.budget",
    "asa_snn.workflows.fold", "asa_snn.workflows.analyze", "asa_snn.chips.registry",
    "asa_snn.chips.speck.board", "asa_snn.chips.loihi.board", "yaml", "h5py", "safetensors.torch",
    "matplotlib.pyplot",
):
    importlib.import_module(name)


def status_kib(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))


def drop_dac():
    # capset(2): keep every capability but CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2), so
    # that file permissions apply to root too
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    for word in data[:1]:
        word.effective &= ~0b110
        word.permitted &= ~0b110
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def child(job):
    code = 1
    try:
        out = os.open(job["log"] + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(job["log"] + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.chdir(job["cwd"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cap = status_kib("VmSize") * 1024 + job["headroom_mib"] * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
        if job["fsize"]:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (job["fsize"], job["fsize"]))
        if job["drop_dac"]:
            drop_dac()
        sys.argv = ["asa-snn", *job["argv"]]
        code = cli.main(job["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


base_rss = status_kib("VmRSS")
results, running, queue = {}, {}, list(jobs)
while queue or running:
    while queue and len(running) < workers:
        job = queue.pop(0)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(job)
        running[pid] = (job, time.monotonic(), False)
    pid, status, usage = os.wait4(-1, os.WNOHANG)
    if pid == 0:
        now = time.monotonic()
        for other, (job, start, killed) in list(running.items()):
            if not killed and now - start > job["timeout"]:
                os.kill(other, signal.SIGKILL)
                running[other] = (job, start, True)
        time.sleep(0.005)
        continue
    job, start, killed = running.pop(pid)
    results[job["id"]] = {
        "status": os.waitstatus_to_exitcode(status),
        "wall_s": time.monotonic() - start,
        "maxrss_mib": usage.ru_maxrss / 1024,
        "timed_out": killed,
    }
json.dump({"base_rss_mib": base_rss / 1024, "results": results}, sys.stdout)
"""


def child_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "RUST_BACKTRACE": "0",
        "COLUMNS": "100",
    }


@dataclass
class Outcome:
    status: int
    stderr: str
    stdout: str
    wall_s: float
    maxrss_mib: float
    timed_out: bool


def _make_base(root: Path) -> Base:
    """The valid artefacts: samples, a Speck and a Loihi graph, a one-epoch checkpoint, a budget."""
    from conftest import TINY
    from graph_builders import loihi_graph, speck_graph

    from asa_snn.convert.graph import save_graph
    from asa_snn.train import load_config, train

    (root / "samples").mkdir(parents=True)
    samples = sample_bytes(root / "samples")
    save_graph(speck_graph(), root / "speck_graph")
    save_graph(loihi_graph(), root / "loihi_graph")
    config = TINY.replace("epochs = 3", "epochs = 1").replace("n_samples = 48", "n_samples = 16")
    config = config.replace("n_test_samples = 12", "n_test_samples = 6")
    (root / "tiny.toml").write_text(config)
    train(load_config(root / "tiny.toml"), root / "run", progress=False)
    budget = root / "budget.toml"
    budget.write_text("[network]\nspikes_per_inference = 1e12\n")  # always met
    return Base(
        root,
        samples,
        root / "speck_graph",
        root / "loihi_graph",
        root / "run" / "best.safetensors",
        config,
        budget,
    )


def _lock(path: Path) -> None:
    path.chmod(0)


def _prepare(root: Path, base: Base, cases: list[Case]) -> list[dict]:
    """Write every case's input into its folder; the driver's jobs."""
    jobs = []
    for index, item in enumerate(cases):
        folder = root / "cases" / f"{index:03d}"
        folder.mkdir(parents=True)
        argv = item.make(folder, base)
        for relative in item.keep:
            (folder / (relative + ".expected")).write_bytes((folder / relative).read_bytes())
        for relative in item.unreadable:
            _lock(folder / relative)
        jobs.append(
            {
                "id": item.name,
                "argv": argv,
                "cwd": str(folder),
                "log": str(root / "logs" / f"{index:03d}"),
                "fsize": item.fsize,
                "drop_dac": bool(item.unreadable) and AS_ROOT,
                "timeout": LIMIT_S + 10,
                "headroom_mib": item.headroom_mib,
            }
        )
    return jobs


def run_driver(jobs: list[dict], workers: int = WORKERS) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(workers)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO,
        timeout=60 + len(jobs) * (LIMIT_S + 10) / workers,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"corpus driver failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def corpus() -> dict:
    """Every case written and run (in parallel); case name -> Outcome, plus the folders."""
    root = Path(tempfile.mkdtemp(prefix="asa-snn-hostile-"))
    try:
        base = _make_base(root / "base")
        (root / "logs").mkdir()
        jobs = _prepare(root, base, CASES)
        started = time.monotonic()
        report = run_driver(jobs)
        outcomes = {}
        for job in jobs:
            got = report["results"][job["id"]]
            outcomes[job["id"]] = Outcome(
                got["status"],
                Path(job["log"] + ".err").read_text(errors="replace"),
                Path(job["log"] + ".out").read_text(errors="replace"),
                got["wall_s"],
                got["maxrss_mib"],
                got["timed_out"],
            )
        yield {
            "outcomes": outcomes,
            "folders": {job["id"]: Path(job["cwd"]) for job in jobs},
            "jobs": {job["id"]: job for job in jobs},
            "base": base,
            "base_rss_mib": report["base_rss_mib"],
            "seconds": time.monotonic() - started,
        }
    finally:
        for path in root.rglob("*"):  # unlock what the cases locked, then remove everything
            if not path.is_symlink():
                path.chmod(0o700)
        shutil.rmtree(root, ignore_errors=True)


def check_outcome(item: Case, outcome: Outcome, folder: Path) -> None:
    """The promises: one line, the right status, no traceback, bounded time and memory, files kept."""
    where = f"{item.name}: status {outcome.status}, stderr:\n{outcome.stderr[-3000:]}"
    assert not outcome.timed_out, f"{item.name}: still running after {LIMIT_S + 10:.0f} s"
    assert outcome.wall_s < LIMIT_S, f"{item.name}: took {outcome.wall_s:.1f} s"
    assert outcome.maxrss_mib < LIMIT_RSS_MIB, f"{item.name}: peak RSS {outcome.maxrss_mib:.0f} MiB"
    assert "Traceback" not in outcome.stderr, where
    lines = outcome.stderr.splitlines()
    if item.either and outcome.status == 0:
        assert lines == [], where
    else:
        usage = item.kind == "cli"
        assert outcome.status == (2 if usage else 1), where
        assert len(lines) == 1, where
        line = lines[0]
        assert line.startswith("error: "), where
        assert "internal error" not in line, where
        assert "out of memory" not in line, where
        assert any(name in line for name in item.names.split("|")), (
            f"{item.name}: {item.names!r} not in {line!r}"
        )
    for relative in item.keep:
        kept = folder / relative
        assert kept.is_file(), f"{item.name}: {relative} was removed"
        assert kept.read_bytes() == (folder / (relative + ".expected")).read_bytes(), f"{relative} changed"


XFAIL: dict[str, str] = {}
"""Case name prefix -> the bug it exposes (not fixed yet; each fails today)."""


def xfail_reason(item: Case) -> str:
    return item.xfail or next((why for prefix, why in XFAIL.items() if item.name.startswith(prefix)), "")


def _param(item: Case):
    reason = xfail_reason(item)
    marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
    return pytest.param(item, id=item.name, marks=marks)


@pytest.mark.parametrize("item", [_param(item) for item in CASES])
def test_hostile_input(item: Case, corpus: dict) -> None:
    check_outcome(item, corpus["outcomes"][item.name], corpus["folders"][item.name])


def test_corpus_size(corpus: dict) -> None:
    kinds: dict[str, int] = {}
    for item in CASES:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    assert len(CASES) >= 200 and len({item.name for item in CASES}) == len(CASES)
    peak = max(outcome.maxrss_mib for outcome in corpus["outcomes"].values())
    slowest = max(outcome.wall_s for outcome in corpus["outcomes"].values())
    print(
        f"\n{len(CASES)} hostile inputs ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))}) "
        f"in {corpus['seconds']:.0f} s; slowest {slowest:.1f} s; peak RSS {peak:.0f} MiB "
        f"(driver after imports: {corpus['base_rss_mib']:.0f} MiB)"
    )


REAL_ENTRY = (
    "events/npz/truncated_half",
    "events/aedat4/empty_packet_decoder_panic",
    "events/bomb/npz_zip_bomb_1536MiB",
    "data/builtin:other",
    "config/yaml_billion_laughs",
    "checkpoint/header_length_2e60/analyze",
    "graph/neuron_threshold_nan/simulate",
    "budget/limit_nan",
    "cli/unknown_option",
)


def test_console_script_matches_the_driver(corpus: dict) -> None:
    """A few inputs through ``python -m asa_snn.cli`` itself: the interpreter's own start and exit."""

    def run(name: str) -> tuple[str, Outcome]:
        job = corpus["jobs"][name]
        started = time.monotonic()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "asa_snn.cli", *job["argv"]],
                cwd=job["cwd"],
                env=child_env(),
                stdout=out,
                stderr=err,
            )
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                process.returncode = 0  # reaped here; keep Popen from waiting again
            out.seek(0)
            err.seek(0)
            return name, Outcome(
                os.waitstatus_to_exitcode(status),
                err.read().decode(errors="replace"),
                out.read().decode(errors="replace"),
                time.monotonic() - started,
                usage.ru_maxrss / 1024,
                False,
            )

    names = [name for name in REAL_ENTRY if name in corpus["jobs"]]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = dict(pool.map(run, names))
    for name in names:
        item = next(c for c in CASES if c.name == name)
        if xfail_reason(item):
            continue
        check_outcome(item, results[name], corpus["folders"][name])
        driver = corpus["outcomes"][name]
        assert (results[name].status, results[name].stderr) == (driver.status, driver.stderr), name
