"""DVS128 Gait-Day (Wang et al. CVPR 2019) and Gait-Night (Wang et al. TPAMI 2022): 20 walkers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asa_snn.data.datasets._base import LabelledDataset, PathLikeStr, Transform, check_split, missing_layout
from asa_snn.data.events import EventStream, make_events
from asa_snn.errors import AsaSnnError, InputFormatError

GAIT_LAYOUT = """\
  the npy layout read by the paper's released code (github BICLab/ASA-SNN, datasets/gait):
    <root>/<condition>/train/train_data.npy   object array, one [N, 4] array (t us, x, y, p) per sample
    <root>/<condition>/train/train_target.npy integer labels 0..19, one per sample
    <root>/<condition>/test/test_data.npy, test_target.npy
  with <condition> 'day' or 'night'; <root> may also be the condition folder itself"""

GAIT_URL = "https://github.com/zhangxiann/TPAMI_Gait_Identification (DVS128-Gait-Day / -Night)"

GAIT_CLASSES = 20
"""Walkers in both Gait-Day and Gait-Night (the released code one-hot encodes 20 classes for both)."""


class DVSGait(LabelledDataset):
    """DVS128 Gait-Day / Gait-Night; items are ``(EventStream, walker)``, sensor (128, 128, 2), times in us.

    The released ASA-SNN code keeps each split as two NumPy files (``GAIT_LAYOUT``): a pickled
    object array of per-sample event arrays with columns (t in microseconds, x, y, p), and the
    matching label array. Labels come from the small target file; the data file is loaded on the
    first item. Sample ids are ``<split>_data.npy#<k>``.

    Loading an object array runs pickle, which can execute code stored in the file, so the data
    file is refused unless ``trust_pickle=True`` says you made it or trust its source. The
    target file must be a plain integer array and is never unpickled.

    Args:
        root: folder holding ``day/`` and ``night/`` (or one condition's ``train/`` and ``test/``).
        split: ``"train"`` or ``"test"``.
        condition: ``"day"`` or ``"night"``.
        transform: applied to each EventStream.
        trust_pickle: allow unpickling the data file (default False: refuse with an error).

    Raises:
        AsaSnnError: unknown split or condition, missing files, no samples.
        InputFormatError: a label outside 0..19 (names the file and entry), a sample that is not
            an [N, 4] array, data and target files of different lengths.
    """

    sensor_size = (128, 128, 2)

    def __init__(
        self,
        root: PathLikeStr,
        split: str = "train",
        condition: str = "day",
        transform: Transform | None = None,
        trust_pickle: bool = False,
    ) -> None:
        super().__init__(root, split, transform)
        self.trust_pickle = trust_pickle
        self.classes = [f"walker {i}" for i in range(GAIT_CLASSES)]
        check_split("DVSGait", split, ("train", "test"))
        check_split("DVSGait condition", condition, ("day", "night"))
        self.condition = condition
        folder = next((d for d in (self.root / condition, self.root) if (d / split).is_dir()), None)
        if folder is None or not (folder / split / f"{split}_target.npy").is_file():
            raise missing_layout("DVSGait", self.root, GAIT_LAYOUT, GAIT_URL)
        self.data_file = folder / split / f"{split}_data.npy"
        if not self.data_file.is_file():
            raise missing_layout("DVSGait", self.data_file.parent, GAIT_LAYOUT, GAIT_URL)
        labels = _targets(folder / split / f"{split}_target.npy", len(self.classes))
        self._data: np.ndarray | None = None
        self._finish([f"{self.data_file}#{k}" for k in range(len(labels))], labels, GAIT_LAYOUT)

    def _load(self, index: int) -> EventStream:
        if self._data is None:
            self._data = _load_samples(self.data_file, len(self), self.trust_pickle)
        return _to_stream(self._data[index], self.sensor_size, self.files[index])


def _targets(path: Path, num_classes: int) -> np.ndarray:
    """Integer labels of a ``*_target.npy`` file, each checked against 0..num_classes-1."""
    try:
        targets = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"{path}: not a readable .npy file ({exc})") from exc
    targets = np.asarray(targets).reshape(-1)
    labels = np.zeros(len(targets), dtype=np.int64)
    for k, value in enumerate(targets):
        if not float(value).is_integer() or not 0 <= int(value) < num_classes:
            raise InputFormatError(
                f"{path}: entry {k} has label {value}; expected an integer in 0..{num_classes - 1}"
            )
        labels[k] = int(value)
    return labels


def _load_samples(path: Path, expected: int, trust_pickle: bool) -> np.ndarray:
    """The per-sample event arrays of a ``*_data.npy`` file; their count must equal ``expected``."""
    if not trust_pickle:
        raise AsaSnnError(
            f"{path}: this layout stores a pickled object array, and unpickling can run code from the "
            "file; pass trust_pickle=True to DVSGait only if you made the file or trust its source"
        )
    try:
        data = np.load(path, allow_pickle=True)
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"{path}: not a readable .npy file ({exc})") from exc
    if len(data) != expected:
        raise InputFormatError(
            f"{path}: holds {len(data)} samples but the target file lists {expected} labels; "
            "expected equal counts"
        )
    return data


def _to_stream(sample: np.ndarray, sensor_size: tuple[int, int, int], source: str) -> EventStream:
    """An [N, 4] (t us, x, y, p) array as an EventStream."""
    array = np.asarray(sample)
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputFormatError(
            f"{source}: sample has shape {array.shape}, expected [N, 4] columns (t, x, y, p)"
        )
    return EventStream(make_events(array[:, 0], array[:, 1], array[:, 2], array[:, 3]), sensor_size, source)
