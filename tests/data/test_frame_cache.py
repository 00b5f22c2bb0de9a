"""The on-disk frame cache: computed once, memory-mapped, keyed by setting and file, no pickle, safe
under concurrent writers."""

import multiprocessing
import os

import numpy as np
import pytest

from asa_snn.data.frame_cache import FrameCache, source_identity
from asa_snn.errors import AsaSnnError

SETTING = {"spec": {"dt_us": 1000, "n_steps": 4}}


def _maker(values: np.ndarray, calls: list[int]):
    def make() -> np.ndarray:
        calls.append(1)
        return values

    return make


def test_an_entry_is_computed_once_and_read_back_memory_mapped(tmp_path):
    cache = FrameCache.for_setting(tmp_path / "cache", SETTING)
    frames = np.arange(4 * 2 * 3 * 3, dtype=np.float32).reshape(4, 2, 3, 3)
    calls: list[int] = []
    first = cache.fetch("sample-0", _maker(frames, calls))
    second = cache.fetch("sample-0", _maker(frames + 1, calls))
    assert len(calls) == 1
    assert isinstance(second, np.memmap) and not second.flags.writeable
    assert np.array_equal(first, frames) and np.array_equal(second, frames)
    assert cache.path_for("sample-0").is_file()
    assert not list(cache.folder.rglob("*.tmp"))


def test_a_changed_setting_or_stage_never_reads_another_entry(tmp_path):
    calls: list[int] = []
    old = FrameCache.for_setting(tmp_path, SETTING)
    new = FrameCache.for_setting(tmp_path, {"spec": {"dt_us": 2000, "n_steps": 4}})
    assert old.folder != new.folder
    old.fetch("a", _maker(np.zeros(3, np.float32), calls))
    assert np.array_equal(new.fetch("a", _maker(np.ones(3, np.float32), calls)), np.ones(3))
    assert old.path_for("a", "frames") != old.path_for("a", "events")
    assert len(calls) == 2
    with pytest.raises(AsaSnnError, match="stage 'pixels' unknown"):
        old.path_for("a", "pixels")


def test_an_edited_recording_is_a_new_key(tmp_path):
    recording = tmp_path / "r.bin"
    recording.write_bytes(b"12345")
    cache = FrameCache.for_setting(tmp_path / "cache", SETTING)
    before = cache.path_for(str(recording))
    identity = source_identity(f"{recording}#2")
    assert identity["size"] == 5 and identity["path"] == str(recording.resolve())
    recording.write_bytes(b"1234567")
    assert cache.path_for(str(recording)) != before
    os.utime(recording, ns=(1, 1))
    touched = cache.path_for(str(recording))
    os.utime(recording, ns=(2, 2))
    assert cache.path_for(str(recording)) != touched
    assert source_identity("synthetic:train:3") == {"id": "synthetic:train:3"}


def test_a_pickled_or_cut_entry_is_recomputed_not_unpickled(tmp_path):
    cache = FrameCache.for_setting(tmp_path, SETTING)
    path = cache.path_for("x")
    path.parent.mkdir(parents=True)
    np.save(path, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    calls: list[int] = []
    good = np.full((2, 2), 7, np.float32)
    assert np.array_equal(cache.fetch("x", _maker(good, calls)), good) and calls == [1]
    path.write_bytes(path.read_bytes()[:-8])  # cut short: not a whole .npy
    assert np.array_equal(cache.fetch("x", _maker(good, calls)), good) and calls == [1, 1]


def test_an_entry_of_the_wrong_shape_is_replaced(tmp_path):
    cache = FrameCache.for_setting(tmp_path, SETTING)
    calls: list[int] = []
    cache.fetch("x", _maker(np.zeros((3, 3), np.float32), calls))
    fixed = cache.fetch("x", _maker(np.zeros((4, 4), np.float32), calls), accept=lambda a: a.shape == (4, 4))
    assert fixed.shape == (4, 4) and len(calls) == 2


def test_objects_are_refused_and_a_file_is_not_a_cache_folder(tmp_path):
    cache = FrameCache.for_setting(tmp_path, SETTING)
    with pytest.raises(AsaSnnError, match="Python objects"):
        cache.fetch("o", lambda: np.array([object()]))
    (tmp_path / "file").write_text("x")
    with pytest.raises(AsaSnnError, match="not a folder"):
        FrameCache.for_setting(tmp_path / "file", SETTING)


def _fill(root: str, seed: int, queue) -> None:
    cache = FrameCache.for_setting(root, SETTING)
    values = np.arange(50_000, dtype=np.float32)
    for index in range(20):
        array = cache.fetch(f"item-{(index + seed) % 20}", lambda: values + 0)
        assert np.array_equal(array, values)
    queue.put(seed)


def test_concurrent_writers_leave_whole_entries(tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_fill, args=(str(tmp_path), seed, queue)) for seed in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    assert sorted(queue.get(timeout=5) for _ in workers) == [0, 1, 2, 3]
    cache = FrameCache.for_setting(tmp_path, SETTING)
    assert len(list(cache.folder.rglob("*.npy"))) == 20
    assert not list(cache.folder.rglob("*.tmp"))
