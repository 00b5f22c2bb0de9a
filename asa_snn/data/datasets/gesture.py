"""DVS128 Gesture (Amir et al. 2017): 11 hand and arm gestures, 29 subjects, 3 lighting conditions."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from asa_snn.data.datasets._base import (
    LabelledDataset,
    PathLikeStr,
    Transform,
    check_split,
    missing_layout,
    parse_label,
    read_lines,
)
from asa_snn.data.events import EventStream, as_event_array
from asa_snn.errors import AsaSnnError, InputFormatError

GESTURE_LAYOUT = """\
  either the original IBM release (folder DvsGesture/, given as root or inside root):
    <root>/DvsGesture/trials_to_train.txt, trials_to_test.txt   one recording name per line
    <root>/DvsGesture/userNN_<lighting>.aedat                   AEDAT 3.1 recordings
    <root>/DvsGesture/userNN_<lighting>_labels.csv              class,startTime_usec,endTime_usec
  or tonic's preprocessed copy (tonic.datasets.DVSGesture(save_to=<root>)):
    <root>/DVSGesture/ibmGestureTrain.tar.gz (or ibmGestureTest.tar.gz) and the extracted
    <root>/DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy (at least 100 files)"""

GESTURE_URL = "https://research.ibm.com/interactive/dvsgesture/ (CC BY 4.0)"

GESTURE_CLASSES = [
    "hand clap",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
]
"""Class names by label (the label files number them 1..11; labels here are 0..10)."""

TONIC_FOLDERS = {
    "train": ("ibmGestureTrain", "ibmGestureTrain.tar.gz"),
    "test": ("ibmGestureTest", "ibmGestureTest.tar.gz"),
}
"""Extracted folder and archive name tonic uses per split."""

TONIC_MIN_FILES = 100
"""tonic re-downloads unless its folder holds at least this many ``.npy`` files."""


class DVSGesture(LabelledDataset):
    """DVS128 Gesture trials; items are ``(EventStream, label)``, sensor (128, 128, 2), times in us.

    Original layout: every recording listed in ``trials_to_<split>.txt`` is cut into its labelled
    trials with :func:`~asa_snn.data.formats.read_aedat31_trials`; sample ids are
    ``<file>.aedat#<k>`` for the k-th row of its label file (labels read from the CSV without
    decoding the recording). The last decoded recording is cached, so reading the trials of a
    recording in order decodes it once.

    tonic layout: ``tonic.datasets.DVSGesture`` reads the files; the folder is checked first so
    tonic never downloads. Its structured events (milliseconds scaled to us) are converted with
    :func:`~asa_snn.data.events.as_event_array`.

    Args:
        root: the folder described in ``GESTURE_LAYOUT``.
        split: ``"train"`` or ``"test"``.
        transform: applied to each EventStream.

    Raises:
        AsaSnnError: unknown split, missing folder or files (tonic's archive missing included).
        InputFormatError: a label outside 1..11 in a label file (names the file and line).
    """

    sensor_size = (128, 128, 2)

    def __init__(self, root: PathLikeStr, split: str = "train", transform: Transform | None = None) -> None:
        super().__init__(root, split, transform)
        self.classes = list(GESTURE_CLASSES)
        check_split("DVSGesture", split, ("train", "test"))
        self._cache: tuple[str, list[tuple[EventStream, int]]] | None = None
        self._tonic: Any = None
        ibm = next(
            (d for d in (self.root / "DvsGesture", self.root) if (d / f"trials_to_{split}.txt").is_file()),
            None,
        )
        tonic_root = next((d for d in (self.root, self.root.parent) if (d / "DVSGesture").is_dir()), None)
        if ibm is not None:
            files, labels = _ibm_trials(ibm, split, len(self.classes))
        elif tonic_root is not None:
            self._tonic = _open_tonic(tonic_root, split)
            files, labels = list(self._tonic.data), list(self._tonic.targets)
        else:
            raise missing_layout("DVSGesture", self.root, GESTURE_LAYOUT, GESTURE_URL)
        self._finish(files, labels, GESTURE_LAYOUT)

    def _load(self, index: int) -> EventStream:
        if self._tonic is not None:
            events, _ = self._tonic[index]
            return EventStream(as_event_array(events, self.files[index]), self.sensor_size, self.files[index])
        recording, trial = self.files[index].rsplit("#", 1)
        if self._cache is None or self._cache[0] != recording:
            from asa_snn.data.formats import read_aedat31_trials

            labels_csv = _labels_csv(Path(recording))
            self._cache = (recording, read_aedat31_trials(recording, labels_csv))
        trials = self._cache[1]
        if int(trial) >= len(trials):
            raise InputFormatError(
                f"{recording}: trial {trial} requested but only {len(trials)} were decoded"
            )
        return trials[int(trial)][0]


def _ibm_trials(folder: Path, split: str, num_classes: int) -> tuple[list[str], list[int]]:
    """Sample ids ``<recording>#<k>`` and labels 0..10 of the recordings named in the split list."""
    split_file = folder / f"trials_to_{split}.txt"
    files, labels = [], []
    for number, name in read_lines(split_file):
        recording = folder / name
        labels_csv = _labels_csv(recording)
        for path in (recording, labels_csv):
            if not path.is_file():
                raise AsaSnnError(
                    f"{split_file}:{number}: {name!r} names a recording, but {path} does not exist"
                )
        for k, label in enumerate(_csv_classes(labels_csv, num_classes)):
            files.append(f"{recording}#{k}")
            labels.append(label)
    return files, labels


def _labels_csv(recording: Path) -> Path:
    """The label file of a recording: ``userNN_<lighting>.aedat`` -> ``userNN_<lighting>_labels.csv``."""
    return recording.with_name(recording.stem + "_labels.csv")


def _csv_classes(labels_csv: Path, num_classes: int) -> list[int]:
    """Labels 0..10 of the rows of a ``class,startTime_usec,endTime_usec`` file (classes 1..11)."""
    with open(labels_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or not rows[0] or rows[0][0].strip() != "class":
        raise InputFormatError(
            f"{labels_csv}:1: expected the header 'class,startTime_usec,endTime_usec', found {rows[:1]}"
        )
    return [
        parse_label(row[0], num_classes, f"{labels_csv}:{number}", offset=1)
        for number, row in enumerate(rows, start=1)
        if row and number > 1
    ]


def _open_tonic(save_to: Path, split: str) -> Any:
    """``tonic.datasets.DVSGesture`` on ``save_to``, after checking that it will not download."""
    folder, archive = TONIC_FOLDERS[split]
    location = save_to / "DVSGesture"
    count = sum(1 for _ in (location / folder).glob("**/*.npy"))
    if not (location / archive).is_file() or count < TONIC_MIN_FILES:
        raise AsaSnnError(
            f"DVSGesture: tonic layout in {location} is incomplete for split {split!r}: found archive "
            f"{archive}: {(location / archive).is_file()}, {count} .npy files under {folder}/ "
            f"(tonic needs both the archive and at least {TONIC_MIN_FILES} extracted files, otherwise it "
            f"downloads, which asa-snn does not do); expected layout:\n{GESTURE_LAYOUT}\n"
            f"The dataset is available from {GESTURE_URL}."
        )
    import tonic

    return tonic.datasets.DVSGesture(save_to=str(save_to), train=split == "train")
