"""The one interface every chip implements, and the plain types chip checks return.

A chip is a folder ``asa_snn/chips/<name>/`` whose ``chip.py`` builds one :class:`Chip` and
registers it (:mod:`asa_snn.chips.registry`). The :class:`Chip` record is all the rest of the
pipeline knows about a chip: which neurons the fold may produce for it, how its integers are made,
which simulators and exporters it has, how a graph maps onto its cores, and its energy model. The
fold, simulate, budget and demo workflows look chips up by name and never branch on one.

Everything a chip provides is a callable that imports what it needs when called, so looking a chip
up loads neither sinabs' Speck backend, nor samna, nor Lava.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from asa_snn.convert.graph import FoldedGraph
from asa_snn.convert.quantize import Quantizer
from asa_snn.data.model_input import ModelEvents
from asa_snn.energy.model import EnergyModel
from asa_snn.simulators.base import Backend


@dataclass(frozen=True)
class Violation:
    """One broken chip limit: which layer, which limit, the value found and how to fix it."""

    layer: str
    limit: str
    value: object
    fix: str

    def line(self) -> str:
        """``layer: limit = value (fix)``, the form every report prints."""
        return f"{self.layer}: {self.limit} = {self.value} ({self.fix})"


@dataclass(frozen=True)
class CoreUse:
    """How one spiking layer sits on a chip: cores it takes and memory per core.

    Attributes:
        cores: cores the layer occupies.
        kernel_memory: weight memory per core, in the chip's unit (Speck kernel words, Loihi synapses).
        neuron_memory: neuron memory per core (Speck neuron words, Loihi neurons).
    """

    cores: int
    kernel_memory: int
    neuron_memory: int


class MappingReport(Protocol):
    """What a chip check returns: the violations, a printable table and a JSON form."""

    violations: list[Violation]

    @property
    def ok(self) -> bool:
        """True when the graph fits the chip (no violation)."""

    def table(self) -> str:
        """The core / layer table as text."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe form: ok, rows, violations (lines), cores."""


class BoardReport(Protocol):
    """What a deployment to a board returns."""

    @property
    def ok(self) -> bool:
        """True when the graph ran on the board (or its stand-in) as the chip's simulator predicts."""

    def summary(self) -> str:
        """Text for the terminal."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe form."""


Exporter = Callable[[FoldedGraph, Path], str]
"""``export(graph, folder) -> description``: write (or build) one export of ``graph`` inside
``folder`` and say what was written (a file name, or what was built in memory)."""


@dataclass(frozen=True)
class CoreLoad:
    """What one weight layer's core receives during one recording, event by event in the order
    processed.

    Attributes:
        times_us: int64 [E] microseconds from the recording's first event: an input event's own
            time; a spike's, the time of the input event whose cascade caused it (the chip's
            processing delay is not modelled); a bias spike's, the start of its step.
        synops: int64 [E] synaptic operations the event costs the core: the neurons it reaches
            (positions x output channels; 0 for an event sum pooling drops).
    """

    times_us: np.ndarray
    synops: np.ndarray


@dataclass(frozen=True)
class TimedRun:
    """One recording run on a chip's real timestamps (:attr:`Chip.timed_run`).

    Attributes:
        counts: spiking layer -> int64 [T, n_out] spikes per step (flat C, H, W).
        loads: weight layer -> its :class:`CoreLoad`.
        duration_us: the recording's span the steps cover: T * step length (time slicing), else
            the last event's time + 1.
    """

    counts: dict[str, np.ndarray]
    loads: dict[str, CoreLoad]
    duration_us: int


@dataclass(frozen=True)
class Chip:
    """Everything the pipeline knows about one neuromorphic chip.

    Attributes:
        name: the chip's name, also the fold target (``asa-snn fold --target NAME``).
        neuron_kinds: graph neuron kinds the chip runs exactly (``iaf``, ``cuba``, ``lif``).
        quantizer: the chip's integer rule (:class:`~asa_snn.convert.quantize.Quantizer`), or None
            for a chip that runs floats.
        backends: backend name -> factory of a :class:`~asa_snn.simulators.base.Backend` that runs
            this chip's graphs (the first one is the chip's own bit-accurate simulator).
        compared_backends: backends the demo compares with the first one, spike for spike.
        check: ``check(graph) -> MappingReport``: every limit of the chip and the core assignment.
        core_layout: ``core_layout(graph) -> {spiking layer: CoreUse}`` for per-core budgets.
        energy: the chip's energy model (joules per inference from spikes and operations).
        exports: export name -> :data:`Exporter` of the chip's own formats.
        deploy: ``deploy(graph, **options) -> BoardReport``: run the graph on the chip's board
            (options are the chip's own, e.g. Speck's ``device`` and ``dry_run``), or None.
        timed_run: ``timed_run(graph, events) -> TimedRun``: one recording on its real timestamps,
            with the synaptic operations each core receives event by event (for the peak per-core
            load), or None where the chip has no such model.
        core_options: ``core_options(graph) -> {weight layer: (its core, other cores it fits)}``,
            or None.
    """

    name: str
    neuron_kinds: tuple[str, ...]
    quantizer: Quantizer | None
    backends: dict[str, Callable[[], Backend]]
    check: Callable[[FoldedGraph], MappingReport]
    core_layout: Callable[[FoldedGraph], dict[str, CoreUse]]
    energy: EnergyModel
    compared_backends: tuple[str, ...] = ()
    exports: dict[str, Exporter] = field(default_factory=dict)
    deploy: Callable[..., BoardReport] | None = None
    timed_run: Callable[[FoldedGraph, ModelEvents], TimedRun] | None = None
    core_options: Callable[[FoldedGraph], dict[str, tuple[int | None, list[int]]]] | None = None

    @property
    def simulator_name(self) -> str:
        """Name of the chip's own simulator: the first of :attr:`backends`."""
        return next(iter(self.backends))

    def simulator(self) -> Backend:
        """A fresh instance of the chip's own simulator."""
        return self.backends[self.simulator_name]()
