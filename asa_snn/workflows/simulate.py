"""``asa-snn simulate``: run a folded graph on any backend over recordings, streamed in batches.

:func:`simulate_summary` (what the command runs) holds one batch of frames and its result at a
time plus one small summary per batch, so its memory does not grow with the number of recordings
(``benchmarks/simulate_memory.py``). :func:`simulate` also returns the result over all recordings
(spike counts, outputs and spike maps of every recording, for comparisons between backends), so
its memory grows with them: use it on small inputs.

``data`` is what :mod:`asa_snn.simulators.inputs` reads (an event file, a folder, possibly
labelled, ``builtin:synthetic[:N]``) or a training config: a ``.toml`` / ``.yaml`` file, or the name
of a shipped recipe where no such path exists, whose test split is simulated
(:func:`data_source`). With labels the summary holds accuracy, per-class accuracy and the confusion
matrix (:func:`~asa_snn.simulators.summary.label_figures`); :func:`write_confusion_figure` draws it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asa_snn.chips.registry import energy_presets, get_backend
from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.events import EventStream
from asa_snn.data.synthetic import SyntheticDVS, generate_sample
from asa_snn.errors import AsaSnnError
from asa_snn.files import atomic_write
from asa_snn.simulators.base import SimulationResult
from asa_snn.simulators.inputs import (
    BATCH,
    BUILTIN_PREFIX,
    SYNTHETIC,
    RecordingSource,
    input_batches,
    open_recordings,
)
from asa_snn.simulators.summary import merge_summaries, summarize

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")
"""Suffixes of a training config file given as ``data``."""


def is_config(data: str) -> bool:
    """True when ``data`` names a training config: an existing ``.toml`` / ``.yaml`` / ``.yml`` file,
    or, where no file or folder of that name exists, a shipped recipe name
    (:func:`~asa_snn.train.config.resolve_config_path`). Built-in data spellings never are."""
    path = Path(data)
    if path.is_file():
        return path.suffix.lower() in CONFIG_SUFFIXES
    if path.exists() or path.is_symlink() or data.startswith(BUILTIN_PREFIX) or SYNTHETIC.fullmatch(data):
        return False
    from asa_snn.train.config import resolve_config_path

    try:
        resolve_config_path(data)
    except AsaSnnError:
        return False
    return True


def config_recordings(data: str) -> RecordingSource:
    """The test split of the training config ``data`` (a file or a shipped recipe name), raw
    recordings and labels (:meth:`~asa_snn.train.data.Mapped.raw`), read one at a time.

    ``about`` names the config, the dataset kind and root, and the split (``test``: the config's
    own test set, or the part ``data.test_fraction`` holds out of the training set).

    Raises:
        AsaSnnError: a config that cannot be read or whose dataset is missing (from
            :func:`~asa_snn.train.config.load_config` / :func:`~asa_snn.train.data.build_data`).
    """
    from asa_snn.train.config import load_config, resolve_config_path
    from asa_snn.train.data import build_data, resolve_root

    path = resolve_config_path(data)
    config = load_config(path)
    test = build_data(config).test
    synthetic = getattr(test.base, "dataset", None)
    item = _generated(synthetic, test.indices) if isinstance(synthetic, SyntheticDVS) else test.raw
    held_out = config.data.test_fraction > 0
    about = {
        "kind": "config",
        "source": data,
        "config": str(path),
        "dataset": config.data.kind,
        "root": None
        if config.data.kind == "synthetic"
        else str(resolve_root(config.data.root, config.source)),
        "split": "test",
        "split_rule": (
            f"data.test_fraction = {config.data.test_fraction} of the training data"
            if held_out
            else "the dataset's own test split"
        ),
        "labels": f"{config.data.kind} test split",
    }
    names = getattr(test.base, "classes", None)
    return RecordingSource(len(test), item, about, tuple(names) if names else None)


def _generated(dataset: SyntheticDVS, indices: np.ndarray) -> Callable[[int], tuple[EventStream, int]]:
    """Items ``indices[i]`` of a synthetic dataset, generated afresh like the built-in data (a
    :class:`SyntheticDVS` caches every sample it makes, so memory would grow with the recordings);
    the same events, name and label as ``dataset.recording``."""

    def item(index: int) -> tuple[EventStream, int]:
        sample = int(indices[index])
        events = generate_sample(dataset.config, dataset.split, sample).events
        stream = EventStream(events, dataset.sensor_size, f"synthetic:{dataset.split}:{sample}")
        return stream, int(dataset.labels[sample])

    return item


def data_source(graph: FoldedGraph, data: str | RecordingSource) -> RecordingSource:
    """The recordings ``data`` names: a training config's test split (:func:`is_config`,
    :func:`config_recordings`), else what :func:`~asa_snn.simulators.inputs.open_recordings` reads."""
    if isinstance(data, RecordingSource):
        return data
    return config_recordings(data) if is_config(data) else open_recordings(graph, data)


def class_names(graph: FoldedGraph, source: RecordingSource) -> list[str]:
    """The graph's K class names: the data's where it names exactly K classes, else "0" .. "K-1"."""
    names = source.class_names
    if names is not None and len(names) == graph.num_classes:
        return [str(name) for name in names]
    return [str(k) for k in range(graph.num_classes)]


def _described(summary: dict[str, Any], graph: FoldedGraph, source: RecordingSource) -> dict[str, Any]:
    return {**summary, "data": source.about, "classes": class_names(graph, source)}


def concat_results(parts: list[SimulationResult]) -> SimulationResult:
    """One result of several batches' results of the same backend (samples concatenated in order)."""
    first = parts[0]
    return SimulationResult(
        backend=first.backend,
        spike_counts={
            name: np.concatenate([part.spike_counts[name] for part in parts]) for name in first.spike_counts
        },
        outputs=np.concatenate([part.outputs for part in parts]),
        notes=sorted({note for part in parts for note in part.notes}),
        spike_maps={
            name: np.concatenate([part.spike_maps[name] for part in parts]) for name in first.spike_maps
        },
    )


