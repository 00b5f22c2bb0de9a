"""Is the real samna installed? Answered from package metadata and files, never by importing it.

The PyPI package ``samna`` is only a loader (FACTS.md section 3): a pure-Python wheel
(``py3-none-any``) whose one module ``samna/__init__.py`` sets ``PYPI_SAMNA = True`` and, on first
import, runs ``pip install --force-reinstall samna==<its version> --index-url=<SynSense's index>``
(the index URL is the ``__gitlab_packages_index_url__`` string in that file), which fails offline
with ``CalledProcessError``. The real package, from SynSense's own index, ships compiled extension
modules (``.so`` on Linux, ``.pyd`` on Windows, ``.so`` / ``.dylib`` on macOS) inside ``samna/``.

Detection reads the installed distribution's ``RECORD`` file list (``importlib.metadata``) and the
text of ``samna/__init__.py``:

- absent: no ``samna`` distribution on the search path;
- loader: the ``PYPI_SAMNA`` mark is in ``samna/__init__.py``, or no compiled module is listed,
  or a listed compiled module is missing on disk;
- real: compiled modules listed and present, no loader mark.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ABSENT, LOADER, REAL = "absent", "loader", "real"
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")
LOADER_MARK = "PYPI_SAMNA"
_INDEX_PATTERN = re.compile(r"__gitlab_packages_index_url__\s*=\s*\(?\s*[\"']([^\"']+)[\"']")


@dataclass(frozen=True)
class SamnaStatus:
    """What :func:`detect_samna` found.

    Attributes:
        state: ``"absent"``, ``"loader"`` or ``"real"``.
        version: the installed distribution's version, or None when absent.
        location: the folder holding the distribution (site-packages), or None.
        compiled: the compiled extension modules listed in RECORD (paths relative to ``location``).
        index_url: SynSense's package index named by the loader, when the loader names one.
        message: one paragraph: what is installed, what is missing, how to install the real package.
    """

    state: str
    version: str | None
    location: str | None
    compiled: tuple[str, ...] = ()
    index_url: str | None = None
    message: str = field(default="")

    @property
    def real(self) -> bool:
        """True when the real samna (with its compiled modules) is installed."""
        return self.state == REAL


def _find(paths: list[str] | None) -> metadata.Distribution | None:
    """The ``samna`` distribution on ``paths`` (default ``sys.path``), without importing it."""
    found = metadata.distributions(name="samna", path=list(sys.path if paths is None else paths))
    return next(iter(found), None)


def _install_advice(version: str | None, index_url: str | None, docs: str | None) -> str:
    pin = f"samna=={version}" if version else "samna"
    if index_url:
        how = f"`pip install --force-reinstall {pin} --index-url={index_url}` (SynSense's package index)"
    else:
        how = f"`pip install --force-reinstall {pin}` from SynSense's own package index"
    where = f"; SynSense's samna documentation: {docs}" if docs else ""
    return (
        f"Install the real package with {how}, on a machine that can reach it, in the environment "
        f"that runs asa-snn{where}. Or use `asa-snn deploy speck ... --dry-run` to prepare without a chip."
    )


def detect_samna(paths: list[str] | None = None) -> SamnaStatus:
    """Classify the installed samna as absent / loader / real (module docstring), without importing it.

    Args:
        paths: folders to search for the distribution (site-packages); default ``sys.path``.

    Returns:
        A :class:`SamnaStatus` whose ``message`` says what is missing and how to install it.
    """
    dist = _find(paths)
    if dist is None:
        return SamnaStatus(
            ABSENT,
            None,
            None,
            message="samna is not installed (no 'samna' distribution found). `pip install samna` (or "
            "sinabs, which depends on it) installs the PyPI loader only; import it once on a machine with "
            "network access and it replaces itself with the real package of the same version from "
            "SynSense's package index (offline the import fails with CalledProcessError). "
            "Or use `asa-snn deploy speck ... --dry-run` to prepare without a chip.",
        )
    version = dist.version
    files = list(dist.files or [])
    location = str(dist.locate_file(""))
    compiled = tuple(
        str(f) for f in files if f.parts and f.parts[0] == "samna" and f.suffix in COMPILED_SUFFIXES
    )
    init = Path(dist.locate_file("samna/__init__.py"))
    source = init.read_text(errors="replace") if init.is_file() else ""
    match = _INDEX_PATTERN.search(source)
    index_url = match.group(1) if match else None
    docs = next(
        (
            url.split(",", 1)[1].strip()
            for url in dist.metadata.get_all("Project-URL") or []
            if url.lower().startswith("documentation,")
        ),
        None,
    )
    missing = [name for name in compiled if not Path(dist.locate_file(name)).exists()]
    advice = _install_advice(version, index_url, docs)
    if LOADER_MARK in source or not compiled:
        reason = (
            f"samna {version} in {location} is the PyPI loader only (samna/__init__.py sets {LOADER_MARK}; "
            "no compiled samna module): importing it would try to download the real package and "
            "fails offline."
        )
        return SamnaStatus(LOADER, version, location, compiled, index_url, f"{reason} {advice}")
    if missing:
        reason = (
            f"samna {version} in {location} lists compiled modules that are missing on disk "
            f"({', '.join(missing)}): the installation is incomplete."
        )
        return SamnaStatus(LOADER, version, location, compiled, index_url, f"{reason} {advice}")
    return SamnaStatus(
        REAL,
        version,
        location,
        compiled,
        index_url,
        f"samna {version} (real package, {len(compiled)} compiled module(s)) in {location}.",
    )
