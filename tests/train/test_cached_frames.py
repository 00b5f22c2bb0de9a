"""Training from the on-disk frame cache: the same frames as computing them, a changed setting or an
edited recording binned again, augmentation still drawn per epoch, workers and DDP."""

import json
import os
import shutil
import signal
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from real_data import DATA
from safetensors.torch import load_file

from asa_snn.cli import main
from asa_snn.train import load_config, train
from asa_snn.train.data import build_data, fill_cache

REPO = Path(__file__).resolve().parents[2]
NMNIST = DATA / "nmnist" / "train"
RECIPE = files("asa_snn.configs") / "nmnist_small.toml"


def _small_nmnist(tmp_path: Path, count: int = 40) -> Path:
    """A copy of the first ``count`` shared N-MNIST recordings with their labels (skip when absent)."""
    if not (NMNIST / "labels.txt").is_file():
        pytest.skip(f"real recordings {NMNIST} are not available")
    root = tmp_path / "nmnist"
    (root / "train").mkdir(parents=True)
    lines = (NMNIST / "labels.txt").read_text().splitlines()
    keep = lines[1 : count + 1]
    for line in keep:
        shutil.copy(NMNIST / f"{line.split()[0]}.bs2", root / "train")
    (root / "train" / "labels.txt").write_text("\n".join([lines[0], *keep]) + "\n")
    return root


def _nmnist_config(root: Path, cache: Path | None, *extra: str):
    overrides = [f"data.root={json.dumps(str(root))}", "data.test_fraction=0.25", "data.val_fraction=0.4"]
    overrides += extra
    if cache is not None:
        overrides.append(f"data.cache_dir={json.dumps(str(cache))}")
    return load_config(RECIPE, overrides)


def _frames(part, keys) -> list[np.ndarray]:
    return [part[key][0].numpy() for key in keys]


def test_cached_frames_equal_computed_ones_and_a_changed_setting_is_binned_again(tmp_path):
    root, cache = _small_nmnist(tmp_path), tmp_path / "cache"
    for dt_us in (30000, 20000):
        cached = build_data(_nmnist_config(root, cache, f"data.dt_us={dt_us}"))
        plain = build_data(_nmnist_config(root, None, f"data.dt_us={dt_us}"))
        keys = range(len(cached.val))
        first = _frames(cached.val, keys)  # computes and stores
        again = _frames(cached.val, keys)  # reads the stored entries
        expected = _frames(plain.val, keys)
        assert all(
            np.array_equal(a, b) and np.array_equal(b, c)
            for a, b, c in zip(first, again, expected, strict=True)
        )
        assert all(cached.val.cache.path_for(cached.val.base.files[i]).is_file() for i in cached.val.indices)
        if dt_us == 30000:
            old = expected
    assert any(not np.array_equal(a, b) for a, b in zip(old, expected, strict=True))
    assert len({p.name for p in cache.iterdir()}) == 2  # one namespace per setting


def test_an_edited_recording_is_binned_again(tmp_path):
    root, cache = _small_nmnist(tmp_path), tmp_path / "cache"
    data = build_data(_nmnist_config(root, cache))
    before = data.test[0][0].numpy()
    recording = Path(data.test.base.files[int(data.test.indices[0])])
    raw = recording.read_bytes()
    recording.write_bytes(raw[: (len(raw) // 10) * 5])  # keep the first fifth of the 5-byte events
    after = build_data(_nmnist_config(root, cache)).test[0][0].numpy()
    assert np.array_equal(after, build_data(_nmnist_config(root, None)).test[0][0].numpy())
    assert after.sum() < before.sum()


def test_augmentation_is_drawn_per_epoch_after_the_cache(tmp_path):
    root, cache = _small_nmnist(tmp_path), tmp_path / "cache"
    augment = ("data.event_drop=true", "data.random_crop=true", "data.dt_us=20000")
    cached = build_data(_nmnist_config(root, cache, *augment))
    plain = build_data(_nmnist_config(root, None, *augment))
    for part in (cached.train, plain.train):
        part.augment_seed = 0
    keys = [(epoch, i) for epoch in (0, 1) for i in range(4)]
    got, expected = _frames(cached.train, keys), _frames(plain.train, keys)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    assert all(not np.array_equal(got[i], got[i + 4]) for i in range(4))  # epoch 0 vs epoch 1
    events = cached.train.cache.path_for(cached.train.base.files[int(cached.train.indices[0])], "events")
    assert events.is_file()
    assert not np.array_equal(got[0], _frames(cached.train, [0])[0])  # the plain item is not augmented


def test_cache_command_fills_every_entry(tmp_path, capsys):
    root, cache = _small_nmnist(tmp_path), tmp_path / "cache"
    overrides = [f"data.root={json.dumps(str(root))}", "data.test_fraction=0.25", "data.val_fraction=0.4"]
    assert main(["cache", str(RECIPE), *overrides, "--cache-dir", str(cache), "--workers", "1"]) == 0
    assert "cached" in capsys.readouterr().out
    data = build_data(_nmnist_config(root, cache))
    stored = {p.name for p in cache.rglob("*.npy")}
    for part in (data.train, data.val, data.test):
        assert all(part.cache.path_for(part.base.files[i]).name in stored for i in part.indices)
    assert len(stored) == len(data.train) + len(data.val) + len(data.test)
    assert fill_cache(data) == {"train": len(data.train), "val": len(data.val), "test": len(data.test)}


def test_training_from_the_cache_with_workers_repeats_plain_training(tiny_config_file, tmp_path):
    augment = ["data.event_drop=true", "train.epochs=2"]
    train(load_config(tiny_config_file, [*augment, "train.workers=0"]), tmp_path / "plain", progress=False)
    cached = [*augment, "train.workers=2", f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}"]
    train(load_config(tiny_config_file, cached), tmp_path / "cached", progress=False)
    plain, other = (load_file(tmp_path / name / "last.safetensors") for name in ("plain", "cached"))
    assert plain.keys() == other.keys() and all(torch.equal(plain[k], other[k]) for k in plain)
    assert list((tmp_path / "cache").rglob("*.npy"))


def test_torchrun_with_cache_and_workers(tiny_config_file, tmp_path):
    out, cache = tmp_path / "ddp", tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "asa_snn.train", str(tiny_config_file), str(out), "train.epochs=1"]
    command += ["train.workers=1", "data.event_drop=true", f"data.cache_dir={json.dumps(str(cache))}"]
    command += ["--no-progress"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun, both ranks and their DataLoader workers
        process.communicate()
        pytest.fail("torchrun with 2 ranks, cache and workers did not finish within 300 s")
    assert process.returncode == 0, stderr[-2000:]
    record = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert record["train_shard_sizes"] == [18, 18] and record["train_samples_seen"] == 36
    assert list(cache.rglob("*.npy")) and not list(cache.rglob("*.tmp"))
