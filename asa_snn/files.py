"""Putting a finished output folder into place without ever leaving a half-written one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


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
