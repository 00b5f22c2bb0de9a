"""A simulator's input: recordings (a file, a folder, or the built-in synthetic data) turned into
frames for a folded graph by the one preprocessing contract
(:func:`~asa_snn.data.model_input.frames_for` with the graph's input spec), in batches, so memory
is bounded by the batch size and not by the number of recordings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.events import EventStream
from asa_snn.data.formats import read_events
from asa_snn.data.model_input import frames_for
from asa_snn.data.synthetic import SyntheticDVS, SyntheticDVSConfig
from asa_snn.errors import AsaSnnError

SYNTHETIC = re.compile(r"synthetic(?::(\d+))?")
"""``synthetic`` or ``synthetic:N``: the embedded data's test split (N samples, default 32)."""
DEFAULT_SYNTHETIC = 32
BATCH = 32


@dataclass
class SimulationInput:
    """A batch for a backend: frames [B, T, C, H, W], labels [B] (-1 when unknown) and sample names."""

    frames: np.ndarray
    labels: np.ndarray
    names: list[str]


def synthetic_for_graph(graph: FoldedGraph, count: int) -> SyntheticDVS:
    """``count`` recordings of the embedded synthetic data's test split, made for the graph's
    sensor size, frame length, number of steps and number of classes."""
    spec = graph.input
    config = SyntheticDVSConfig(
        sensor_size=tuple(spec.sensor_size),
        n_steps=spec.n_steps,
        dt_us=spec.dt_us or SyntheticDVSConfig().dt_us,
        n_classes=graph.num_classes,
    )
    return SyntheticDVS(count, config, split="test")


def recording_files(path: Path) -> list[Path]:
    """The recordings at ``path``: the file itself, or a folder's visible files in name order.

    Raises:
        AsaSnnError: nothing to read at ``path``.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise AsaSnnError(f"{path}: no such event file or folder (or use 'synthetic[:N]')")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise AsaSnnError(f"{path}: the folder holds no files")
    return files


def recordings(
    graph: FoldedGraph, data: str, max_samples: int | None = None
) -> Iterator[tuple[EventStream, int]]:
    """``(recording, label)`` pairs of ``data``, read one at a time; label -1 when unknown.

    ``data``: an event file, a folder of event files, or exactly ``synthetic`` / ``synthetic:N``
    (anything else, ``synthetic_recordings/`` included, is a path).
    """
    match = SYNTHETIC.fullmatch(data)
    if match:
        count = int(match.group(1)) if match.group(1) else DEFAULT_SYNTHETIC
        dataset = synthetic_for_graph(graph, count if max_samples is None else min(count, max_samples))
        for index in range(len(dataset)):
            yield dataset.recording(index), int(dataset.labels[index])
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
