"""A folder of event recordings in any readable format plus a CSV of labels."""

from __future__ import annotations

import csv

from asa_snn.data.datasets._base import LabelledDataset, PathLikeStr, Transform, parse_label, read_lines
from asa_snn.data.events import EventStream, SensorSize
from asa_snn.errors import AsaSnnError, InputFormatError

FOLDER_LAYOUT = """\
  <root>/labels.csv    header 'file,label' or 'file,label,split'; file relative to <root>, label 0..K-1
  <root>/classes.txt   optional: K class names, one per line (line i names label i-1)
  <root>/<file>        recordings in any format read_events reads (.npy, .h5, .aedat, .aedat4, .bin, ...)"""


class EventFolder(LabelledDataset):
    """Generic labelled recordings; items are ``(EventStream, label)``, times in us.

    Rows are read in file order. With ``split`` given, only rows whose ``split`` column equals it
    are kept (the column is then required). Without ``classes.txt`` the classes are named
    ``"0" .. str(max label)``.

    Args:
        root: the folder.
        labels_file: CSV name, relative to ``root``.
        split: keep only rows of this split, or None for all rows.
        transform: applied to each EventStream.
        sensor_size: (W, H, P) for every file, overriding what each reader infers; when None,
            ``self.sensor_size`` is None and each item carries its file's own size.

    Raises:
        AsaSnnError: missing folder or labels file, a split asked for but no split column, no samples.
        InputFormatError: bad header, a label that is not an integer or outside the classes of
            ``classes.txt`` (names the file and line), a listed file that does not exist.
    """

    def __init__(
        self,
        root: PathLikeStr,
        labels_file: str = "labels.csv",
        split: str | None = None,
        transform: Transform | None = None,
        sensor_size: SensorSize | None = None,
    ) -> None:
        super().__init__(root, split, transform)
        self.sensor_size = None if sensor_size is None else tuple(int(v) for v in sensor_size)
        csv_path = self.root / labels_file
        if not csv_path.is_file():
            state = "does not exist" if not self.root.exists() else f"has no {labels_file}"
            raise AsaSnnError(
                f"EventFolder: dataset folder {self.root} {state}; expected layout:\n{FOLDER_LAYOUT}"
            )
        names_file = self.root / "classes.txt"
        names = [line for _, line in read_lines(names_file)] if names_file.is_file() else None
        num_classes = len(names) if names else None
        files, labels = [], []
        for number, row in _rows(csv_path, split):
            path = self.root / row["file"]
            source = f"{csv_path}:{number}"
            if not path.is_file():
                raise InputFormatError(f"{source}: file {row['file']!r} does not exist (looked for {path})")
            files.append(str(path))
            labels.append(parse_label(row["label"], num_classes, source))
        self.classes = names if names else [str(i) for i in range(max(labels, default=-1) + 1)]
        self._finish(files, labels, FOLDER_LAYOUT)

    def _load(self, index: int) -> EventStream:
        from asa_snn.data.formats import read_events

        return read_events(self.files[index], sensor_size=self.sensor_size)


def _rows(csv_path: PathLikeStr, split: str | None) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of the CSV, keeping only rows of ``split`` when it is given."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        if "file" not in header or "label" not in header:
            raise InputFormatError(
                f"{csv_path}:1: header is {header}, expected 'file,label' (optionally ',split')"
            )
        if split is not None and "split" not in header:
            raise AsaSnnError(f"{csv_path}: split {split!r} requested but the CSV has no 'split' column")
        reader.fieldnames = header
        rows = []
        for row in reader:
            if split is None or (row.get("split") or "").strip() == split:
                rows.append(
                    (reader.line_num, {key: (value or "").strip() for key, value in row.items() if key})
                )
        return rows
