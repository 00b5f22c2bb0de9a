"""Dataset classes: real N-MNIST samples, and tiny dataset folders built here in each published layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from asa_snn.data.datasets import (
    HARDVS,
    NMNIST,
    DailyActionDVS,
    DVSGait,
    DVSGesture,
    EventFolder,
    split_indices,
)
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.formats import read_nmnist_binary, write_hdf5, write_numpy
from asa_snn.errors import AsaSnnError, InputFormatError

SHARED_NMNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nmnist"


def events(n: int, sensor: tuple[int, int, int], seed: int, t0: int = 0) -> np.ndarray:
    """n random events inside ``sensor``, timestamps t0, t0 + 10, ... us."""
    rng = np.random.default_rng(seed)
    return make_events(
        t0 + 10 * np.arange(n),
        rng.integers(0, sensor[0], n),
        rng.integers(0, sensor[1], n),
        rng.integers(0, 2, n),
    )


# ---------------------------------------------------------------- writers of the published formats


def write_nmnist_bin(path: Path, ev: np.ndarray) -> None:
    """N-MNIST record: x, y, p << 7 | t bits 22-16, t bits 15-0 big-endian (t < 2**23 us)."""
    t = ev["t"].astype(np.int64)
    records = np.stack(
        [ev["x"], ev["y"], (ev["p"].astype(np.int64) << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF],
        axis=1,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.astype(np.uint8).tobytes())


def write_aedat31(path: Path, ev: np.ndarray) -> None:
    """One cAER polarity packet: data = valid | p << 1 | y << 2 | x << 17, int32 timestamp."""
    data = (
        1
        | (ev["p"].astype(np.uint32) << 1)
        | (ev["y"].astype(np.uint32) << 2)
        | (ev["x"].astype(np.uint32) << 17)
    )
    records = np.empty(len(ev), dtype=[("data", "<u4"), ("ts", "<i4")])
    records["data"], records["ts"] = data, ev["t"]
    header = struct.pack("<hhiiiiii", 1, 0, 8, 4, 0, len(ev), len(ev), len(ev))
    path.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n" + header + records.tobytes())


def write_aedat2_davis346(path: Path, ev: np.ndarray) -> None:
    """jAER DAVIS346 address: (345 - x) << 12 | (259 - y) << 22 | p << 11, big-endian with the timestamp."""
    x, y, p = (ev[name].astype(np.uint32) for name in "xyp")
    records = np.empty(len(ev), dtype=[("address", ">u4"), ("ts", ">i4")])
    records["address"] = ((345 - x) << 12) | ((259 - y) << 22) | (p << 11)
    records["ts"] = ev["t"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS346B\r\n" + records.tobytes()
    )


def write_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


# ---------------------------------------------------------------- N-MNIST


@pytest.fixture()
def shared_nmnist() -> Path:
    if not (SHARED_NMNIST / "train" / "labels.txt").is_file():
        pytest.skip(f"real N-MNIST samples not found at {SHARED_NMNIST}")
    return SHARED_NMNIST


def test_nmnist_real_samples(shared_nmnist: Path) -> None:
    dataset = NMNIST(shared_nmnist, split="train")
    assert len(dataset) == 1000
    assert dataset.sensor_size == (34, 34, 2) and len(dataset.classes) == 10
    counts = np.bincount(dataset.labels, minlength=10)
    assert counts.sum() == 1000 and counts.min() == 87 and counts.max() == 117
    assert dataset.labels[:3].tolist() == [5, 0, 4]  # labels.txt: "1 5", "2 0", "3 4"
    stream, label = dataset[0]
    direct = read_nmnist_binary(shared_nmnist / "train" / "1.bs2")
    assert label == 5 and isinstance(stream, EventStream)
    assert len(stream) == len(direct) and np.array_equal(stream.events, direct.events)
    assert dataset[-1][1] == int(dataset.labels[-1])


def test_nmnist_real_has_no_test_split(shared_nmnist: Path) -> None:
    with pytest.raises(AsaSnnError, match="Train/<digit 0-9>"):
        NMNIST(shared_nmnist, split="test")


def test_nmnist_original_layout(tmp_path: Path) -> None:
    written = {}
    for split, digit, name, seed in [
        ("Train", 3, "00002", 0),
        ("Train", 3, "00001", 1),
        ("Train", 7, "00005", 2),
    ]:
        ev = events(20 + seed, (34, 34, 2), seed)
        write_nmnist_bin(tmp_path / split / str(digit) / f"{name}.bin", ev)
        written[(digit, name)] = ev
    write_nmnist_bin(tmp_path / "Test" / "1" / "00009.bin", events(5, (34, 34, 2), 9))
    train = NMNIST(tmp_path, split="train", transform=len)
    assert train.labels.tolist() == [3, 3, 7]
    assert [Path(f).name for f in train.files] == ["00001.bin", "00002.bin", "00005.bin"]
    assert train[0] == (21, 3) and train[2] == (22, 7)  # transform=len gives the event count
    stream, _ = NMNIST(tmp_path, split="train")[1]
    assert np.array_equal(stream.events, written[(3, "00002")])
    test = NMNIST(tmp_path, split="test")
    assert len(test) == 1 and test.labels.tolist() == [1]


def test_nmnist_label_out_of_range_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    for n in (1, 2):
        write_nmnist_bin(folder / f"{n}.bs2", events(4, (34, 34, 2), n))
    (folder / "labels.txt").write_text("#sample #class\n1\t4\n2\t10\n")
    with pytest.raises(
        InputFormatError, match=r"labels\.txt:3: label 10 out of range; expected an integer in 0\.\.9"
    ):
        NMNIST(tmp_path)


# ---------------------------------------------------------------- DVS128 Gesture


def make_ibm_gesture(root: Path) -> dict[str, list[tuple[np.ndarray, int]]]:
    """DvsGesture/ with one training and one test recording of two trials each."""
    folder = root / "DvsGesture"
    folder.mkdir(parents=True)
    expected = {}
    for name, classes, seed in [("user01_fluorescent", (3, 11), 0), ("user24_led", (1, 5), 1)]:
        ev = events(300, (128, 128, 2), seed)  # t = 0 .. 2990 us
        write_aedat31(folder / f"{name}.aedat", ev)
        rows = [(classes[0], 100, 1000), (classes[1], 1500, 2500)]
        (folder / f"{name}_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in rows)
        )
        expected[name] = [(ev[(ev["t"] >= s) & (ev["t"] < e)], c - 1) for c, s, e in rows]
    (folder / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (folder / "trials_to_test.txt").write_text("user24_led.aedat\n\n")
    return expected


def test_gesture_ibm_layout(tmp_path: Path) -> None:
    expected = make_ibm_gesture(tmp_path)
    train = DVSGesture(tmp_path, split="train")
    test = DVSGesture(tmp_path / "DvsGesture", split="test")  # the DvsGesture folder itself works too
    assert train.labels.tolist() == [2, 10] and test.labels.tolist() == [0, 4]
    assert train.sensor_size == (128, 128, 2) and len(train.classes) == 11
    assert all("user01" in f for f in train.files) and all("user24" in f for f in test.files)
    for dataset, name in [(train, "user01_fluorescent"), (test, "user24_led")]:
        for i, (ev, label) in enumerate(expected[name]):
            stream, item_label = dataset[i]
            assert item_label == label and np.array_equal(stream.events, ev)
    assert len(expected["user01_fluorescent"][0][0]) == 90  # t in [100, 1000) in steps of 10


def test_gesture_label_out_of_range_names_csv_line(tmp_path: Path) -> None:
    make_ibm_gesture(tmp_path)
    (tmp_path / "DvsGesture" / "user01_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n3,100,1000\n12,1500,2500\n"
    )
    with pytest.raises(InputFormatError, match=r"user01_fluorescent_labels\.csv:3: label 12 .* 1\.\.11"):
        DVSGesture(tmp_path, split="train")


def make_tonic_gesture(root: Path, archive: bool = True) -> None:
    """tonic's preprocessed test split: 10 users x 10 classes of [N, 4] (x, y, p, t ms) arrays."""
    location = root / "DVSGesture"
    for user in range(10):
        for label in range(10):
            folder = location / "ibmGestureTest" / f"user{user + 20:02d}_led"
            folder.mkdir(parents=True, exist_ok=True)
            n = 3 + label
            array = np.stack([np.full(n, user), np.full(n, label), np.arange(n) % 2, np.arange(n)], axis=1)
            np.save(folder / f"{label}.npy", array.astype(np.float64))
    if archive:
        (location / "ibmGestureTest.tar.gz").write_bytes(b"")


