"""Shared by the Speck and Loihi deployments: the recording to run and the per-layer count table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.events import EventStream
from asa_snn.data.formats import read_events
from asa_snn.data.model_input import frames_for
from asa_snn.errors import AsaSnnError
from asa_snn.simulators.inputs import synthetic_for_graph


def load_recording(graph: FoldedGraph, events: str | Path | None) -> tuple[EventStream, np.ndarray]:
    """The recording to deploy and its frames for the graph.

    Args:
        graph: the folded graph (its input spec gives sensor, downsample, dt_us and T).
        events: an event file, or None for recording 0 of the embedded synthetic test split made
            for the graph's sensor and class count.

    Returns:
        (stream, frames [1, T, C, H, W] event counts).
    """
    if events is None:
        stream = synthetic_for_graph(graph, 1).recording(0)
    else:
        if not Path(events).is_file():
            raise AsaSnnError(f"{events}: no such event file")
        stream = read_events(events)
    return stream, frames_for(graph.input, stream)[None]


@dataclass(frozen=True)
class CountRow:
    """Spikes of one layer on two runs of the same input.

    Attributes:
        layer: spiking layer name.
        reference: spikes in the reference run (the built-in simulator).
        measured: spikes in the other run (chip or Lava), or None when it reported none for the layer.
        difference: ``measured - reference`` (None when ``measured`` is None).
        relative: ``difference / reference`` (None when undefined: no measurement or reference 0).
    """

    layer: str
    reference: int
    measured: int | None
    difference: int | None
    relative: float | None


def compare_counts(reference: dict[str, int], measured: dict[str, int]) -> list[CountRow]:
    """One row per layer of ``reference`` (in its order): counts, difference, relative difference.

    Layers present only in ``measured`` are an error (they cannot be matched to the graph).
    """
    extra = sorted(set(measured) - set(reference))
    if extra:
        raise AsaSnnError(f"counts for unknown layer(s) {extra}; graph layers: {', '.join(reference)}")
    rows = []
    for layer, ref in reference.items():
        got = measured.get(layer)
        diff = None if got is None else int(got) - int(ref)
        relative = None if diff is None or ref == 0 else diff / ref
        rows.append(CountRow(layer, int(ref), None if got is None else int(got), diff, relative))
    return rows


def counts_table(rows: list[CountRow], reference: str, measured: str) -> str:
    """Aligned text of :func:`compare_counts` rows; column titles name the two runs."""
    lines = [("layer", reference, measured, "difference", "relative")]
    for row in rows:
        lines.append(
            (
                row.layer,
                str(row.reference),
                "-" if row.measured is None else str(row.measured),
                "-" if row.difference is None else f"{row.difference:+d}",
                "-" if row.relative is None else f"{row.relative:+.1%}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def layer_totals(spike_counts: dict[str, np.ndarray]) -> dict[str, int]:
    """Total spikes per layer over samples and steps, from counts [B, T] per layer."""
    return {name: int(np.asarray(counts).sum()) for name, counts in spike_counts.items()}
