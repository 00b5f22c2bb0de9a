"""Deploy a quantized folded graph to a Speck board through samna, or prepare it at a desk (dry run).

Dry run (no chip, no samna): the chip configuration (core, kernel / neuron words, threshold,
min_v, reset, int8 weight and int16 state ranges per layer, from
:func:`~asa_snn.chips.speck.mapping.check_speck` and the graph), the readout note, and the spike
counts per layer of the built-in Speck simulator in event-driven mode on the recording.

Hardware (samna really installed, :mod:`asa_snn.chips.speck.samna_detect`): ``to_sinabs(graph)`` ->
``DynapcnnNetwork(..., discretize=False)`` (the graph already holds the chip's integers) ->
``.to(device=..., monitor_layers="all")``, which writes the configuration through samna. The
recording's events (:func:`chip_input_events`) are streamed step by step into the first core;
every core's monitor events come back and are counted per layer (:func:`count_chip_events`) and
compared with the simulator (:func:`asa_snn.simulators.compare.compare_counts`). Monitor events are
the neurons' spikes before sum pooling (sinabs ``monitor_layers``), which is what the simulator
counts. Whatever happens, the chip's neuron states are reset and the device closed.

Readout erratum (Speck 2e / 2f, FACTS.md section 3): the readout layer has 15 classes and maps
readout class x to CNN channel 4(x - 1). This deployment does NOT use the readout layer: the
class scores are the last CNN layer's monitored output events, whose ``feature`` is the class
channel itself, so no channel remapping is needed and more than 15 classes work. A user who wires
the readout must put class x on channel :func:`readout_channel` (x) of the last layer.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from asa_snn.chips.speck.event_driven import EventDriven
from asa_snn.chips.speck.mapping import STATE_BITS, WEIGHT_BITS, MappingReport, check_speck
from asa_snn.chips.speck.samna_detect import detect_samna
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.graph import FoldedGraph
from asa_snn.data.events import EventStream
from asa_snn.data.model_input import model_events
from asa_snn.errors import AsaSnnError, MissingDependencyError
from asa_snn.files import check_output_folder, staged_folder, write_json
from asa_snn.simulators.compare import CountRow, compare_counts, counts_table, layer_totals, load_recording

SPECK_DEVICE_TYPES = ("speck2e", "speck2edevkit", "speck2fmodule", "speck2fdevkit")
"""Speck board types as sinabs 3.1.3 names them (``sinabs/backend/dynapcnn/io.py``)."""
READOUT_CLASSES = 15
CHIP_EVENT_DTYPE = np.dtype(
    [
        ("layer", np.uint8),
        ("feature", np.uint16),
        ("y", np.uint16),
        ("x", np.uint16),
        ("timestamp", np.uint64),
    ]
)
"""A chip spike as plain data: core (``layer``), channel (``feature``), y, x, time in microseconds."""
DRAIN_POLLS = 20
DRAIN_WAIT_S = 0.1


# ---------------------------------------------------------------- device strings


def parse_device(device: str) -> tuple[str, int]:
    """``"speck2fdevkit:0"`` -> ("speck2fdevkit", 0); a bare type means index 0.

    Raises:
        AsaSnnError: not ``type[:index]``, a type that is no Speck board, a negative index.
    """
    parts = device.split(":")
    kind, index_text = (parts[0], "0") if len(parts) == 1 else [*parts, ""][:2]
    if len(parts) > 2 or not index_text.isdigit():
        raise AsaSnnError(f"device {device!r}: expected 'type:index' such as 'speck2fdevkit:0'")
    if kind not in SPECK_DEVICE_TYPES:
        raise AsaSnnError(
            f"device {device!r}: type {kind!r} is not a Speck board; expected one of {SPECK_DEVICE_TYPES}"
        )
    return kind, int(index_text)


def resolve_device(device: str, boards: list[str]) -> str:
    """The standard id ``type:index`` of ``device`` when it is among ``boards`` (ids samna sees).

    Raises:
        AsaSnnError: malformed (see :func:`parse_device`), or no such board: lists the boards seen.
    """
    kind, index = parse_device(device)
    wanted = f"{kind}:{index}"
    if wanted not in boards:
        seen = ", ".join(boards) if boards else "none (is the board plugged in and powered?)"
        raise AsaSnnError(f"device {device!r}: no such board connected; boards samna sees: {seen}")
    return wanted


# ---------------------------------------------------------------- configuration summary


@dataclass(frozen=True)
class CoreConfig:
    """One core of the chip configuration.

    Attributes:
        layer: the graph's weight layer on this core.
        core: core index 0..8, or None when the mapping found none.
        kernel_words, neuron_words: memory the layer takes (words).
        threshold, min_v: the layer's one threshold and lower bound (int16 state units; min_v
            None means the int16 floor).
        reset: ``subtract`` or ``zero``.
        weight_range, bias_range: (min, max) integers, checked against int8 / int16.
        pooling: sum pooling after the neurons.
    """

    layer: str
    core: int | None
    kernel_words: int
    neuron_words: int
    threshold: float
    min_v: float | None
    reset: str
    weight_range: tuple[int, int]
    bias_range: tuple[int, int] | None
    pooling: int


def chip_configuration(graph: FoldedGraph, mapping: MappingReport) -> list[CoreConfig]:
    """The per-core summary of ``graph`` from its ``check_speck`` table (one row per core layer)."""
    rows = []
    for row in mapping.rows:
        layer = graph.layer(row.layer)
        weight = np.asarray(layer.tensors["weight"])
        bias = layer.tensors.get("bias")
        rows.append(
            CoreConfig(
                row.layer,
                row.core,
                row.kernel_words,
                row.neuron_words,
                float(layer.neuron.threshold),
                None if layer.neuron.min_v is None else float(layer.neuron.min_v),
                layer.neuron.reset,
                (int(weight.min()), int(weight.max())),
                None if bias is None or not bias.size else (int(bias.min()), int(bias.max())),
                row.pooling,
            )
        )
    return rows


def readout_channel(cls: int) -> int:
    """CNN channel that the Speck 2e/2f readout reads as class ``cls`` (1-based): 4 (cls - 1)."""
    return 4 * (cls - 1)


def readout_note(graph: FoldedGraph) -> str:
    """How the output is read and what the readout erratum would require for this graph."""
    k = graph.num_classes
    note = (
        "readout layer not used: class scores are the last layer's monitored output events "
        f"(feature = class channel 0..{k - 1}), so the Speck 2e/2f readout erratum "
        "(class x read from channel 4(x-1)) does not apply."
    )
    if k > READOUT_CLASSES:
        return (
            note + f" The on-chip readout could not serve this graph anyway: {k} classes > {READOUT_CLASSES}."
        )
    example = ", ".join(f"{x}->{readout_channel(x)}" for x in range(1, min(k, 4) + 1))
    return note + f" To use the readout instead, class x must sit on channel 4(x-1) ({example}, ...)."


# ---------------------------------------------------------------- events as plain data


def chip_input_events(graph: FoldedGraph, stream: EventStream) -> np.ndarray:
    """The recording as the first core's input events: exactly the events the simulator's frames
    count (:func:`~asa_snn.data.model_input.model_events` with the graph's input spec: sensor check,
    binning, slicing, crop, polarity).

    ``feature`` is the input channel; timestamps are microseconds from the first event for
    time-sliced input, and ``step * NOMINAL_STEP_US`` for equal-count slices (the chip then sees
    each slice as one step of that length).

    Returns:
        [N] :data:`CHIP_EVENT_DTYPE` in time order, ``layer`` 0 (set to the first core when sent).
    """
    found = model_events(graph.input, stream)
    timestamps = found.t_us if graph.input.slicing == "time" else found.step * graph.input.step_us
    order = np.argsort(timestamps, kind="stable")
    out = np.zeros(len(order), CHIP_EVENT_DTYPE)
    out["feature"], out["y"], out["x"] = found.channel[order], found.y[order], found.x[order]
    out["timestamp"] = timestamps[order]
    return out


def count_chip_events(records: np.ndarray, core_to_layer: dict[int, str]) -> tuple[dict[str, int], list[int]]:
    """Spikes per graph layer from chip events [N] :data:`CHIP_EVENT_DTYPE` (``layer`` = core).

    Returns:
        ({layer name: spikes} for every layer of ``core_to_layer``, sorted cores that sent events
        but hold no graph layer).
    """
    cores, counts = np.unique(records["layer"].astype(np.int64), return_counts=True)
    found = dict(zip(cores.tolist(), counts.tolist(), strict=True))
    totals = {name: int(found.get(core, 0)) for core, name in core_to_layer.items()}
    return totals, sorted(core for core in found if core not in core_to_layer)


# ---------------------------------------------------------------- streaming


class ChipLink(Protocol):
    """The boundary to a configured chip: send input events, collect output events, release."""

    def write(self, events: np.ndarray) -> None:
        """Send [N] :data:`CHIP_EVENT_DTYPE` input events (may block for their duration)."""

    def read(self) -> np.ndarray | None:
        """Output events received since the last read ([M] :data:`CHIP_EVENT_DTYPE`); None: link lost."""

    def close(self) -> None:
        """Reset the neuron states and release the device."""


@dataclass
class StreamOutcome:
    """What :func:`stream_events` got: output events, input chunks sent, and the failure if any."""

    records: np.ndarray
    chunks_sent: int
    chunks_total: int
    error: str | None = None


def stream_events(link: ChipLink, events: np.ndarray, chunk_us: int) -> StreamOutcome:
    """Send ``events`` in chunks of ``chunk_us`` microseconds, reading the output after each chunk.

    After the last chunk the output is read until it stays empty (at most :data:`DRAIN_POLLS`
    reads). The link is closed in every case. A chunk that raises, or a read that returns None,
    stops the stream: the outcome keeps every event received so far and names the failure.
    """
    bounds = np.arange(0, int(events["timestamp"].max(initial=0)) + chunk_us + 1, chunk_us)
    index = np.searchsorted(events["timestamp"], bounds)
    chunks = [events[a:b] for a, b in itertools.pairwise(index)]
    received: list[np.ndarray] = []
    sent = 0
    error = None
    try:
        for chunk in chunks:
            link.write(chunk)
            sent += 1
            got = link.read()
            if got is None:
                raise ConnectionError("the device returned nothing (no event buffer)")
            received.append(got)
        for _ in range(DRAIN_POLLS):
            got = link.read()
            if got is None:
                raise ConnectionError("the device returned nothing while draining the output")
            if not len(got):
                break
            received.append(got)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        link.close()
    records = np.concatenate(received) if received else np.zeros(0, CHIP_EVENT_DTYPE)
    return StreamOutcome(records, sent, len(chunks), error)


# ---------------------------------------------------------------- report


@dataclass
class SpeckDeployReport:
    """What :func:`deploy_speck` did.

    Attributes:
        device: the device string asked for.
        dry_run: True when nothing touched a chip.
        cores: the chip configuration per core.
        violations: broken chip limits (``layer: limit = value (fix)``); deployment needs none.
        readout: the readout note (erratum handling).
        source: the recording used; input_events: events streamed (or that would be).
        simulated: spikes per layer of the built-in simulator (event-driven mode).
        chip: spikes per layer read back from the chip, None without a chip run.
        comparison: per-layer rows simulator vs chip (empty without a chip run).
        samna: the samna detection message.
        notes: remarks; error: the failure that ended a chip run early, or None.
    """

    device: str
    dry_run: bool
    cores: list[CoreConfig]
    violations: list[str]
    readout: str
    source: str
    input_events: int
    simulated: dict[str, int]
    chip: dict[str, int] | None = None
    comparison: list[CountRow] = field(default_factory=list)
    samna: str = ""
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the graph fits the chip and no chip run failed (the CLI exits 0, else 1)."""
        return not self.violations and self.error is None

    def summary(self) -> str:
        """Text for the terminal: configuration table, readout note, spike counts, verdict."""
        header = (
            "layer",
            "core",
            "kernel words",
            "neuron words",
            "threshold",
            "min_v",
            "reset",
            "weights",
            "bias",
        )
        lines = [header] + [
            (
                c.layer,
                "-" if c.core is None else str(c.core),
                str(c.kernel_words),
                str(c.neuron_words),
                f"{c.threshold:g}",
                "int16 floor" if c.min_v is None else f"{c.min_v:g}",
                c.reset,
                f"[{c.weight_range[0]}, {c.weight_range[1]}]",
                "-" if c.bias_range is None else f"[{c.bias_range[0]}, {c.bias_range[1]}]",
            )
            for c in self.cores
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = [f"Speck configuration for {self.device}{' (dry run)' if self.dry_run else ''}"]
        text += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        text.append(f"ranges: weights int{WEIGHT_BITS}, threshold / min_v / state int{STATE_BITS}")
        text += [f"VIOLATION {v}" for v in self.violations]
        text.append(self.readout)
        text.append(f"input: {self.source}, {self.input_events} events")
        if self.comparison:
            text.append(counts_table(self.comparison, "simulated", "chip"))
        else:
            text.append(
                "simulated spikes per layer (event-driven): "
                + ", ".join(f"{k} {v}" for k, v in self.simulated.items())
            )
        if not self.dry_run and self.samna:
            text.append(self.samna)
        text += [f"note: {note}" for note in self.notes]
        if self.error:
            text.append(f"ERROR: {self.error}")
        return "\n".join(text)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``deploy_speck.json``)."""
        document = asdict(self)
        document["ok"] = self.ok
        return document


def write_speck_report(report: SpeckDeployReport, out_dir: str | Path) -> Path:
    """Write the folder ``out_dir`` holding ``deploy_speck.json``, whole (staged beside it and moved
    in, :func:`~asa_snn.files.staged_folder`); returns the file's path.

    Raises:
        AsaSnnError: ``out_dir`` holds files asa-snn did not write.
    """
    with staged_folder(out_dir) as staging:
        write_json(report.to_dict(), staging / "deploy_speck.json")
    return Path(out_dir) / "deploy_speck.json"


# ---------------------------------------------------------------- the samna boundary


class SamnaLink:
    """:class:`ChipLink` over a ``DynapcnnNetwork`` already configured on a board (samna objects)."""

    def __init__(self, network: Any, device: str, first_core: int) -> None:
        from sinabs.backend.dynapcnn.chip_factory import ChipFactory
        from sinabs.backend.dynapcnn.io import enable_timestamps, reset_timestamps

        self.network = network
        self.device = device
        self.first_core = first_core
        self.spike = ChipFactory(device).get_config_builder().get_samna_module().event.Spike
        self.start = time.monotonic()
        network.samna_output_buffer.get_events()
        reset_timestamps(device)
        enable_timestamps(device)

    def write(self, events: np.ndarray) -> None:
        """Send the events and wait until the chip clock has passed the last one."""
        spikes = []
        for row in events:
            spike = self.spike()
            spike.layer, spike.feature = self.first_core, int(row["feature"])
            spike.x, spike.y, spike.timestamp = int(row["x"]), int(row["y"]), int(row["timestamp"])
            spikes.append(spike)
        if spikes:
            self.network.samna_input_buffer.write(spikes)
            wait = int(events["timestamp"][-1]) * 1e-6 - (time.monotonic() - self.start)
            time.sleep(max(wait, 0.0))

    def read(self) -> np.ndarray | None:
        """Spike events from the output buffer as :data:`CHIP_EVENT_DTYPE`."""
        time.sleep(DRAIN_WAIT_S)
        got = self.network.samna_output_buffer.get_events()
        if got is None:
            return None
        spikes = [e for e in got if all(hasattr(e, k) for k in ("layer", "feature", "x", "y", "timestamp"))]
        out = np.zeros(len(spikes), CHIP_EVENT_DTYPE)
        for i, e in enumerate(spikes):
            out[i] = (e.layer, e.feature, e.y, e.x, e.timestamp)
        return out

    def close(self) -> None:
        """Reset neuron states, stop the event graphs and close the device; each step tolerates failure."""
        import samna
        from sinabs.backend.dynapcnn.io import disable_timestamps

        steps = (
            lambda: disable_timestamps(self.device),
            self.network.reset_states,
            self.network.device_input_graph.stop,
            self.network.device_output_graph.stop,
            lambda: samna.device.close_device(self.network.samna_device),
        )
        for step in steps:
            try:
                step()
            except Exception:  # best effort: the device may already be gone
                continue


def _run_on_chip(
    graph: FoldedGraph, device: str, events: np.ndarray, mapping: MappingReport
) -> tuple[StreamOutcome, dict[int, str]]:
    """Configure the board through sinabs / samna and stream ``events``; needs the real samna."""
    from sinabs.backend.dynapcnn import DynapcnnNetwork
    from sinabs.backend.dynapcnn.io import get_device_map

    from asa_snn.chips.speck.sinabs_export import to_sinabs

    device = resolve_device(device, sorted(get_device_map()))
    network = DynapcnnNetwork(to_sinabs(graph), input_shape=tuple(graph.input.shape), discretize=False)
    try:
        network.to(device=device, monitor_layers="all")
    except Exception as exc:
        raise AsaSnnError(
            f"device {device}: configuring the chip failed ({type(exc).__name__}: {exc})"
        ) from exc
    core_to_layer = {int(core): mapping.rows[index].layer for index, core in network.layer2core_map.items()}
    link = SamnaLink(network, device, int(network.layer2core_map[0]))
    return stream_events(link, events, graph.input.step_us), core_to_layer


def deploy_speck(
    graph: FoldedGraph,
    device: str = "speck2fdevkit:0",
    events: str | Path | None = None,
    dry_run: bool = False,
    out_dir: str | Path | None = None,
) -> SpeckDeployReport:
    """Prepare (``dry_run``) or run ``graph`` on a Speck board and compare with the simulator.

    Args:
        graph: a folded graph quantized for Speck.
        device: board id ``type:index`` (``speck2fdevkit:0``); checked for form even in a dry run.
        events: event file to stream; None: the embedded synthetic recording for the graph.
        dry_run: summarize and simulate only; never touches samna.
        out_dir: the folder ``deploy_speck.json`` is written into (also after a failed chip run);
            new, empty or written by asa-snn (checked before anything runs).

    Returns:
        The report (``report.ok``: fits the chip and no chip run failed).

    Raises:
        AsaSnnError: a malformed device string; ``out_dir`` not asa-snn's; a graph that breaks chip
            limits (hardware run); no such board (lists the boards seen); the chip run failed
            mid-stream (the report with the counts so far is written first).
        MissingDependencyError: samna is absent or only the PyPI loader (says how to install it).
    """
    parse_device(device)
    if out_dir is not None:
        check_output_folder(out_dir)
    stream, frames = load_recording(graph, events)
    mapping = check_speck(graph)
    simulated = layer_totals(SpeckSimulator(mode=EventDriven()).run(graph, frames).spike_counts)
    chip_events = chip_input_events(graph, stream)
    report = SpeckDeployReport(
        device,
        dry_run,
        chip_configuration(graph, mapping),
        [f"{v.layer}: {v.limit} = {v.value} ({v.fix})" for v in mapping.violations],
        readout_note(graph),
        stream.source,
        len(chip_events),
        simulated,
        notes=list(mapping.notes),
    )
    if dry_run:
        if out_dir is not None:
            write_speck_report(report, out_dir)
        return report
    status = detect_samna()
    report.samna = status.message
    try:
        if not status.real:
            raise MissingDependencyError(status.message)
        if mapping.violations:
            raise AsaSnnError(f"graph does not fit Speck: {'; '.join(report.violations)}")
        outcome, core_to_layer = _run_on_chip(graph, device, chip_events, mapping)
        report.chip, stray = count_chip_events(outcome.records, core_to_layer)
        report.comparison = compare_counts(simulated, report.chip)
        if stray:
            report.notes.append(f"events from cores {stray} that hold no graph layer were ignored")
        if not len(outcome.records) and sum(simulated.values()):
            report.notes.append(
                "the chip sent no events although the simulator expects spikes: check the link"
            )
        if outcome.error:
            report.error = (
                f"device {device} failed after {outcome.chunks_sent} of {outcome.chunks_total} input chunks "
                f"({outcome.error}); counts cover the events received so far"
            )
    finally:
        if out_dir is not None:
            write_speck_report(report, out_dir)
    if report.error:
        raise AsaSnnError(report.error + (f"; report written to {out_dir}" if out_dir is not None else ""))
    return report
