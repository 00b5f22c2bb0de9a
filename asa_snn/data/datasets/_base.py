"""What every dataset shares: the item protocol, layout checks and label parsing.

A dataset is an indexable list of samples. Item ``i`` is ``(transform(sample) or sample, label)``
where the sample is an :class:`~asa_snn.data.events.EventStream` (or a frame tensor for HAR-DVS)
and the label an ``int`` in ``0 .. len(classes) - 1``. ``labels`` and ``files`` are known after
construction without decoding any recording, so stratified splits cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from asa_snn.data.events import SensorSize
from asa_snn.errors import AsaSnnError, InputFormatError

PathLikeStr = str | PathLike[str]
"""A folder or file given as a string or a path object."""

Transform = Callable[[Any], Any]
"""Applied to each sample (an EventStream, or a frame tensor) before it is returned."""


class LabelledDataset(Dataset):
    """Base of the dataset classes: holds the sample ids and labels, applies the transform.

    Subclasses fill ``files`` (one id per sample: a path, or ``path#k`` for the k-th trial or
    entry of a file) and ``labels`` in their constructor, then call :meth:`_finish`, and
    implement :meth:`_load` returning the raw sample ``i``.

    Attributes:
        root: the dataset folder.
        split: the split name, or None for all samples.
        sensor_size: (W, H, P) of the recordings (None where each file gives its own).
        classes: class names, index = label.
        files: sample ids, shape [N].
        labels: int64 array of labels, shape [N].
        transform: callable applied to each sample, or None.
    """

    sensor_size: SensorSize | None
    classes: list[str]

    def __init__(self, root: PathLikeStr, split: str | None, transform: Transform | None) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.files: list[str] = []
        self.labels = np.zeros(0, dtype=np.int64)

    def _finish(self, files: Sequence[str], labels: Sequence[int], layout: str) -> None:
        """Store ``files`` and ``labels``; raise when there are no samples or a label is out of range."""
        if not files:
            raise AsaSnnError(
                f"{type(self).__name__}: no samples found for split {self.split!r} in {self.root}; "
                f"expected layout:\n{layout}"
            )
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        for file, label in zip(self.files, self.labels, strict=True):
            check_label(int(label), len(self.classes), file)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        sample = self._load(index % len(self))
        if self.transform is not None:
            sample = self.transform(sample)
        return sample, int(self.labels[index])

    def _load(self, index: int) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


def check_label(label: int, num_classes: int, source: str) -> None:
    """Raise :class:`InputFormatError` naming ``source`` unless ``0 <= label < num_classes``."""
    if not 0 <= label < num_classes:
        raise InputFormatError(
            f"{source}: label {label} out of range; expected an integer in 0..{num_classes - 1} "
            f"({num_classes} classes)"
        )


def parse_label(text: str, num_classes: int | None, source: str, offset: int = 0) -> int:
    """Parse one label written as an integer, subtract ``offset`` and check its range.

    Args:
        text: the label as written in the file.
        num_classes: number of classes; the result lies in ``0 .. num_classes - 1``. None: any
            label >= ``offset`` is accepted.
        source: ``file:line`` for messages.
        offset: first label value used by the file (1 for files that count classes from 1).

    Raises:
        InputFormatError: not an integer, or out of ``offset .. offset + num_classes - 1``.
    """
    try:
        value = int(text.strip())
    except ValueError as exc:
        raise InputFormatError(f"{source}: label {text.strip()!r} is not an integer") from exc
    if num_classes is None:
        if value < offset:
            raise InputFormatError(f"{source}: label {value} out of range; expected an integer >= {offset}")
    elif not offset <= value < offset + num_classes:
        raise InputFormatError(
            f"{source}: label {value} out of range; expected an integer in "
            f"{offset}..{offset + num_classes - 1} ({num_classes} classes)"
        )
    return value - offset


def check_split(dataset: str, split: str, allowed: Sequence[str]) -> None:
    """Raise :class:`AsaSnnError` unless ``split`` is one of ``allowed``."""
    if split not in allowed:
        raise AsaSnnError(
            f"{dataset}: unknown split {split!r}; expected one of {', '.join(repr(s) for s in allowed)}"
        )


def missing_layout(dataset: str, folder: Path, layout: str, download: str | None = None) -> AsaSnnError:
    """The error for a dataset folder that is absent or lacks the expected files.

    Args:
        dataset: class name, e.g. ``"NMNIST"``.
        folder: the folder that was searched.
        layout: an indented description of the expected files.
        download: where users can get the dataset (text only; nothing is downloaded).
    """
    where = f"\nThe dataset is available from {download} (asa-snn never downloads it)." if download else ""
    state = "does not exist" if not folder.exists() else "does not hold the expected files"
    return AsaSnnError(f"{dataset}: dataset folder {folder} {state}; expected layout:\n{layout}{where}")


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty, non-comment (``#``) lines of a text file as ``(line number, stripped text)``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputFormatError(f"{path}: not a UTF-8 text file ({exc})") from exc
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
