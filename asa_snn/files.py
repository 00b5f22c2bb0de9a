"""Putting a finished output folder into place without ever leaving a half-written one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asa_snn.errors import AsaSnnError


def replace_folder(staging: Path, target: Path) -> None:
    """Move the complete folder ``staging`` to ``target``, replacing any folder already there.

    The old ``target`` is first renamed aside and deleted only after the new one is in place, so
    at every moment ``target`` is either the old complete folder or the new complete one.
    ``staging`` must be on the same file system (make it beside ``target``).
    """
    if not target.exists():
        os.replace(staging, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, aside / "previous")
    os.replace(staging, target)
    shutil.rmtree(aside)


OUTPUT_MARKER = ".asa-snn-output"
"""Empty file inside every folder :func:`staged_folder` writes: only such folders are replaced."""


@contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it replaces ``target``.

    Everything written into the staging folder appears at ``target`` at once when the block ends
    without an exception (:func:`replace_folder`); on an exception the staging folder is deleted
    and ``target`` is left as it was. An existing ``target`` is replaced only if it is empty or was
    written here before (it holds :data:`OUTPUT_MARKER`); any other folder raises
    :class:`AsaSnnError` before work starts, so a mistyped ``--out`` cannot wipe a user's files.
    """
    target = Path(target)
    if target.exists() and not (
        target.is_dir() and (not any(target.iterdir()) or (target / OUTPUT_MARKER).exists())
    ):
        raise AsaSnnError(
            f"output folder {target}: exists and is not an asa-snn output folder (no {OUTPUT_MARKER}); "
            "expected a new or empty folder, or one asa-snn wrote before"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (staging / OUTPUT_MARKER).touch()
        yield staging
        replace_folder(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_json(document: dict[str, Any], path: str | Path) -> Path:
    """Write ``document`` as JSON to ``path`` via a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(document, file, indent=2)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
