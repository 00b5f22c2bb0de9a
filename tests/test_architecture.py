"""The stage order of the architecture, checked on the source: a stage imports only from stages
before it, nothing but the CLI imports deploy, and no module imports samna or the sinabs Speck
backend at import time."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asa_snn"

# stage -> the stages it may import from (besides itself and the shared top-level modules)
# Training side: data -> models -> train -> analysis. Chip side: convert folds a trained model
# (it loads checkpoints and fine-tunes, so it may use train); simulators and deploy read only the
# folded graph from convert, plus the one energy model in analysis.energy, never models or train.
ALLOWED = {
    "data": set(),
    "models": {"data"},
    "train": {"data", "models"},
    "analysis": {"data", "models", "train"},
    "convert": {"data", "models", "train"},
    "simulators": {"data", "analysis", "convert"},
    "deploy": {"data", "analysis", "convert", "simulators"},
}
SHARED = {"errors", "files"}
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
