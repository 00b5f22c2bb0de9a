"""N-MNIST (Orchard et al. 2015): saccade recordings of MNIST digits on a 34x34 ATIS crop."""

from __future__ import annotations

from pathlib import Path

from asa_snn.data.datasets._base import (
    LabelledDataset,
    PathLikeStr,
    Transform,
    check_split,
    missing_layout,
    parse_label,
    read_lines,
)
from asa_snn.data.events import EventStream
from asa_snn.errors import InputFormatError

NMNIST_LAYOUT = """\
  either the original download:  <root>/Train/<digit 0-9>/<id>.bin  and  <root>/Test/<digit>/<id>.bin
  or a numbered list:            <root>/train/<n>.bs2 (or .bin) plus <root>/train/labels.txt,
                                 whose lines are '<n> <class>' (a '#sample #class' header is allowed);
                                 the same under <root>/test/"""

NMNIST_URL = "https://www.garrickorchard.com/datasets/n-mnist (CC BY-SA 4.0)"


class NMNIST(LabelledDataset):
    """N-MNIST digits; items are ``(EventStream, digit)`` with sensor (34, 34, 2), times in us.

    Two on-disk layouts are accepted (see ``NMNIST_LAYOUT``): the original one, with one folder
    per digit whose name is the label, and a numbered one, with files ``<n>.bs2`` and a
    ``labels.txt`` that maps each sample number to its digit (the layout of
    ``shared/data/nmnist``). Sample order: by digit then file name (original), or the order of
    ``labels.txt`` (numbered).

    Args:
        root: folder holding ``Train``/``Test`` or ``train``/``test``.
        split: ``"train"`` or ``"test"``.
        transform: applied to each EventStream.

    Raises:
        AsaSnnError: unknown split, missing folder or files, no samples.
        InputFormatError: a label outside 0..9 (the message names the file and line).
    """

    sensor_size = (34, 34, 2)

    def __init__(self, root: PathLikeStr, split: str = "train", transform: Transform | None = None) -> None:
        super().__init__(root, split, transform)
        self.classes = [str(digit) for digit in range(10)]
        check_split("NMNIST", split, ("train", "test"))
        original = self.root / split.capitalize()
        numbered = self.root / split
        if (numbered / "labels.txt").is_file():
            files, labels = _numbered_samples(numbered, len(self.classes))
        elif original.is_dir() and any(original.glob("[0-9]")):
            files, labels = _digit_folder_samples(original, len(self.classes))
        else:
            raise missing_layout("NMNIST", self.root, NMNIST_LAYOUT, NMNIST_URL)
        self._finish(files, labels, NMNIST_LAYOUT)

    def _load(self, index: int) -> EventStream:
        from asa_snn.data.formats import read_nmnist_binary

        return read_nmnist_binary(self.files[index], sensor_size=self.sensor_size)


def _numbered_samples(folder: Path, num_classes: int) -> tuple[list[str], list[int]]:
    """Files and labels listed in ``folder/labels.txt``; each listed file must exist."""
    labels_file = folder / "labels.txt"
    files, labels = [], []
    for number, line in read_lines(labels_file):
        fields = line.split()
        source = f"{labels_file}:{number}"
        if len(fields) != 2:
            raise InputFormatError(f"{source}: expected '<sample> <class>', found {line!r}")
        candidates = [folder / f"{fields[0]}{ext}" for ext in (".bs2", ".bin")]
        sample = next((path for path in candidates if path.is_file()), None)
        if sample is None:
            raise InputFormatError(
                f"{source}: sample {fields[0]!r} has no file {fields[0]}.bs2 or .bin in {folder}"
            )
        labels.append(parse_label(fields[1], num_classes, source))
        files.append(str(sample))
    return files, labels


def _digit_folder_samples(folder: Path, num_classes: int) -> tuple[list[str], list[int]]:
    """``.bin`` files of the per-digit folders under ``folder``, labelled by folder name."""
    files, labels = [], []
    for class_dir in sorted(path for path in folder.iterdir() if path.is_dir()):
        label = parse_label(class_dir.name, num_classes, str(class_dir))
        for file in sorted(class_dir.glob("*.bin")):
            files.append(str(file))
            labels.append(label)
    return files, labels
