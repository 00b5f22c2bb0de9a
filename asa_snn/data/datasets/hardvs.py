"""HAR-DVS (Wang et al. 2022): 300 human activities, DAVIS346, distributed as event frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asa_snn.data.datasets._base import (
    LabelledDataset,
    PathLikeStr,
    Transform,
    check_split,
    missing_layout,
    parse_label,
    read_lines,
)
from asa_snn.errors import AsaSnnError, InputFormatError

HARDVS_CLASSES = 300
"""Number of activity classes."""

HARDVS_LAYOUT = """\
  the frame release, as read by the authors' mmaction2 configs (github Event-AHU/HARDVS, RawframeDataset):
    <root>/train_label.txt, val_label.txt, test_label.txt   lines '<frame_dir> <total_frames> <label>'
                                                            (or '<frame_dir> <label>'), label 0..299
    <root>/<frame_dir>/*.png|*.jpg|*.bmp                    the frames of one sample, in name order
    <root>/HARDVS_300_class.txt                             optional: class names, one per line"""

HARDVS_URL = "https://github.com/Event-AHU/HARDVS ('Event Images')"

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""Image files taken as frames."""


class HARDVS(LabelledDataset):
    """HAR-DVS event frames; items are ``(frames, label)`` with ``frames`` a float32 tensor
    [T, C, H, W] in [0, 1] (C = 1 for grey-scale images, else 3 (RGB)).

    The dataset's authors turned each event stream into frames; the released configs sample
    T = 8 of them per clip. Here the k frames of a sample folder, sorted by name, are sampled at
    the deterministic indices ``floor((i + 0.5) * k / T)``, i = 0..T-1 (all of them in order when
    k = T; frames repeat when k < T). The ``transform`` receives the tensor.

    Args:
        root: folder holding the label files and the frame folders (``HARDVS_LAYOUT``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: applied to each frame tensor.
        num_frames: T, frames per sample.

    Attributes:
        sensor_size: (346, 260, 2), the camera that recorded the events (the frames have the
            size of the image files).

    Raises:
        AsaSnnError: unknown split, missing label file, no samples.
        InputFormatError: a malformed line or a label outside 0..299 (names the file and line), a
            sample folder without frames, frames of different sizes, an unreadable image.
    """

    sensor_size = (346, 260, 2)

    def __init__(
        self, root: PathLikeStr, split: str = "train", transform: Transform | None = None, num_frames: int = 8
    ) -> None:
        super().__init__(root, split, transform)
        check_split("HARDVS", split, ("train", "val", "test"))
        if num_frames < 1:
            raise AsaSnnError(f"HARDVS: num_frames={num_frames}, expected a positive integer")
        self.num_frames = num_frames
        self.classes = _class_names(self.root / "HARDVS_300_class.txt")
        list_file = self.root / f"{split}_label.txt"
        if not list_file.is_file():
            raise missing_layout("HARDVS", self.root, HARDVS_LAYOUT, HARDVS_URL)
        files, labels = [], []
        for number, line in read_lines(list_file):
            fields = line.split()
            if len(fields) not in (2, 3):
                raise InputFormatError(
                    f"{list_file}:{number}: expected '<frame_dir> <total_frames> <label>', found {line!r}"
                )
            files.append(str(self.root / fields[0]))
            labels.append(parse_label(fields[-1], HARDVS_CLASSES, f"{list_file}:{number}"))
        self._finish(files, labels, HARDVS_LAYOUT)

    def _load(self, index: int) -> torch.Tensor:
        return torch.from_numpy(read_frames(Path(self.files[index]), self.num_frames))


def _class_names(names_file: Path) -> list[str]:
    """The 300 lines of ``names_file``, or ``Action001`` .. ``Action300`` when it does not exist."""
    if not names_file.is_file():
        return [f"Action{i + 1:03d}" for i in range(HARDVS_CLASSES)]
    names = [line for _, line in read_lines(names_file)]
    if len(names) != HARDVS_CLASSES:
        raise InputFormatError(f"{names_file}: {len(names)} class names, expected {HARDVS_CLASSES}")
    return names


def sample_indices(count: int, num_frames: int) -> np.ndarray:
    """Indices ``floor((i + 0.5) * count / num_frames)``, i = 0..num_frames-1: evenly spread, shape [T]."""
    return ((np.arange(num_frames) + 0.5) * count / num_frames).astype(np.int64)


def read_frames(folder: Path, num_frames: int) -> np.ndarray:
    """``num_frames`` images of ``folder`` (see :func:`sample_indices`) as float32 [T, C, H, W] in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    paths = (
        sorted(path for path in folder.glob("*") if path.suffix.lower() in FRAME_SUFFIXES)
        if folder.is_dir()
        else []
    )
    if not paths:
        raise InputFormatError(
            f"{folder}: sample folder missing or without frames (expected {', '.join(FRAME_SUFFIXES)})"
        )
    frames = []
    for path in (paths[i] for i in sample_indices(len(paths), num_frames)):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image if image.mode == "L" else image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise InputFormatError(f"{path}: not a readable image ({exc})") from exc
        frames.append(pixels.reshape(pixels.shape[0], pixels.shape[1], -1))
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise InputFormatError(
            f"{folder}: frames have different shapes {sorted(shapes)}, expected one (H, W, C)"
        )
    return (np.stack(frames).transpose(0, 3, 1, 2).astype(np.float32) / 255.0).copy()
