"""``asa-snn simulate``: run a folded graph on any backend over recordings, streamed in batches.

:func:`simulate_summary` (what the command runs) holds one batch of frames and its result at a
time plus one small summary per batch, so its memory does not grow with the number of recordings
(``benchmarks/simulate_memory.py``). :func:`simulate` also returns the result over all recordings
(spike counts, outputs and spike maps of every recording, for comparisons between backends), so
its memory grows with them: use it on small inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from asa_snn.chips.registry import energy_presets, get_backend
from asa_snn.convert.graph import FoldedGraph
from asa_snn.errors import AsaSnnError
from asa_snn.simulators.base import SimulationResult
from asa_snn.simulators.inputs import BATCH, input_batches
from asa_snn.simulators.summary import merge_summaries, summarize


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
    data: str,
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
    done = 0
    for batch in input_batches(graph, data, max_samples, batch_size):
        result = runner.run(graph, batch.frames)
        summary = summarize(graph, result, batch, presets)
        done += summary["samples"]
        if progress:
            progress(f"{backend}: {done} recordings x {graph.input.n_steps} steps")
        yield result, summary
    if not done:
        raise AsaSnnError(f"{data}: no recordings to simulate")


def simulate_summary(
    graph: FoldedGraph,
    data: str,
    backend: str = "speck",
    max_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
    batch_size: int = BATCH,
) -> dict[str, Any]:
    """The summary of running ``graph`` on ``data`` (an event file, a folder, or
    ``builtin:synthetic[:N]``) with ``backend``: per-sample spikes, operations, energy per
    preset, accuracy where labels are known, predictions. Memory is bounded by ``batch_size``
    recordings, not by their number. Raises what :func:`simulated_batches` raises."""
    summaries = [
        summary for _, summary in simulated_batches(graph, data, backend, max_samples, progress, batch_size)
    ]
    return merge_summaries(summaries)


def simulate(
    graph: FoldedGraph,
    data: str,
    backend: str = "speck",
    max_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
    batch_size: int = BATCH,
) -> tuple[SimulationResult, dict[str, Any]]:
    """Run ``graph`` on ``data`` (an event file, a folder, or ``builtin:synthetic[:N]``) with
    ``backend``, keeping every recording's result (memory grows with the recordings; see
    :func:`simulate_summary` for large inputs).

    Returns:
        The result over all recordings (spike counts [B, T] per layer, outputs [B, T, K], spike
        maps) and the summary (per-sample spikes, operations, energy per preset, accuracy where
        labels are known).

    Raises:
        What :func:`simulated_batches` raises.
    """
    results, summaries = [], []
    for result, summary in simulated_batches(graph, data, backend, max_samples, progress, batch_size):
        results.append(result)
        summaries.append(summary)
    return concat_results(results), merge_summaries(summaries)
