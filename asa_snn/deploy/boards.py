"""One entry point for running a folded graph on any chip's board."""

from __future__ import annotations

from typing import Any

from asa_snn.chips.base import BoardReport
from asa_snn.chips.registry import check_target, chips, get_chip
from asa_snn.convert.graph import FoldedGraph
from asa_snn.errors import AsaSnnError


def deploy_to_board(graph: FoldedGraph, chip: str, **options: Any) -> BoardReport:
    """Run ``graph`` on the board of ``chip`` (:attr:`asa_snn.chips.base.Chip.deploy`).

    Args:
        graph: a graph folded (and quantized) for ``chip``.
        chip: the chip's name.
        options: the chip's own deployment options (Speck: ``device``, ``events``, ``dry_run``,
            ``out_dir``; Loihi: ``events``, ``hardware``, ``out_dir``).

    Raises:
        AsaSnnError: an unknown chip, a chip without board support, or a graph folded for another
            target (both named).
    """
    check_target(graph.target)
    found = get_chip(chip)
    if found.deploy is None:
        boards = sorted(name for name, c in chips().items() if c.deploy is not None)
        raise AsaSnnError(f"chip {chip!r} has no board support; boards: {', '.join(boards)}")
    if graph.target != chip:
        raise AsaSnnError(
            f"the graph was folded for {graph.target!r}, not {chip!r}; "
            f"fold it with `asa-snn fold --target {chip}`"
        )
    return found.deploy(graph, **options)