def test_gesture_tonic_layout(tmp_path: Path) -> None:
    make_tonic_gesture(tmp_path)
    dataset = DVSGesture(tmp_path, split="test")
    assert len(dataset) == 100
    assert np.bincount(dataset.labels).tolist() == [10] * 10
    i = int(np.flatnonzero(dataset.labels == 4)[0])
    stream, label = dataset[i]
    assert label == 4 and dataset.files[i].endswith("4.npy")
    assert stream.sensor_size == (128, 128, 2)
    assert stream.events["t"].tolist() == [0, 1000, 2000, 3000, 4000, 5000, 6000]  # ms -> us
    assert stream.events["y"].tolist() == [4] * 7 and stream.events["p"].tolist() == [0, 1, 0, 1, 0, 1, 0]


def test_gesture_tonic_layout_without_archive_refuses_to_download(tmp_path: Path) -> None:
    make_tonic_gesture(tmp_path, archive=False)
    with pytest.raises(AsaSnnError, match=r"ibmGestureTest\.tar\.gz: False, 100 \.npy files.*downloads"):
        DVSGesture(tmp_path, split="test")


# ---------------------------------------------------------------- DVS128 Gait


def make_gait(root: Path, condition: str, targets: dict[str, list[int]]) -> dict[str, list[np.ndarray]]:
    samples = {}
    for split, labels in targets.items():
        folder = root / condition / split
        folder.mkdir(parents=True)
        arrays = []
        for k in range(len(labels)):
            ev = events(10 + k, (128, 128, 2), k, t0=5000)
            arrays.append(np.stack([ev["t"], ev["x"], ev["y"], ev["p"]], axis=1).astype(np.int64))
        data = np.empty(len(arrays), dtype=object)
        data[:] = arrays
        np.save(folder / f"{split}_data.npy", data, allow_pickle=True)
        np.save(folder / f"{split}_target.npy", np.asarray(labels))
        samples[split] = arrays
    return samples


