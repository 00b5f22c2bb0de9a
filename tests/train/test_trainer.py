"""Training on synthetic data: learning, the log, bit-exact resume, torchrun data parallelism, N-MNIST."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asa_snn.train import load_config, load_model, train
from asa_snn.train.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]
NMNIST_ROOT = REPO.parent / "shared" / "data" / "nmnist"
FIELDS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_nasfr", "lr", "seconds"}


def test_training_learns_and_logs_every_epoch(tiny_config_file, tmp_path):
    config = load_config(tiny_config_file)
    result = train(config, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(set(r) >= FIELDS for r in records)
    assert records[-1]["val_accuracy"] >= 0.75  # chance is 1/3 (3 classes, 12 validation samples)
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert all(0 < r["val_nasfr"] < 1 for r in records)
    assert records[0]["lr"] == pytest.approx(1e-2)
    # cosine from 1e-2 to 1e-3 over 3 epochs: epoch 2 starts at 1e-3 + 9e-3 * (1 + cos(pi/3)) / 2
    assert records[1]["lr"] == pytest.approx(1e-3 + 9e-3 * 0.75)
    assert records[0]["train_shard_sizes"] == [36] and records[0]["train_samples_seen"] == 36
    assert result.best_val_accuracy == max(r["val_accuracy"] for r in records)
    assert result.best_epoch == 1 + [r["val_accuracy"] for r in records].index(result.best_val_accuracy)
    assert result.test_samples == 12 and result.test_accuracy > 0.5
    _, metadata = load_model(tmp_path / "run" / "best.safetensors")
    assert metadata["epoch"] == result.best_epoch
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    assert summary["test_accuracy"] == result.test_accuracy


def test_same_seed_same_run_and_resume_is_bit_exact(tiny_config_file, tmp_path):
    config = load_config(tiny_config_file)
    train(config, tmp_path / "full", progress=False)
    interrupted = tmp_path / "interrupted"
    _run_two_of_three(tiny_config_file, interrupted)
    train(config, interrupted, resume=True, progress=False)
    full = load_file(tmp_path / "full" / "last.safetensors")
    resumed = load_file(interrupted / "last.safetensors")
    assert full.keys() == resumed.keys()
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    full_log = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    resumed_log = (interrupted / "log.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in full_log]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in resumed_log]


def _run_two_of_three(config_file, out_dir):
    """Train epochs 1-2 of the 3-epoch schedule: a 3-epoch run interrupted (KeyboardInterrupt) in epoch 3."""
    import asa_snn.train.trainer as trainer

    calls = {"n": 0}
    original = trainer.to_time_major

    def interrupt_in_third_epoch(frames):
        calls["n"] += 1
        if calls["n"] > 2 * 5 + 2 * 2:  # 5 training + 2 validation batches per epoch
            raise KeyboardInterrupt
        return original(frames)

    trainer.to_time_major = interrupt_in_third_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            train(load_config(config_file), out_dir, progress=False)
    finally:
        trainer.to_time_major = original
    _, metadata = read_checkpoint(out_dir / "last.safetensors")
    assert metadata["epoch"] == 2


def test_torchrun_two_processes_shard_the_data(tiny_config_file, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "asa_snn.train", str(tiny_config_file), str(out), "train.epochs=2", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["train_shard_sizes"] == [18, 18] and r["train_samples_seen"] == 36 for r in records)
    _, metadata = load_model(out / "last.safetensors")
    assert metadata["epoch"] == 2 and (out / "best.safetensors").is_file()
    assert not list(out.glob(".*.tmp"))


def test_module_entry_point_reports_errors_on_one_line(tiny_config_file, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "asa_snn.train",
            str(tiny_config_file),
            str(tmp_path / "o"),
            "model.network=nope",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "model.network" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(
    not (NMNIST_ROOT / "train" / "labels.txt").is_file(), reason="../shared/data/nmnist is absent"
)
def test_short_nmnist_run_from_shared_data(tmp_path):
    from importlib.resources import files

    config = load_config(
        files("asa_snn.configs") / "nmnist_small.toml",
        [
            f"data.root={json.dumps(str(NMNIST_ROOT))}",
            "data.max_samples=200",
            "train.epochs=1",
            "model.network_options={channels = [4, 8, 8]}",
        ],
    )
    result = train(config, tmp_path / "nmnist", progress=False)
    assert result.test_samples == 40  # 20 % of 200, stratified over 10 digits
    assert 0.0 <= result.test_accuracy <= 1.0
    # 160 left after the test part; per-class rounding of 10 % puts 18 of them in validation
    assert result.history[0]["train_samples_seen"] == 142
