"""Speck (SynSense DYNAP-CNN cores) as one :class:`~asa_snn.chips.base.Chip`.

Everything about Speck lives in this folder: ``mapping.py`` (limits, core assignment),
``quantizer.py`` (int8 / int16), ``sinabs_export.py``, ``simulator.py`` (bit-accurate, time-stepped)
and ``event_driven.py`` (its event-driven mode), ``sinabs_backend.py``, ``board.py`` +
``samna_detect.py`` (samna), ``energy.py``.
"""

from __future__ import annotations

from pathlib import Path

from asa_snn.chips.base import BoardReport, Chip, TimedRun
from asa_snn.chips.registry import register
from asa_snn.chips.speck.energy import SPECK_ENERGY
from asa_snn.chips.speck.mapping import check_speck, speck_core_layout, speck_core_options
from asa_snn.chips.speck.quantizer import SpeckQuantizer
from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.model_input import ModelEvents
from asa_snn.simulators.base import Backend


def _time_stepped() -> Backend:
    from asa_snn.chips.speck.simulator import SpeckSimulator

    return SpeckSimulator()


def _event_driven() -> Backend:
    from asa_snn.chips.speck.event_driven import EventDriven
    from asa_snn.chips.speck.simulator import SpeckSimulator

    return SpeckSimulator(mode=EventDriven())


def _sinabs() -> Backend:
    from asa_snn.chips.speck.sinabs_backend import SinabsBackend

    return SinabsBackend()


def _deploy(graph: FoldedGraph, **options: object) -> BoardReport:
    from asa_snn.chips.speck.board import deploy_speck

    return deploy_speck(graph, **options)


def _timed_run(graph: FoldedGraph, events: ModelEvents) -> TimedRun:
    from asa_snn.chips.speck.event_driven import timed_run

    return timed_run(graph, events)


def _sinabs_export(graph: FoldedGraph, folder: Path) -> str:
    from asa_snn.chips.speck.sinabs_export import to_sinabs

    return f"built in memory: {len(to_sinabs(graph))} modules"


SPECK = register(
    Chip(
        name="speck",
        neuron_kinds=("iaf",),
        quantizer=SpeckQuantizer(),
        backends={"speck": _time_stepped, "speck-events": _event_driven, "sinabs": _sinabs},
        check=check_speck,
        core_layout=speck_core_layout,
        energy=SPECK_ENERGY,
        compared_backends=("sinabs", "onnx", "norse", "speck-events"),
        exports={"sinabs": _sinabs_export},
        deploy=_deploy,
        timed_run=_timed_run,
        core_options=speck_core_options,
    )
)
"""The Speck chip (``speck-events`` is the event-driven mode of the built-in simulator)."""
