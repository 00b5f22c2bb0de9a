"""A simulator's input: recordings (a file, a folder, or the built-in synthetic data) turned into
frames for a folded graph by the one preprocessing contract
(:func:`~asa_snn.data.model_input.frames_for` with the graph's input spec), in batches, so memory
is bounded by the batch size and not by the number of recordings.

Spelling of ``data`` (``--data`` of ``asa-snn simulate`` and ``asa-snn budget``):

- ``builtin:synthetic`` or ``builtin:synthetic:N``: the embedded synthetic data's test split
  (N recordings, default 32), made for the graph; labelled;
- anything else is a path: an event file (unlabelled) or a folder. A folder is read in the first
  layout that fits (:func:`folder_recordings`): a ``labels.csv`` (the
  :class:`~asa_snn.data.datasets.EventFolder` layout: its rows, labelled); a ``train`` or ``test``
  folder of N-MNIST's numbered layout (``<n>.bs2`` files and a ``labels.txt`` of ``<n> <class>``
  lines: the recordings in name order, labelled); else its recordings in name order, unlabelled.
  Side files (:data:`NOT_RECORDINGS`) are never read as recordings. A path that itself starts with
  ``builtin:`` is written ``./builtin:...``.

The old bare ``synthetic`` / ``synthetic:N`` still means the built-in data when no file or folder
of that name exists, with a deprecation warning; when one exists, it is read as the path.

A :class:`RecordingSource` is the same thing as an object (what the spellings above become, and
what a caller builds for other labelled data, such as a training config's test split).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.datasets import NMNIST, EventFolder
from asa_snn.data.events import EventStream
from asa_snn.data.formats import read_events
from asa_snn.data.model_input import frames_for
from asa_snn.data.synthetic import SyntheticDVS, SyntheticDVSConfig, generate_sample
from asa_snn.errors import AsaSnnError, InputFormatError

BUILTIN_PREFIX = "builtin:"
BUILTIN = re.compile(r"builtin:synthetic(?::(\d+))?")
"""``builtin:synthetic`` or ``builtin:synthetic:N``: the embedded test split (N samples, default 32)."""
SYNTHETIC = re.compile(r"synthetic(?::(\d+))?")
"""The deprecated bare spelling ``synthetic`` / ``synthetic:N`` (only where no such path exists)."""
BUILTIN_SPELLINGS = "'builtin:synthetic' or 'builtin:synthetic:N' (N from 1 to 1,000,000)"
DEFAULT_SYNTHETIC = 32
MAX_SYNTHETIC = 1_000_000
"""The most built-in recordings one ``builtin:synthetic:N`` may ask for (they are generated on demand)."""
BATCH = 32
NOT_RECORDINGS = (".csv", ".txt", ".md", ".json", ".yaml", ".yml", ".toml")
"""Suffixes of the side files of a recordings folder (labels.csv, labels.txt, classes.txt, notes)
that are never read as recordings."""
NUMBERED = re.compile(r"\d+\.(bs2|bin)", re.IGNORECASE)
"""A recording of N-MNIST's numbered layout: ``<n>.bs2`` (or ``.bin``)."""
NUMBERED_SPLITS = ("train", "test")
"""The folder names :class:`~asa_snn.data.datasets.NMNIST` reads the numbered layout under."""


class BuiltinDataDeprecation(FutureWarning):
    """The bare ``synthetic[:N]`` spelling of the built-in data (write ``builtin:synthetic[:N]``)."""


def builtin_count(data: str) -> int | None:
    """How many built-in synthetic recordings ``data`` asks for, or None when ``data`` is a path.

    Raises:
        AsaSnnError: ``data`` starts with ``builtin:`` but is not one of :data:`BUILTIN_SPELLINGS`,
            or N is 0 or above :data:`MAX_SYNTHETIC`.
    """
    if data.startswith(BUILTIN_PREFIX):
        match = BUILTIN.fullmatch(data)
        if match is None:
            raise AsaSnnError(
                f"data {data!r}: unknown built-in data; accepted: {BUILTIN_SPELLINGS}; anything else "
                f"is an event file or folder (write ./{data} for a path that starts with 'builtin:')"
            )
        return _count(match, data)
    match = SYNTHETIC.fullmatch(data)
    if match is None or Path(data).exists() or Path(data).is_symlink():
        return None
    warnings.warn(
        f"data {data!r} is deprecated: write 'builtin:{data}' "
        f"(a file or folder named {data!r} would be read instead)",
        BuiltinDataDeprecation,
        stacklevel=2,
    )
    return _count(match, data)


