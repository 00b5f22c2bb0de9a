"""``asa-snn simulate``: run a folded graph on any backend over recordings, streamed in batches.

Memory holds one batch of frames at a time plus, per recording, its per-layer spike counts per
step ([B, T] integers, kept for comparisons between backends).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from asa_snn.chips.registry import energy_presets, get_backend
from asa_snn.convert.graph import FoldedGraph
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


def simulate(
    graph: FoldedGraph,
    data: str,
    backend: str = "speck",
    max_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
    batch_size: int = BATCH,
) -> tuple[SimulationResult, dict[str, Any]]:
    """Run ``graph`` on ``data`` (an event file, a folder, or ``synthetic[:N]``) with ``backend``.

    Returns:
        The result over all recordings (spike counts [B, T] per layer, outputs [B, T, K]) and the
        summary (per-sample spikes, operations, energy per preset, accuracy where labels are known).

    Raises:
        AsaSnnError: unknown backend, nothing to read; MissingDependencyError: backend not installed;
        InputFormatError: a recording that does not fit the graph's input spec (named).
    """
    runner = get_backend(backend)
    presets = energy_presets()
    results, summaries = [], []
    for batch in input_batches(graph, data, max_samples, batch_size):
        result = runner.run(graph, batch.frames)
        results.append(result)
        summaries.append(summarize(graph, result, batch, presets))
        if progress:
            done = sum(s["samples"] for s in summaries)
            progress(f"{backend}: {done} recordings x {graph.input.n_steps} steps")
    return concat_results(results), merge_summaries(summaries)
