"""An on-disk cache of per-recording arrays (model-input frames, decoded events), read back memory-mapped.

Frames are computed once per recording and preprocessing setting and stored as plain ``.npy``
files (``np.save(..., allow_pickle=False)``), read with ``np.load(mmap_mode="r",
allow_pickle=False)``: nothing is ever unpickled, and a file that holds Python objects is refused
by NumPy itself and recomputed.

The file of one entry is ``<root>/<namespace>/<key[:2]>/<key>.npy`` where

* ``namespace`` is the sha256 of the canonical JSON of the setting the caller gives (the
  preprocessing contract :class:`~asa_snn.data.model_input.InputSpec` and every other parameter
  that shapes the arrays, plus :data:`FORMAT`), so a changed setting lands in another folder and
  never reads the frames of the old one;
* ``key`` is the sha256 of the namespace, the entry's stage (``"frames"`` or ``"events"``) and
  :func:`source_identity` of the recording: its id, resolved path, size, modification time (ns)
  and inode, so an edited or replaced file is a new key.

Writers compute the array, then replace the entry atomically (a temporary file beside it, fsync,
``os.replace``: :func:`asa_snn.files.atomic_write`), so processes that fill the same cache at once
(DataLoader workers, torchrun ranks) each see a missing entry or a whole one; two writers of the
same entry write the same bytes. An entry that cannot be read back (cut by a crash, written by
hand) or whose dtype / shape is not what the caller expects is recomputed and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asa_snn.errors import AsaSnnError
from asa_snn.files import atomic_write

FORMAT = 1
"""Layout version of a cache entry; part of every namespace, so a change of layout or of the
binning code that is meant to invalidate old entries bumps it."""

STAGES = ("frames", "events")
"""What an entry holds: model-input frames [T, C, H, W] float32, or a recording's events [N]."""


def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def source_identity(sample_id: str) -> dict[str, Any]:
    """What identifies the bytes behind one dataset sample id (``path`` or ``path#k``).

    Returns:
        ``{"id": sample_id}`` plus, when the path exists, ``path`` (resolved), and for a file its
        ``size`` (bytes), ``mtime_ns`` and ``inode``; for a folder (HAR-DVS frame folders) the
        sorted (name, size, mtime_ns) of its entries. Ids that name no file (generated data) are
        identified by the id alone: the caller's namespace must then hold what generates them.
    """
    identity: dict[str, Any] = {"id": str(sample_id)}
    path = str(sample_id).split("#", 1)[0]
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return identity
    identity["path"] = _real_path(path)
    if stat.S_ISDIR(status.st_mode):
        identity["entries"] = sorted(
            (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns) for entry in os.scandir(path)
        )
    else:
        identity.update(size=status.st_size, mtime_ns=status.st_mtime_ns, inode=status.st_ino)
    return identity


@functools.lru_cache(maxsize=1 << 16)
def _real_path(path: str) -> str:
    """``path`` resolved (links followed), remembered: a recording is read once per epoch."""
    return os.path.realpath(path)


@dataclass(frozen=True)
class FrameCache:
    """A cache folder for one setting (see the module docstring).

    Attributes:
        root: the cache folder (shared by every setting).
        namespace: sha256 hex of the setting (:meth:`for_setting`).
    """

    root: Path
    namespace: str

    @classmethod
    def for_setting(cls, root: str | Path, setting: dict[str, Any]) -> FrameCache:
        """The cache of ``setting`` (JSON-safe: every parameter that shapes the arrays) under ``root``.

        Raises:
            AsaSnnError: ``root`` exists and is not a folder.
        """
        root = Path(os.path.expanduser(str(root)))
        if root.exists() and not root.is_dir():
            raise AsaSnnError(
                f"frame cache {root}: exists and is not a folder; expected a folder for the cache"
            )
        return cls(root, _digest({"format": FORMAT, "setting": setting}))

    @property
    def folder(self) -> Path:
        """Where this setting's entries live."""
        return self.root / self.namespace

    def path_for(self, sample_id: str, stage: str = "frames") -> Path:
        """The entry file of ``sample_id`` at ``stage`` (one of :data:`STAGES`)."""
        if stage not in STAGES:
            raise AsaSnnError(f"frame cache: stage {stage!r} unknown; expected one of {', '.join(STAGES)}")
        key = _digest({"namespace": self.namespace, "stage": stage, "source": source_identity(sample_id)})
        return self.folder / key[:2] / f"{key}.npy"

    def fetch(
        self,
        sample_id: str,
        make: Callable[[], np.ndarray],
        stage: str = "frames",
        accept: Callable[[np.ndarray], bool] | None = None,
    ) -> np.ndarray:
        """The cached array of ``sample_id``, memory-mapped read-only; ``make()`` computes and stores
        it when the entry is missing, unreadable, or refused by ``accept`` (e.g. a wrong shape).

        Args:
            sample_id: the dataset's sample id (:func:`source_identity`).
            make: computes the array (any shape; numeric or structured dtype without objects).
            stage: what the array is (:data:`STAGES`); part of the key.
            accept: extra check of a stored array (dtype, shape); None accepts any.

        Returns:
            A read-only ``np.memmap`` of the entry.
        """
        path = self.path_for(sample_id, stage)
        stored = _read(path)
        if stored is not None and (accept is None or accept(stored)):
            return stored
        array = np.asarray(make())
        if array.dtype.hasobject:
            raise AsaSnnError(f"frame cache: {sample_id}: arrays of Python objects cannot be cached")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda temp: _save(temp, array))
        written = _read(path)
        return array if written is None else written


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as file:
        np.save(file, array, allow_pickle=False)


def _read(path: Path) -> np.ndarray | None:
    """The entry at ``path`` memory-mapped, or None when it is missing or not a plain ``.npy``."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
