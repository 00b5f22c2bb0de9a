"""A simulator's input: recordings (a file, a folder, or the built-in synthetic data) turned into
frames for a folded graph by the one preprocessing contract
(:func:`~asa_snn.data.model_input.frames_for` with the graph's input spec), in batches, so memory
is bounded by the batch size and not by the number of recordings.

Spelling of ``data`` (``--data`` of ``asa-snn simulate`` and ``asa-snn budget``):

- ``builtin:synthetic`` or ``builtin:synthetic:N``: the embedded synthetic data's test split
  (N recordings, default 32), made for the graph;
- anything else is a path: an event file or a folder of event files. A path that itself starts
  with ``builtin:`` is written ``./builtin:...``.

The old bare ``synthetic`` / ``synthetic:N`` still means the built-in data when no file or folder
of that name exists, with a deprecation warning; when one exists, it is read as the path.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.events import EventStream
from asa_snn.data.formats import read_events
from asa_snn.data.model_input import frames_for
from asa_snn.data.synthetic import SyntheticDVS, SyntheticDVSConfig, generate_sample
from asa_snn.errors import AsaSnnError

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


def recording_files(path: Path) -> list[Path]:
    """The recordings at ``path``: the file itself, or a folder's visible files in name order.

    Raises:
        AsaSnnError: nothing to read at ``path``.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise AsaSnnError(f"{path}: no such event file or folder (built-in data: {BUILTIN_SPELLINGS})")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise AsaSnnError(f"{path}: the folder holds no files")
    return files


def recordings(
    graph: FoldedGraph, data: str, max_samples: int | None = None
) -> Iterator[tuple[EventStream, int]]:
    """``(recording, label)`` pairs of ``data``, read (or generated) one at a time; label -1 when
    unknown.

    ``data``: an event file, a folder of event files, or ``builtin:synthetic[:N]`` (module
    docstring; the deprecated bare ``synthetic[:N]`` only where no such path exists).
    """
    if max_samples is not None and (isinstance(max_samples, bool) or max_samples < 1):
        raise AsaSnnError(f"max_samples must be an integer >= 1, got {max_samples!r}")
    count = builtin_count(data)
    if count is not None:
        config = synthetic_config(graph)
        for index in range(count if max_samples is None else min(count, max_samples)):
            # generated afresh, not cached by a SyntheticDVS: memory holds one recording at a time;
            # the same events, name and label as SyntheticDVS(count, config, "test")
            events = generate_sample(config, "test", index).events
            yield EventStream(events, config.sensor_size, f"synthetic:test:{index}"), index % config.n_classes
        return
    files = recording_files(Path(data))
    for file in files[:max_samples] if max_samples else files:
        yield read_events(file), -1


def input_batches(
    graph: FoldedGraph, data: str, max_samples: int | None = None, batch_size: int = BATCH
) -> Iterator[SimulationInput]:
    """Frames of ``data`` for ``graph`` in batches of at most ``batch_size`` recordings.

    Raises:
        AsaSnnError: nothing to read at ``data``.
        InputFormatError: a recording does not fit the graph's input spec (named).
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


def load_input(graph: FoldedGraph, data: str, max_samples: int | None = None) -> SimulationInput:
    """All of ``data`` as one batch (for small inputs; :func:`input_batches` streams)."""
    batches = list(input_batches(graph, data, max_samples))
    return SimulationInput(
        np.concatenate([b.frames for b in batches]),
        np.concatenate([b.labels for b in batches]),
        [name for b in batches for name in b.names],
    )