def test_gait_npy_layout(tmp_path: Path) -> None:
    samples = make_gait(tmp_path, "night", {"train": [0, 19, 7], "test": [5]})
    train = DVSGait(tmp_path, split="train", condition="night", trust_pickle=True)
    assert train.labels.tolist() == [0, 19, 7] and len(train.classes) == 20
    stream, label = train[1]
    assert label == 19 and stream.sensor_size == (128, 128, 2)
    assert stream.events["t"].tolist() == samples["train"][1][:, 0].tolist()
    assert stream.events["x"].tolist() == samples["train"][1][:, 1].tolist()
    test = DVSGait(tmp_path / "night", split="test", trust_pickle=True)  # the condition folder works too
    assert len(test) == 1 and test[0][1] == 5 and len(test[0][0]) == 10
    with pytest.raises(AsaSnnError, match=r"train_data\.npy"):
        DVSGait(tmp_path, split="train", condition="day")


def test_gait_refuses_to_unpickle_unless_trusted(tmp_path: Path) -> None:
    make_gait(tmp_path, "day", {"train": [1, 2]})
    dataset = DVSGait(tmp_path, split="train")
    assert dataset.labels.tolist() == [1, 2]  # labels come from the plain target array
    with pytest.raises(AsaSnnError, match=r"train_data\.npy: this layout stores a pickled object array"):
        dataset[0]


def test_gait_label_out_of_range_names_entry(tmp_path: Path) -> None:
    make_gait(tmp_path, "day", {"train": [3, 20]})
    with pytest.raises(
        InputFormatError, match=r"train_target\.npy: entry 1 has label 20; expected an integer in 0\.\.19"
    ):
        DVSGait(tmp_path, split="train")


def test_gait_unknown_condition(tmp_path: Path) -> None:
    with pytest.raises(AsaSnnError, match="unknown split 'dusk'; expected one of 'day', 'night'"):
        DVSGait(tmp_path, condition="dusk")


# ---------------------------------------------------------------- DailyAction-DVS