def simulated_batches(
    graph: FoldedGraph,
    data: str | RecordingSource,
    backend: str = "speck",
    max_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
    batch_size: int = BATCH,
) -> Iterator[tuple[SimulationResult, dict[str, Any]]]:
    """Run ``graph`` on ``data`` with ``backend`` one batch at a time: each batch's result and
    summary (:func:`~asa_snn.simulators.summary.summarize`), in order.

    Raises:
        AsaSnnError: unknown backend, nothing to read, no recording at all;
        MissingDependencyError: backend not installed; InputFormatError: a recording that does
        not fit the graph's input spec (named).
    """
    runner = get_backend(backend)
    presets = energy_presets()
    source = data_source(graph, data)
    done = 0
    for batch in input_batches(graph, source, max_samples, batch_size):
        result = runner.run(graph, batch.frames)
        summary = summarize(graph, result, batch, presets)
        done += summary["samples"]
        if progress:
            progress(f"{backend}: {done} recordings x {graph.input.n_steps} steps")
        yield result, summary
    if not done:
        raise AsaSnnError(f"{source.about['source']}: no recordings to simulate")


def simulate_summary(
    graph: FoldedGraph,
    data: str | RecordingSource,
    backend: str = "speck",
    max_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
    batch_size: int = BATCH,
) -> dict[str, Any]:
    """The summary of running ``graph`` on ``data`` (an event file, a folder, a training config or
    ``builtin:synthetic[:N]``) with ``backend``: per-sample spikes, operations, energy per
    preset, predictions; where labels are known accuracy, per-class accuracy and the confusion
    matrix; ``data`` (what was read: kind, source, labels, split) and ``classes``. Memory is
    bounded by ``batch_size`` recordings, not by their number. Raises what
    :func:`simulated_batches` raises."""
    source = data_source(graph, data)
    summaries = [
        summary for _, summary in simulated_batches(graph, source, backend, max_samples, progress, batch_size)
    ]
    return _described(merge_summaries(summaries), graph, source)


def simulate(
    graph: FoldedGraph,
    data: str | RecordingSource,
    backend: str = "speck",
    max_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
    batch_size: int = BATCH,
) -> tuple[SimulationResult, dict[str, Any]]:
    """Run ``graph`` on ``data`` (an event file, a folder, a training config or
    ``builtin:synthetic[:N]``) with ``backend``, keeping every recording's result (memory grows
    with the recordings; see :func:`simulate_summary` for large inputs).

    Returns:
        The result over all recordings (spike counts [B, T] per layer, outputs [B, T, K], spike
        maps) and the summary (as :func:`simulate_summary`'s).

    Raises:
        What :func:`simulated_batches` raises.
    """
    source = data_source(graph, data)
    results, summaries = [], []
    for result, summary in simulated_batches(graph, source, backend, max_samples, progress, batch_size):
        results.append(result)
        summaries.append(summary)
    return concat_results(results), _described(merge_summaries(summaries), graph, source)


def draw_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str, path: Path
) -> None:
    """A plain PNG of the confusion counts at ``path``: rows true class, columns predicted, each
    cell's count written in it (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, np.int64)
    size = max(3.5, 0.45 * len(classes) + 2.0)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ax.imshow(counts, cmap="Blues", vmin=0)
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes, rotation=45 if max(map(len, classes)) > 2 else 0)
        ax.set_yticks(ticks, classes)
        high = counts.max()
        for (row, column), count in np.ndenumerate(counts):
            colour = "white" if high and count > high / 2 else "black"
            ax.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
        fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def confusion_title(backend: str, accuracy: float, labelled: int) -> str:
    """The title of a confusion figure: backend, accuracy and how many recordings had labels."""
    return f"{backend}: accuracy {accuracy:.3f} over {labelled} labelled recordings"


def write_confusion_figure(summary: dict[str, Any], path: str | Path) -> Path | None:
    """Draw a summary's confusion matrix (:func:`draw_confusion`) to ``path``, atomically;
    None (nothing written) when its labels are unknown."""
    if summary.get("confusion") is None:
        return None
    classes = summary.get("classes") or [str(k) for k in range(len(summary["confusion"]))]
    title = confusion_title(summary["backend"], summary["accuracy"], summary["labelled"])
    return atomic_write(Path(path), lambda temp: draw_confusion(summary["confusion"], classes, title, temp))
