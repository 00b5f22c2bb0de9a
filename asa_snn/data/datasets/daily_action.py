"""DailyAction-DVS (Liu et al., IJCAI 2021): 12 daily actions recorded with a DAVIS346."""

from __future__ import annotations

import math
from pathlib import Path

from asa_snn.data.datasets._base import LabelledDataset, PathLikeStr, Transform, check_split, missing_layout
from asa_snn.data.events import EventStream
from asa_snn.errors import InputFormatError

DAILY_ACTION_CLASSES = [
    "climb",
    "stand",
    "jump",
    "fall",
    "sit",
    "get up",
    "walk",
    "run",
    "lift",
    "lie",
    "bend",
    "pick",
]
"""Class names by label, in the order of the paper's released code (github BICLab/ASA-SNN,
datasets/action); folder names match them ignoring case, with '_' or '-' accepted for the space."""

DAILY_ACTION_LAYOUT = """\
  one folder per action, named after the class, holding jAER AEDAT 2.0 recordings (DAVIS346):
    <root>/climb/*.aedat, <root>/stand/*.aedat, ..., <root>/get up/*.aedat, ..., <root>/pick/*.aedat
  classes: """ + ", ".join(DAILY_ACTION_CLASSES)

TRAIN_FRACTION = 0.8
"""Share of each class's recordings (by sorted file name) in the training split."""


class DailyActionDVS(LabelledDataset):
    """DailyAction-DVS; items are ``(EventStream, action)``, sensor (346, 260, 2), times in us.

    Camera: the ASA paper (section 5) states that DailyAction-DVS and HAR-DVS were recorded with a
    DAVIS346 (346 x 260 px), and the released code builds frames of 346 x 260 / ds for it while
    decoding jAER DAVIS addresses (x in bits 12-21, y in bits 22-30, polarity bit 11), so the files
    are read with ``read_aedat2(path, camera="davis346")``. (That decoder also flips x about 128 and
    keeps only x, y < 128, a crop that is not reproduced here.)

    Split: the files of each class folder sorted by name; the first ``ceil(0.8 * n)`` are
    ``"train"``, the rest ``"test"``. With the dataset's 120 recordings per class this gives 96 / 24,
    the counts of the released code (which took the file-system order, not a sorted one).

    Args:
        root: folder with one sub-folder per class (``DAILY_ACTION_LAYOUT``).
        split: ``"train"`` or ``"test"``.
        transform: applied to each EventStream.

    Raises:
        AsaSnnError: unknown split, missing folder, no recordings.
        InputFormatError: a class folder whose name is not one of the 12 classes.
    """

    sensor_size = (346, 260, 2)

    def __init__(self, root: PathLikeStr, split: str = "train", transform: Transform | None = None) -> None:
        super().__init__(root, split, transform)
        self.classes = list(DAILY_ACTION_CLASSES)
        check_split("DailyActionDVS", split, ("train", "test"))
        if not self.root.is_dir():
            raise missing_layout("DailyActionDVS", self.root, DAILY_ACTION_LAYOUT)
        files, labels = [], []
        for folder in sorted(path for path in self.root.iterdir() if path.is_dir()):
            label = _class_of(folder)
            recordings = sorted(str(path) for path in folder.glob("*.aedat"))
            n_train = math.ceil(TRAIN_FRACTION * len(recordings))
            chosen = recordings[:n_train] if split == "train" else recordings[n_train:]
            files += chosen
            labels += [label] * len(chosen)
        if not any(self.root.glob("*/*.aedat")):
            raise missing_layout("DailyActionDVS", self.root, DAILY_ACTION_LAYOUT)
        self._finish(files, labels, DAILY_ACTION_LAYOUT)

    def _load(self, index: int) -> EventStream:
        from asa_snn.data.formats import read_aedat2

        return read_aedat2(self.files[index], camera="davis346")


def _class_of(folder: Path) -> int:
    """Label of a class folder, matching its name to :data:`DAILY_ACTION_CLASSES`."""
    name = folder.name.lower().replace("_", " ").replace("-", " ")
    if name not in DAILY_ACTION_CLASSES:
        raise InputFormatError(
            f"{folder}: folder name {folder.name!r} is not a DailyAction-DVS class; expected one of "
            f"{DAILY_ACTION_CLASSES}"
        )
    return DAILY_ACTION_CLASSES.index(name)