def test_daily_action_folders_and_split(tmp_path: Path) -> None:
    written = {}
    for folder, count in [("climb", 5), ("get_up", 3)]:
        for k in range(count):
            ev = events(8 + k, (346, 260, 2), k)
            write_aedat2_davis346(tmp_path / folder / f"rec{k:02d}.aedat", ev)
            written[(folder, k)] = ev
    train = DailyActionDVS(tmp_path, split="train")
    test = DailyActionDVS(tmp_path, split="test")
    # ceil(0.8 * 5) = 4 and ceil(0.8 * 3) = 3 recordings per class go to training
    names = [Path(f).name for f in train.files]
    assert names == [f"rec{k:02d}.aedat" for k in (0, 1, 2, 3, 0, 1, 2)]
    assert train.labels.tolist() == [0, 0, 0, 0, 5, 5, 5]
    assert test.files == [str(tmp_path / "climb" / "rec04.aedat")] and test.labels.tolist() == [0]
    assert train.sensor_size == (346, 260, 2) and len(train.classes) == 12
    stream, label = test[0]
    assert label == 0 and stream.sensor_size == (346, 260, 2)
    assert np.array_equal(stream.events, written[("climb", 4)])


def test_daily_action_unknown_class_folder(tmp_path: Path) -> None:
    write_aedat2_davis346(tmp_path / "dance" / "a.aedat", events(3, (346, 260, 2), 0))
    with pytest.raises(InputFormatError, match=r"dance.*not a DailyAction-DVS class.*'get up'"):
        DailyActionDVS(tmp_path)


# ---------------------------------------------------------------- HAR-DVS


def test_hardvs_frames(tmp_path: Path) -> None:
    grey = [np.full((4, 6), 10 * i) for i in range(8)]
    for i, pixels in enumerate(grey):
        write_png(tmp_path / "rawframes" / "a" / f"img_{i:05d}.png", pixels)
    for i in range(10):
        write_png(tmp_path / "rawframes" / "b" / f"img_{i:05d}.png", np.full((5, 3, 3), [i, 100, 200]))
    (tmp_path / "train_label.txt").write_text("rawframes/a 8 3\nrawframes/b 10 299\n")
    (tmp_path / "test_label.txt").write_text("rawframes/b 10 0\n")
    train = HARDVS(tmp_path, split="train")
    assert train.labels.tolist() == [3, 299] and len(train.classes) == 300 and train.classes[0] == "Action001"
    frames, label = train[0]
    assert label == 3 and frames.dtype == torch.float32 and frames.shape == (8, 1, 4, 6)
    assert torch.allclose(frames[:, 0, 0, 0], torch.tensor([10.0 * i / 255 for i in range(8)]))
    frames, label = train[1]
    assert frames.shape == (8, 3, 5, 3)
    # 10 frames sampled at floor((i + 0.5) * 10 / 8) = 0, 1, 3, 4, 5, 6, 8, 9
    assert (frames[:, 0, 0, 0] * 255).round().tolist() == [0, 1, 3, 4, 5, 6, 8, 9]
    assert torch.allclose(frames[0, 2], torch.full((5, 3), 200 / 255))
    assert len(HARDVS(tmp_path, split="test")) == 1
    with pytest.raises(AsaSnnError, match=r"val_label\.txt"):
        HARDVS(tmp_path, split="val")
    (tmp_path / "HARDVS_300_class.txt").write_text(
        "".join(f"Action{i:03d} thing {i}\n" for i in range(1, 301))
    )
    assert HARDVS(tmp_path).classes[299] == "Action300 thing 300"
    (tmp_path / "HARDVS_300_class.txt").write_text("Action001 only\n")
    with pytest.raises(InputFormatError, match=r"HARDVS_300_class\.txt: 1 class names, expected 300"):
        HARDVS(tmp_path)


def test_hardvs_label_out_of_range_and_empty(tmp_path: Path) -> None:
    (tmp_path / "train_label.txt").write_text("a 8 3\nb 8 300\n")
    with pytest.raises(
        InputFormatError, match=r"train_label\.txt:2: label 300 out of range; expected .* 0\.\.299"
    ):
        HARDVS(tmp_path)
    (tmp_path / "test_label.txt").write_text("\n")
    with pytest.raises(AsaSnnError, match="no samples found for split 'test'"):
        HARDVS(tmp_path, split="test")


# ---------------------------------------------------------------- EventFolder


def make_folder(root: Path) -> dict[str, EventStream]:
    streams = {
        "rec/a.npz": EventStream(events(7, (20, 10, 2), 0), (20, 10, 2), "a"),
        "rec/b.h5": EventStream(events(9, (20, 10, 2), 1), (20, 10, 2), "b"),
        "c.npz": EventStream(events(4, (30, 30, 2), 2), (30, 30, 2), "c"),
    }
    (root / "rec").mkdir(parents=True)
    for name, stream in streams.items():
        (write_hdf5 if name.endswith(".h5") else write_numpy)(stream, root / name)
    (root / "labels.csv").write_text("file,label,split\nrec/a.npz,1,train\nrec/b.h5,0,test\nc.npz,2,train\n")
    return streams