def _count(match: re.Match[str], data: str) -> int:
    count = int(match.group(1)) if match.group(1) else DEFAULT_SYNTHETIC
    if not 1 <= count <= MAX_SYNTHETIC:
        raise AsaSnnError(
            f"data {data!r}: N must be from 1 to {MAX_SYNTHETIC:,}; accepted: {BUILTIN_SPELLINGS}"
        )
    return count


@dataclass
class SimulationInput:
    """A batch for a backend: frames [B, T, C, H, W], labels [B] (-1 when unknown) and sample names."""

    frames: np.ndarray
    labels: np.ndarray
    names: list[str]


@dataclass(frozen=True)
class RecordingSource:
    """Recordings to simulate, read one at a time (nothing is held between items).

    Attributes:
        size: how many recordings.
        item: index in ``0 .. size - 1`` -> ``(recording, label)``; label -1 when unknown.
        about: plain data saying what the recordings are: ``kind`` (``builtin``, ``file``,
            ``folder``, ``labels.csv``, ``nmnist``, ``config``), ``source`` (what was asked for),
            ``labels`` (where the labels come from, or None), ``split`` where one was chosen.
        class_names: the classes' names, index = label, where the data names them.
    """

    size: int
    item: Callable[[int], tuple[EventStream, int]]
    about: dict[str, Any]
    class_names: tuple[str, ...] | None = field(default=None)


def synthetic_config(graph: FoldedGraph) -> SyntheticDVSConfig:
    """The embedded synthetic data's parameters for the graph's sensor size, frame length,
    number of steps and number of classes."""
    spec = graph.input
    return SyntheticDVSConfig(
        sensor_size=tuple(spec.sensor_size),
        n_steps=spec.n_steps,
        dt_us=spec.dt_us or SyntheticDVSConfig().dt_us,
        n_classes=graph.num_classes,
    )


def synthetic_for_graph(graph: FoldedGraph, count: int) -> SyntheticDVS:
    """``count`` recordings of the embedded synthetic data's test split, made for the graph
    (:func:`synthetic_config`)."""
    return SyntheticDVS(count, synthetic_config(graph), split="test")


def builtin_recordings(graph: FoldedGraph, count: int, data: str = "builtin:synthetic") -> RecordingSource:
    """``count`` recordings of the embedded synthetic test split made for ``graph``, labelled.

    Each is generated afresh, not cached by a :class:`SyntheticDVS`, so memory holds one at a time;
    the same events, name and label as ``SyntheticDVS(count, config, "test")``.
    """
    config = synthetic_config(graph)

    def item(index: int) -> tuple[EventStream, int]:
        events = generate_sample(config, "test", index).events
        return EventStream(events, config.sensor_size, f"synthetic:test:{index}"), index % config.n_classes

    about = {"kind": "builtin", "source": data, "labels": "generated", "split": "test"}
    return RecordingSource(count, item, about, tuple(config.classes))


def file_recordings(files: Sequence[Path], about: dict[str, Any]) -> RecordingSource:
    """The event files ``files``, in this order, unlabelled."""
    files = list(files)
    return RecordingSource(len(files), lambda index: (read_events(files[index]), -1), about)


def recording_files(path: Path) -> list[Path]:
    """The recordings at ``path``: the file itself, or a folder's visible files in name order,
    side files (:data:`NOT_RECORDINGS`) left out.

    Raises:
        AsaSnnError: nothing to read at ``path``.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise AsaSnnError(f"{path}: no such event file or folder (built-in data: {BUILTIN_SPELLINGS})")
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in NOT_RECORDINGS
    )
    if not files:
        raise AsaSnnError(
            f"{path}: the folder holds no recordings (files ending in {', '.join(NOT_RECORDINGS)} "
            "are side files, not recordings)"
        )
    return files


def is_numbered_layout(folder: Path) -> bool:
    """True for N-MNIST's numbered layout: a ``labels.txt`` beside ``<n>.bs2`` (or ``.bin``) files."""
    return (folder / "labels.txt").is_file() and any(NUMBERED.fullmatch(p.name) for p in folder.iterdir())


