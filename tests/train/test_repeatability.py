"""A training run repeats bit for bit on the same machine and thread count (README "Training").

Two short runs of the tiny synthetic config (tests/conftest.py TINY, 2 epochs) into two folders, one
in this process and one in a fresh interpreter, must write byte-identical weights and the same log
records except their timings. A variant with ASA attention, dropout and EventDrop covers the
randomized paths the speck net does not use.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from asa_snn.train import load_config, train

REPO = Path(__file__).resolve().parents[2]
TIMINGS = {"seconds"}
VARIANTS = {
    "speck_net": ["train.epochs=2"],
    "arch_a_asa1_event_drop": [
        "train.epochs=2",
        "model.network=arch_a",
        "model.attention=asa1",
        "model.network_options={ first_channels = 4, channels = 8, hidden = 16 }",
        "data.random_crop=true",
        "data.event_drop=true",
        "data.event_drop_random=true",
        "data.event_drop_ratios=[0.5, 0.5, 0.5]",
        "data.dt_us=40000",
    ],
}


def _tensors(path: Path) -> dict[str, bytes]:
    return {key: tensor.numpy().tobytes() for key, tensor in load_file(path).items()}


def _records(out_dir: Path) -> list[dict]:
    lines = (out_dir / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in lines]


def _in_subprocess(config_file: Path, out_dir: Path, overrides: list[str]) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different hash seed: set order must not matter
    subprocess.run(
        [sys.executable, "-m", "asa_snn.train", str(config_file), str(out_dir), *overrides, "--no-progress"],
        check=True,
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_two_runs_write_identical_weights_and_logs(tiny_config_file, tmp_path, variant):
    overrides = VARIANTS[variant]
    first, second = tmp_path / "first", tmp_path / "second"
    train(load_config(tiny_config_file, overrides), first, progress=False)
    _in_subprocess(tiny_config_file, second, overrides)
    for name in ("last.safetensors", "best.safetensors"):
        a, b = _tensors(first / name), _tensors(second / name)
        assert a.keys() == b.keys()
        differing = sorted(key for key in a if a[key] != b[key])
        assert not differing, f"{name}: tensors differ between two runs: {differing}"
    assert len(_records(first)) == 2
    assert _records(first) == _records(second)