def test_event_folder(tmp_path: Path) -> None:
    streams = make_folder(tmp_path)
    everything = EventFolder(tmp_path)
    assert everything.labels.tolist() == [1, 0, 2] and everything.classes == ["0", "1", "2"]
    assert everything.sensor_size is None and everything[2][0].sensor_size == (30, 30, 2)
    train = EventFolder(tmp_path, split="train")
    assert train.files == [str(tmp_path / "rec" / "a.npz"), str(tmp_path / "c.npz")]
    stream, label = EventFolder(tmp_path, split="test")[0]
    assert label == 0 and np.array_equal(stream.events, streams["rec/b.h5"].events)
    wide = EventFolder(tmp_path, split="train", sensor_size=(64, 48, 2))
    assert wide.sensor_size == (64, 48, 2) and wide[0][0].sensor_size == (64, 48, 2)
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    assert EventFolder(tmp_path).classes == ["cat", "dog", "bird"]


def test_event_folder_bad_rows(tmp_path: Path) -> None:
    make_folder(tmp_path)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(
        InputFormatError, match=r"labels\.csv:4: label 2 out of range; expected an integer in 0\.\.1"
    ):
        EventFolder(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\nrec/a.npz,1\nmissing.npz,0\n")
    with pytest.raises(InputFormatError, match=r"labels\.csv:3: file 'missing\.npz' does not exist"):
        EventFolder(tmp_path)
    with pytest.raises(AsaSnnError, match="no 'split' column"):
        EventFolder(tmp_path, split="train")
    (tmp_path / "labels.csv").write_text("file,label\n")
    with pytest.raises(AsaSnnError, match=r"(?s)EventFolder: no samples found .*labels\.csv"):
        EventFolder(tmp_path)


# ---------------------------------------------------------------- shared bad input


@pytest.mark.parametrize(
    ("factory", "layout_hint"),
    [
        (lambda root: NMNIST(root), "Train/<digit 0-9>"),
        (lambda root: DVSGesture(root), "trials_to_train.txt"),
        (lambda root: DVSGait(root), "train_data.npy"),
        (lambda root: DailyActionDVS(root), "<root>/climb/*.aedat"),
        (lambda root: HARDVS(root), "train_label.txt"),
        (lambda root: EventFolder(root), "labels.csv"),
    ],
)
def test_missing_root_names_folder_and_layout(tmp_path: Path, factory, layout_hint: str) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(AsaSnnError) as info:
        factory(root)
    message = str(info.value)
    assert f"{root} does not exist" in message and "expected layout" in message and layout_hint in message


def test_download_pages_are_named_not_used(tmp_path: Path) -> None:
    with pytest.raises(AsaSnnError, match=r"available from https://research\.ibm\.com.*never downloads"):
        DVSGesture(tmp_path)


@pytest.mark.parametrize("cls", [NMNIST, DVSGesture, DVSGait, DailyActionDVS, HARDVS])
def test_unknown_split(tmp_path: Path, cls) -> None:
    with pytest.raises(AsaSnnError, match="unknown split 'validation'; expected one of 'train'"):
        cls(tmp_path, split="validation")


def test_empty_class_folders_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "climb").mkdir()
    with pytest.raises(AsaSnnError, match="does not hold the expected files"):
        DailyActionDVS(tmp_path)


# ---------------------------------------------------------------- split_indices


def test_split_indices_is_stratified_and_deterministic() -> None:
    labels = np.array([0] * 10 + [1] * 20 + [2] * 5 + [3])
    train, val = split_indices(labels, 0.2, seed=3)
    assert np.bincount(labels[val], minlength=4).tolist() == [
        2,
        4,
        1,
        0,
    ]  # round(0.2 n), class 3 keeps its one
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    again_train, again_val = split_indices(labels, 0.2, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(val, split_indices(labels, 0.2, seed=4)[1])
    assert split_indices(labels, 0.0)[1].size == 0


def test_split_indices_rejects_bad_arguments() -> None:
    with pytest.raises(AsaSnnError, match=r"val_fraction=1\.0"):
        split_indices(np.array([0, 1]), 1.0)
    with pytest.raises(InputFormatError, match="1-D integer array"):
        split_indices(np.array([0.5, 1.0]), 0.5)
