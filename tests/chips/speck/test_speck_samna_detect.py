"""samna detection from package metadata: the installed PyPI loader and fake site-packages folders.

Every check runs in a subprocess that asserts afterwards that ``samna`` was never imported (its
loader would try to download the real package).
"""

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

SCRIPT = """
import json, sys
from asa_snn.chips.speck.samna_detect import detect_samna
paths = json.loads(sys.argv[1])
status = detect_samna(paths)
print(json.dumps({"state": status.state, "version": status.version, "compiled": list(status.compiled),
                  "index_url": status.index_url, "message": status.message,
                  "samna_imported": "samna" in sys.modules}))
"""
LOADER_INIT = (
    "PYPI_SAMNA = True\n"
    '__gitlab_packages_index_url__ = (\n    "https://example.invalid/simple"\n)\n'
    "raise RuntimeError('a test must never import this')\n"
)
SO = "samna/samna.cpython-311-x86_64-linux-gnu.so"


def detect(paths):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result.pop("samna_imported") is False
    return result


def fake_site(root: Path, init: str, record_extra: list[str], create_extra: bool = True) -> str:
    """A site-packages folder with a samna 1.2.3 distribution: dist-info METADATA / RECORD and the files."""
    package = root / "samna"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(init)
    info = root / "samna-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: samna\nVersion: 1.2.3\n"
        "Project-URL: Documentation, https://docs.example.invalid/samna/\n"
    )
    files = [
        "samna/__init__.py",
        *record_extra,
        "samna-1.2.3.dist-info/METADATA",
        "samna-1.2.3.dist-info/RECORD",
    ]
    (info / "RECORD").write_text("".join(f"{name},,\n" for name in files))
    if create_extra:
        for name in record_extra:
            (root / name).write_bytes(b"\x7fELF")
    return str(root)


def test_the_installed_pypi_loader_is_recognised():
    try:
        dist = metadata.distribution("samna")
    except metadata.PackageNotFoundError:
        pytest.skip("samna (the PyPI loader, a sinabs dependency) is not installed here")
    result = detect(None)
    assert result["state"] == "loader"
    assert result["version"] == dist.version
    source = Path(dist.locate_file("samna/__init__.py")).read_text()
    assert result["index_url"] and result["index_url"] in source
    message = result["message"]
    assert "PYPI_SAMNA" in message and f"samna=={dist.version}" in message and result["index_url"] in message


def test_absent(tmp_path):
    result = detect([str(tmp_path)])
    assert result["state"] == "absent" and result["version"] is None
    assert "not installed" in result["message"] and "pip install samna" in result["message"]


def test_loader_layout(tmp_path):
    result = detect([fake_site(tmp_path, LOADER_INIT, [])])
    assert result["state"] == "loader" and result["version"] == "1.2.3" and result["compiled"] == []
    assert result["index_url"] == "https://example.invalid/simple"
    assert (
        "pip install --force-reinstall samna==1.2.3 --index-url=https://example.invalid/simple"
        in result["message"]
    )
    assert "https://docs.example.invalid/samna/" in result["message"]


def test_real_package_with_compiled_module(tmp_path):
    site = fake_site(tmp_path, "from .samna import *\n", [SO])
    result = detect([site])
    assert result["state"] == "real" and result["compiled"] == [SO]
    assert "real package, 1 compiled module(s)" in result["message"]


def test_compiled_module_listed_but_missing_is_not_real(tmp_path):
    result = detect([fake_site(tmp_path, "from .samna import *\n", [SO], create_extra=False)])
    assert result["state"] == "loader"
    assert "missing on disk" in result["message"] and SO in result["message"]


def test_loader_mark_wins_over_a_listed_module(tmp_path):
    result = detect([fake_site(tmp_path, LOADER_INIT, [SO])])
    assert result["state"] == "loader"
