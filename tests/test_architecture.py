"""The stage order of the architecture, checked on the source and on what really gets imported:
a stage imports only from stages before it, chips never import each other, loading a chip-side
module loads neither the training code nor the models, and no module imports samna or the sinabs
Speck backend at import time."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asa_snn"

# stage -> the stages it may import from (besides itself and the shared top-level modules).
# Training side: data -> models -> train -> analysis. Chip side: convert (the folded graph and the
# fold, which reads trained models) -> simulators (generic backends) -> chips (one folder per chip)
# -> deploy. Workflows (fold, simulate, budget, analyze, demo) span both sides; only the CLI and
# the workflows sit above everything.
ALLOWED = {
    "data": set(),
    "models": {"data"},
    "train": {"data", "models"},
    "analysis": {"data", "models", "train"},
    "convert": {"data", "models", "train"},
    "simulators": {"data", "convert"},
    "chips": {"data", "convert", "simulators"},
    "deploy": {"data", "convert", "simulators", "chips"},
    "workflows": {"data", "models", "train", "analysis", "convert", "simulators", "chips", "deploy"},
}
SHARED = {"errors", "files", "energy", "devices"}
# Modules of convert that are chip-side (read or write folded graphs only); the rest of convert
# folds trained models.
CHIP_SIDE_CONVERT = ("graph", "graph_check", "layer_attrs", "quantize", "nir_export", "onnx_export")
FORBIDDEN_AT_IMPORT = ("samna", "sinabs.backend.dynapcnn")


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every import in the file."""
    found = []
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_package_has_modules():
    assert len(_sources()) > 3


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_stage_imports_follow_the_pipeline_order(path):
    relative = path.relative_to(PACKAGE)
    stage = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    tree = ast.parse(path.read_text(), filename=str(path))
    for module, _ in _imports(tree):
        parts = module.split(".")
        if parts[0] != "asa_snn" or len(parts) < 2:
            continue
        target = parts[1]
        if target in SHARED or target == stage:
            continue
        if stage == "cli":
            continue
        assert stage in ALLOWED, f"{relative} is a top-level module importing asa_snn.{target}"
        assert target in ALLOWED[stage], (
            f"{relative} (stage {stage}) imports asa_snn.{target}; "
            f"{stage} may import only {sorted(ALLOWED[stage]) or 'nothing'}"
        )


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_hardware_stack_at_import_time(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for module, at_top in _imports(tree):
        if at_top:
            assert not module.startswith(FORBIDDEN_AT_IMPORT), f"{path.name} imports {module} at import time"


def _chip_side_modules() -> list[str]:
    names = [f"asa_snn.convert.{name}" for name in CHIP_SIDE_CONVERT]
    for stage in ("simulators", "chips", "deploy", "energy"):
        for path in sorted((PACKAGE / stage).rglob("*.py")):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_chip_side_never_loads_training_or_models():
    """Import every chip-side module in a fresh interpreter, look up every chip and backend, and
    check sys.modules: no asa_snn.train or asa_snn.models (transitively), no samna, no sinabs Speck."""
    pytest.importorskip("torch", reason="the chip side needs the installed project (torch, numpy)")
    modules = _chip_side_modules()
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from asa_snn.chips.registry import chips, backend_names\n"
        "names = (sorted(chips()), backend_names())\n"
        "banned = ('asa_snn.train', 'asa_snn.models', 'asa_snn.analysis', 'samna',"
        " 'sinabs.backend.dynapcnn')\n"
        "loaded = [m for m in sys.modules if m.startswith(banned)]\n"
        "print(json.dumps([names, loaded]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    (chip_names, backends), loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == []
    assert chip_names == ["loihi", "speck"] and {"speck", "loihi", "sinabs", "onnx"} <= set(backends)
    assert len(modules) > 25


@pytest.mark.parametrize(
    "chip", sorted(p.name for p in (PACKAGE / "chips").iterdir() if (p / "chip.py").is_file())
)
def test_a_chip_imports_no_other_chip(chip):
    others = {p.name for p in (PACKAGE / "chips").iterdir() if p.is_dir()} - {chip}
    for path in sorted((PACKAGE / "chips" / chip).rglob("*.py")):
        for module, _ in _imports(ast.parse(path.read_text())):
            parts = module.split(".")
            assert not (parts[:2] == ["asa_snn", "chips"] and len(parts) > 2 and parts[2] in others), (
                f"chips/{chip}/{path.name} imports {module}: a chip's folder holds everything about that chip"
            )
