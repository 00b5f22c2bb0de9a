"""Deploy a folded graph to Loihi through Lava: export netx, run it, compare with the built-in simulator.

Runtimes, tried in this order and recorded in the report:

- ``lava-hw`` (``hardware=True``): ``Loihi2HwCfg`` from ``lava.magma.core.run_configs``; needs
  Intel's Loihi extension (distribution ``lava-loihi``, shared with Intel's INRC members, not on
  PyPI), detected from package metadata without importing it.
- ``lava-sim``: :class:`~asa_snn.chips.loihi.lava_backend.LavaBackend`, Lava's bit-accurate CPU
  models (``Loihi2SimCfg(select_tag="fixed_pt")``).
- ``builtin``: where Lava does not import (it needs Python 3.10, FACTS.md section 4), the report
  says why and how to get it, and carries the built-in Loihi simulator's results alone.

Input is the recording's frames; each pixel with an event in a step sends one spike (Loihi spikes
are unary). Per-layer spike counts of the Lava run are compared with
:class:`~asa_snn.chips.loihi.simulator.LoihiSimulator` (they should be equal: both are bit-accurate).
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from asa_snn.chips.loihi.lava_backend import LavaBackend, lava_unavailable_reason
from asa_snn.chips.loihi.netx_export import to_netx_layers, write_netx
from asa_snn.chips.loihi.simulator import LoihiSimulator, integer_frames, latency_steps
from asa_snn.convert.graph import FoldedGraph
from asa_snn.files import check_output_folder, staged_folder, write_json
from asa_snn.simulators.compare import CountRow, compare_counts, counts_table, layer_totals, load_recording

LOIHI_EXTENSION = "lava-loihi"


def loihi_extension_reason() -> str | None:
    """None when Intel's Loihi extension is installed (package metadata only), else why not and how."""
    try:
        metadata.distribution(LOIHI_EXTENSION)
    except metadata.PackageNotFoundError:
        return (
            f"Intel's Loihi extension ({LOIHI_EXTENSION}) is not installed: Loihi hardware runs need it and "
            "access to a Loihi system (Intel INRC); running Lava's CPU simulation instead"
        )
    return None


@dataclass
class LoihiDeployReport:
    """What :func:`deploy_loihi` did.

    Attributes:
        netx_path: the exported netx file (None when no ``out_dir`` was given: a temporary file).
        runtime: ``lava-hw``, ``lava-sim`` or ``builtin``.
        reason: why a requested runtime was not used (Lava or the Loihi extension missing), or None.
        source: the recording used.
        builtin: spikes per layer of the built-in Loihi simulator.
        lava: spikes per layer of the Lava run, None when Lava did not run.
        comparison: per-layer rows built-in vs Lava (empty when Lava did not run).
        predictions: the built-in simulator's predicted class per sample.
        latency_steps: steps from a frame to its first effect on the output (one per synapse layer).
        notes: the simulator's remarks.
    """

    netx_path: str | None
    runtime: str
    reason: str | None
    source: str
    builtin: dict[str, int]
    lava: dict[str, int] | None = None
    comparison: list[CountRow] = field(default_factory=list)
    predictions: list[int] = field(default_factory=list)
    latency_steps: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool | None:
        """True / False when Lava ran and matched / differed from the built-in simulator; None otherwise."""
        if self.lava is None:
            return None
        return all(row.difference == 0 for row in self.comparison)

    @property
    def ok(self) -> bool:
        """False only when Lava ran and disagreed with the built-in simulator."""
        return self.agrees is not False

    def summary(self) -> str:
        """Text for the terminal."""
        text = [f"Loihi deployment: runtime {self.runtime}, input {self.source}"]
        if self.netx_path:
            text.append(f"netx: {self.netx_path}")
        if self.reason:
            text.append(self.reason)
        if self.comparison:
            text.append(counts_table(self.comparison, "built-in", self.runtime))
            text.append(
                "Lava matches the built-in simulator"
                if self.agrees
                else "Lava DIFFERS from the built-in simulator"
            )
        else:
            text.append(
                "built-in simulator spikes per layer: "
                + ", ".join(f"{k} {v}" for k, v in self.builtin.items())
            )
        text.append(f"predictions: {self.predictions}; latency {self.latency_steps} steps")
        return "\n".join(text + [f"note: {n}" for n in self.notes])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``deploy_loihi.json``)."""
        document = asdict(self)
        document["agrees"] = self.agrees
        return document


def write_loihi_report(report: LoihiDeployReport, folder: str | Path) -> Path:
    """Write ``deploy_loihi.json`` into ``folder`` atomically; returns its path.

    :func:`deploy_loihi` calls it on its staging folder, so that ``network.net`` and the report
    appear together in the output folder.
    """
    return write_json(report.to_dict(), Path(folder) / "deploy_loihi.json")


def deploy_loihi(
    graph: FoldedGraph,
    events: str | Path | None = None,
    hardware: bool = False,
    out_dir: str | Path | None = None,
) -> LoihiDeployReport:
    """Export ``graph`` to netx, run it in Lava (or on Loihi), and compare with the built-in simulator.

    Args:
        graph: a folded graph netx can express (CUBA neurons, conv / dense / flatten).
        events: event file; None: the embedded synthetic recording for the graph.
        hardware: run on Loihi 2 (needs Lava and Intel's Loihi extension; otherwise the reason is
            reported and Lava's CPU simulation, or the built-in simulator, is used).
        out_dir: the folder ``network.net`` and ``deploy_loihi.json`` are written into, whole
            (staged beside it and moved in); new, empty or written by asa-snn (checked before
            anything runs). None: nothing kept.

    Returns:
        The report; ``runtime`` says what ran. Lava missing is not an error: the built-in
        simulator's results are reported with the reason.

    Raises:
        AsaSnnError: a graph netx cannot express or values outside what netx and Lava take (names
            the layer); a bad event file; ``out_dir`` holds files asa-snn did not write.
    """
    if out_dir is not None:
        check_output_folder(out_dir)
    stream, frames = load_recording(graph, events)
    frames = integer_frames(frames)
    builtin_result = LoihiSimulator().run(graph, frames)
    builtin = layer_totals(builtin_result.spike_counts)
    reason = lava_unavailable_reason()
    runtime = "builtin" if reason else "lava-sim"
    if hardware and reason is not None:
        reason = f"hardware run not possible: it needs Lava and Intel's {LOIHI_EXTENSION}. {reason}"
    elif hardware:
        reason = loihi_extension_reason()
        runtime = "lava-sim" if reason else "lava-hw"
    with ExitStack() as stack:
        if out_dir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            folder = stack.enter_context(staged_folder(out_dir))
        write_netx(graph, folder / "network.net")
        lava = None
        if runtime != "builtin":
            lava = layer_totals(LavaBackend(hardware=runtime == "lava-hw").run(graph, frames).spike_counts)
        report = LoihiDeployReport(
            str(Path(out_dir) / "network.net") if out_dir is not None else None,
            runtime,
            reason,
            stream.source,
            builtin,
            lava,
            compare_counts(builtin, lava) if lava is not None else [],
            builtin_result.predictions(graph.vote).tolist(),
            latency_steps(to_netx_layers(graph)),
            list(builtin_result.notes),
        )
        if out_dir is not None:
            write_loihi_report(report, folder)
    return report