def folder_recordings(folder: Path, data: str) -> RecordingSource:
    """The recordings of ``folder`` in the first layout that fits (``data``: what was asked for).

    - ``labels.csv``: :class:`~asa_snn.data.datasets.EventFolder` (its rows in file order, files
      relative to the folder, ``classes.txt`` names the classes);
    - N-MNIST's numbered layout (:func:`is_numbered_layout`) in a folder named ``train`` or
      ``test``: the recordings in name order, each labelled by ``labels.txt`` (read by
      :class:`~asa_snn.data.datasets.NMNIST`; a recording it does not list is unlabelled);
    - anything else: the recordings in name order, unlabelled.

    Side files (:data:`NOT_RECORDINGS`) are never read as recordings.

    Raises:
        AsaSnnError: the folder holds no recordings, or its labels file is missing a listed file.
        InputFormatError: a labels file that cannot be read (names the file and line).
    """
    if (folder / "labels.csv").is_file():
        dataset = EventFolder(folder)
        about = {"kind": "labels.csv", "source": data, "labels": str(folder / "labels.csv")}
        return RecordingSource(len(dataset), dataset.__getitem__, about, tuple(dataset.classes))
    files = recording_files(folder)
    if not is_numbered_layout(folder):
        return file_recordings(files, {"kind": "folder", "source": data, "labels": None})
    if folder.name not in NUMBERED_SPLITS:
        warnings.warn(
            f"{folder}: labels.txt beside numbered recordings is read as N-MNIST labels only in a "
            f"folder named {' or '.join(NUMBERED_SPLITS)}; simulating without labels",
            stacklevel=3,
        )
        return file_recordings(files, {"kind": "folder", "source": data, "labels": None})
    dataset = NMNIST(folder.parent, split=folder.name)
    by_file = {Path(name).name: int(label) for name, label in zip(dataset.files, dataset.labels, strict=True)}
    about = {"kind": "nmnist", "source": data, "labels": str(folder / "labels.txt"), "split": folder.name}
    return RecordingSource(
        len(files),
        lambda index: (read_events(files[index]), by_file.get(files[index].name, -1)),
        about,
        tuple(dataset.classes),
    )


def open_recordings(graph: FoldedGraph, data: str) -> RecordingSource:
    """The recordings ``data`` names (module docstring), nothing read yet but labels files.

    Raises:
        AsaSnnError: an unknown ``builtin:`` spelling, nothing to read at the path, a labels file
            naming a missing recording.
        InputFormatError: a labels file that cannot be read.
    """
    count = builtin_count(data)
    if count is not None:
        return builtin_recordings(graph, count, data)
    path = Path(data)
    if path.is_dir():
        return folder_recordings(path, data)
    return file_recordings(recording_files(path), {"kind": "file", "source": data, "labels": None})


def recordings(
    graph: FoldedGraph, data: str | RecordingSource, max_samples: int | None = None
) -> Iterator[tuple[EventStream, int]]:
    """``(recording, label)`` pairs of ``data``, read (or generated) one at a time; label -1 when
    unknown.

    ``data``: a :class:`RecordingSource`, or an event file, a folder, or
    ``builtin:synthetic[:N]`` (module docstring; the deprecated bare ``synthetic[:N]`` only where
    no such path exists).

    Raises:
        InputFormatError: a label outside the graph's classes (names the recording and label).
    """
    if max_samples is not None and (isinstance(max_samples, bool) or max_samples < 1):
        raise AsaSnnError(f"max_samples must be an integer >= 1, got {max_samples!r}")
    source = open_recordings(graph, data) if isinstance(data, str) else data
    classes = graph.num_classes
    for index in range(source.size if max_samples is None else min(source.size, max_samples)):
        stream, label = source.item(index)
        if not -1 <= label < classes:
            raise InputFormatError(
                f"{stream.source}: label {label} is outside the graph's {classes} classes "
                f"(0..{classes - 1}); the data does not match the graph"
            )
        yield stream, int(label)


def input_batches(
    graph: FoldedGraph,
    data: str | RecordingSource,
    max_samples: int | None = None,
    batch_size: int = BATCH,
) -> Iterator[SimulationInput]:
    """Frames of ``data`` for ``graph`` in batches of at most ``batch_size`` recordings.

    Raises:
        AsaSnnError: nothing to read at ``data``.
        InputFormatError: a recording that does not fit the graph's input spec, or whose label is
            outside the graph's classes (named).
    """
    frames, labels, names = [], [], []
    for stream, label in recordings(graph, data, max_samples):
        frames.append(frames_for(graph.input, stream))
        labels.append(label)
        names.append(stream.source)
        if len(frames) == batch_size:
            yield SimulationInput(np.stack(frames), np.asarray(labels, np.int64), names)
            frames, labels, names = [], [], []
    if frames:
        yield SimulationInput(np.stack(frames), np.asarray(labels, np.int64), names)


def load_input(
    graph: FoldedGraph, data: str | RecordingSource, max_samples: int | None = None
) -> SimulationInput:
    """All of ``data`` as one batch (for small inputs; :func:`input_batches` streams)."""
    batches = list(input_batches(graph, data, max_samples))
    return SimulationInput(
        np.concatenate([b.frames for b in batches]),
        np.concatenate([b.labels for b in batches]),
        [name for b in batches for name in b.names],
    )
