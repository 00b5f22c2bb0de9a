"""A new chip is a new registration: a float "reference" chip defined here, in the test, goes through
fold, check, simulate and budget without any module of asa_snn knowing it."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from asa_snn.chips.base import Chip, CoreUse, Violation
from asa_snn.chips.registry import backend_names, energy_presets, get_chip, register, unregister
from asa_snn.cli import main
from asa_snn.convert.graph import FoldedGraph, load_graph
from asa_snn.energy.model import OpEnergy
from asa_snn.simulators.onnx_backend import OnnxBackend
from asa_snn.train.config import load_config
from asa_snn.train.trainer import train
from asa_snn.workflows.fold import run_fold

MAX_LAYERS = 8


@dataclass
class ReferenceReport:
    """The reference chip's check: at most MAX_LAYERS spiking layers, any size."""

    layers: list[str]
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def table(self) -> str:
        return "\n".join(["layer", *self.layers, *(f"VIOLATION {v.line()}" for v in self.violations)])

    def to_dict(self) -> dict:
        return {"ok": self.ok, "rows": self.layers, "violations": [v.line() for v in self.violations]}


def check_reference(graph: FoldedGraph) -> ReferenceReport:
    names = [layer.name for layer in graph.spiking_layers()]
    report = ReferenceReport(names)
    if len(names) > MAX_LAYERS:
        report.violations.append(
            Violation("graph", f"spiking layers <= {MAX_LAYERS}", len(names), "fewer layers")
        )
    return report


def reference_layout(graph: FoldedGraph) -> dict[str, CoreUse]:
    return {
        layer.name: CoreUse(1, int(layer.tensors["weight"].size), int(np.prod(layer.output_shape)))
        for layer in graph.spiking_layers()
    }


REFERENCE = Chip(
    name="reference",
    neuron_kinds=("iaf",),
    quantizer=None,
    backends={"reference": OnnxBackend},
    check=check_reference,
    core_layout=reference_layout,
    energy=OpEnergy("reference", 1.0, 0.1, "made up for the test"),
)


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    from tests.conftest import TINY

    register(REFERENCE)
    folder = tmp_path_factory.mktemp("reference")
    (folder / "tiny.toml").write_text(TINY.replace("timesteps = 4", 'timesteps = 4\nattention = "asa2"'))
    train(load_config(folder / "tiny.toml", ["train.epochs=1"]), folder / "run", progress=False)
    outcome = run_fold(
        folder / "run" / "best.safetensors", "reference", folder / "graph", finetune_epochs=0, n_calib=8
    )
    yield folder, outcome
    unregister("reference")


def test_the_registry_knows_the_new_chip(folded):
    assert get_chip("reference") is REFERENCE
    assert "reference" in backend_names() and "reference" in energy_presets()


def test_fold_for_the_new_chip_runs_its_simulator(folded):
    folder, outcome = folded
    graph = load_graph(folder / "graph")
    assert graph.target == "reference" and not graph.quantized
    assert all(layer.neuron.kind == "iaf" for layer in graph.spiking_layers())
    stages = [s["stage"] for s in outcome.fidelity["stages"]]
    assert stages[3] == "3 onnx simulation"


def test_check_simulate_and_budget_through_the_cli(folded, tmp_path):
    folder, _ = folded
    graph_dir = str(folder / "graph")
    assert main(["check", graph_dir, "--target", "reference"]) == 0
    out = tmp_path / "sim.json"
    assert (
        main(["simulate", graph_dir, "--backend", "reference", "--data", "synthetic:4", "--out", str(out)])
        == 0
    )
    summary = json.loads(out.read_text())
    assert summary["backend"] == "onnx" and summary["samples"] == 4 and "reference" in summary["energy_j"]
    budget = tmp_path / "budget.toml"
    budget.write_text("[network]\nkernel_memory_per_core = 1\nenergy_uj = { reference = 1e9 }\n")
    status = main(
        [
            "budget",
            graph_dir,
            "--budget",
            str(budget),
            "--backend",
            "reference",
            "--data",
            "synthetic:4",
            "--out",
            str(tmp_path / "budget"),
        ]
    )
    report = json.loads((tmp_path / "budget" / "budget.json").read_text())
    assert status == 1 and report["chip"] == "reference"  # one weight per core is too small
    failed = {row["metric"] for row in report["rows"] if not row["ok"]}
    assert failed == {"kernel_memory_per_core"}


def test_an_unknown_chip_is_named_with_the_known_ones(folded, tmp_path):
    folder, _ = folded
    assert main(["check", str(folder / "graph"), "--target", "truenorth"]) == 1
    with pytest.raises(Exception, match="unknown chip 'truenorth'; expected one of loihi, reference, speck"):
        get_chip("truenorth")
    assert Path(folder / "graph").is_dir()
