"""Devices, precision, torchrun backends, workers, progress and TensorBoard of the trainer."""

import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors import safe_open

from asa_snn.errors import AsaSnnError
from asa_snn.train import load_config, load_model, save_checkpoint, train
from asa_snn.train.distributed import backend_for, process_device
from asa_snn.train.metrics import evaluate
from asa_snn.train.run import load_run
from asa_snn.train.trainer import (
    TENSORBOARD,
    check_scale_settings,
    default_workers,
    epoch_progress,
    settings_changes,
)

REPO = Path(__file__).resolve().parents[2]
TWO_GPUS = torch.cuda.is_available() and torch.cuda.device_count() >= 2


def test_bf16_autocast_trains_on_the_cpu(tiny_config_file, tmp_path):
    config = load_config(tiny_config_file, ["train.epochs=1", "train.precision=bf16", "train.device=cpu"])
    result = train(config, tmp_path / "bf16", progress=False)
    assert math.isfinite(result.history[0]["train_loss"]) and 0 < result.history[0]["val_nasfr"] < 1
    plain = train(load_config(tiny_config_file, ["train.epochs=1"]), tmp_path / "fp32", progress=False)
    assert result.history[0]["train_loss"] != plain.history[0]["train_loss"]  # autocast really ran
    with safe_open(tmp_path / "bf16" / "last.safetensors", "pt") as file:
        assert all(file.get_tensor(k).dtype != torch.bfloat16 for k in file.keys())  # noqa: SIM118 (safe_open has no __iter__)


def test_settings_a_device_cannot_honour_are_refused(tiny_config_file, tmp_path):
    cpu = torch.device("cpu")
    with pytest.raises(AsaSnnError, match="16-mixed' needs a CUDA device"):
        train(load_config(tiny_config_file, ["train.precision=16-mixed", "train.device=cpu"]), tmp_path / "a")
    config = load_config(tiny_config_file, ["train.sync_batchnorm=true"])
    with pytest.raises(AsaSnnError, match="sync_batchnorm = true needs CUDA"):
        check_scale_settings(config, cpu, distributed=True)
    check_scale_settings(config, cpu, distributed=False)  # one process: nothing to synchronize
    with pytest.raises(AsaSnnError, match=r"'train\.device' has value 'gpu'"):
        load_config(tiny_config_file, ["train.device=gpu"])
    assert load_config(tiny_config_file, ["train.precision=32"]).train.precision == "32"
    assert not (tmp_path / "a" / "last.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_gpu_config_loads_here_and_is_refused_only_when_training(tiny_config_file, tmp_path):
    config = load_config(tiny_config_file, ["train.device=cuda:3"])  # a GPU checkpoint's config loads
    with pytest.raises(AsaSnnError, match=r"train\.device: 'cuda:3' requested but this machine has"):
        train(config, tmp_path / "gpu")


def test_checkpoints_hold_cpu_tensors_and_load_on_the_cpu(tiny_config_file, tmp_path):
    config = load_config(tiny_config_file, ["train.epochs=1"])
    train(config, tmp_path / "run", progress=False)
    with safe_open(tmp_path / "run" / "last.safetensors", "pt", device="cpu") as file:
        assert all(file.get_tensor(k).device.type == "cpu" for k in file.keys())  # noqa: SIM118 (safe_open has no __iter__)
    model, metadata = load_model(tmp_path / "run" / "best.safetensors")
    assert {t.device.type for t in model.state_dict().values()} == {"cpu"}
    # a checkpoint of a GPU run: its config names a device this machine may lack, and still loads here
    gpu_config = json.loads(json.dumps(metadata["config"]))
    gpu_config["train"]["device"] = "cuda:3"
    save_checkpoint(tmp_path / "gpu.safetensors", model, config.model, {**metadata, "config": gpu_config})
    run = load_run(tmp_path / "gpu.safetensors")
    assert run.config.train.device == "cuda:3" and len(run.data.test) == 12
    assert {t.device.type for t in run.model.state_dict().values()} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_a_cuda_run_writes_a_checkpoint_that_loads_on_the_cpu(tiny_config_file, tmp_path):
    config = load_config(tiny_config_file, ["train.epochs=1", "train.device=cuda"])
    train(config, tmp_path / "cuda", progress=False)
    model, _ = load_model(tmp_path / "cuda" / "best.safetensors")
    assert {t.device.type for t in model.state_dict().values()} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_a_cuda_epoch_follows_the_cpu_epoch_and_low_precision_runs(tiny_config_file, tmp_path):
    cpu = train(load_config(tiny_config_file, ["train.epochs=1"]), tmp_path / "cpu", progress=False)
    on_cuda = load_config(tiny_config_file, ["train.epochs=1", "train.device=cuda"])
    cuda = train(on_cuda, tmp_path / "cuda", progress=False)
    # the same seed, data order and fused kernels: the losses differ only by float32 reduction order
    assert cuda.history[0]["train_loss"] == pytest.approx(cpu.history[0]["train_loss"], rel=2e-3)
    for precision in ("bf16", "16-mixed"):
        overrides = ["train.epochs=1", "train.device=cuda", f"train.precision={precision}"]
        low = train(load_config(tiny_config_file, overrides), tmp_path / precision, progress=False)
        assert math.isfinite(low.history[0]["train_loss"]) and 0 < low.history[0]["val_nasfr"] < 1
        # autocast really ran: CUDA accumulates in float32, so the spikes (and the loss) may agree,
        # but the membranes, surrogate gradients and hence the trained weights do not
        assert not _same_weights(tmp_path / precision, tmp_path / "cuda")


def _same_weights(run_a: Path, run_b: Path) -> bool:
    with safe_open(run_a / "last.safetensors", "pt") as a, safe_open(run_b / "last.safetensors", "pt") as b:
        return all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())  # noqa: SIM118


def test_resume_may_change_device_workers_and_logging(tiny_config_file, tmp_path):
    stored = load_config(tiny_config_file).to_dict()
    current = load_config(
        tiny_config_file,
        ["train.device=cpu", "train.workers=3", "train.tensorboard=true", "data.cache_dir=c"],
    ).to_dict()
    assert settings_changes(stored, current) == []
    stored["train"]["precision"] = "bf16"
    assert settings_changes(stored, current) == ['train.precision "bf16" -> "32"']
    train(
        load_config(tiny_config_file, ["train.epochs=1", "train.workers=0"]), tmp_path / "r", progress=False
    )
    resumed = load_config(tiny_config_file, ["train.epochs=2", "train.workers=1", "train.device=cpu"])
    assert train(resumed, tmp_path / "r", resume=True, progress=False).epochs == 2


def test_devices_backends_and_workers():
    assert process_device("cpu") == torch.device("cpu")
    assert backend_for(torch.device("cpu")) == "gloo" and backend_for(torch.device("cuda", 0)) == "nccl"
    cores = len(os.sched_getaffinity(0))
    assert default_workers(1) == max(0, min(8, cores - 1))
    assert default_workers(cores) == 0


def test_progress_shows_samples_per_second_on_a_terminal_only(tiny_config_file, tmp_path, capsys):
    terminal = io.StringIO()
    bar = epoch_progress(Console(file=terminal, force_terminal=True, width=120))
    with bar:
        task = bar.add_task("epoch 1/3", total=64)
        bar.advance(task, 16)
        time.sleep(0.05)  # a second sample later in time: rich estimates the speed from two
        bar.advance(task, 16)
        bar.refresh()
    assert "samples/s" in terminal.getvalue() and "32/64" in terminal.getvalue()
    train(load_config(tiny_config_file, ["train.epochs=1"]), tmp_path / "p", progress=True)
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "samples/s" not in out  # not a terminal: the summary line only


def test_evaluation_reports_per_layer_firing_rates(tiny_config_file, tmp_path):
    train(load_config(tiny_config_file, ["train.epochs=1"]), tmp_path / "e", progress=False)
    model, _ = load_model(tmp_path / "e" / "best.safetensors")
    frames = torch.rand(3, 4, 2, 16, 16).round()
    from asa_snn.train.metrics import MseRate

    result = evaluate(model, [(frames, torch.tensor([0, 1, 2]))], MseRate(), torch.device("cpu"))
    assert result.layer_rates and all(0 <= rate <= 1 for rate in result.layer_rates.values())
    assert min(result.layer_rates.values()) <= result.nasfr <= max(result.layer_rates.values())


def test_tensorboard_logs_every_quantity_beside_the_log(tiny_config_file, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(load_config(tiny_config_file, ["train.epochs=2", "train.tensorboard=true"]), tmp_path / "t", False)
    events = EventAccumulator(str(tmp_path / "t" / TENSORBOARD))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "nasfr/val", "lr"} <= tags
    assert any(tag.startswith("firing_rate/blocks.") for tag in tags)
    assert [event.step for event in events.Scalars("lr")] == [1, 2]
    assert (tmp_path / "t" / "log.jsonl").is_file()


def test_tensorboard_requested_without_the_package_is_one_clear_error(
    tiny_config_file, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as where it is not installed
    config = load_config(tiny_config_file, ["train.tensorboard=true"])
    with pytest.raises(AsaSnnError, match=r"pip install 'asa-snn\[tensorboard\]'"):
        train(config, tmp_path / "tb", progress=False)
    assert not (tmp_path / "tb").exists()


@pytest.mark.skipif(not TWO_GPUS, reason="needs two CUDA devices (NCCL data parallelism)")
def test_torchrun_on_two_gpus_with_nccl_and_synchronized_batch_norm(tiny_config_file, tmp_path):
    out = tmp_path / "nccl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "asa_snn.train", str(tiny_config_file), str(out), "train.epochs=2", "train.device=cuda"]
    command += ["train.sync_batchnorm=true", "train.workers=1", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(r["train_shard_sizes"] == [18, 18] for r in records)
    model, _ = load_model(out / "best.safetensors")
    assert {t.device.type for t in model.state_dict().values()} == {"cpu"}


def test_the_commands_refuse_a_device_this_machine_lacks_on_one_line(tmp_path, capfd):
    from asa_snn.cli import main

    assert main(["demo", "--device", "gpu", "--out", str(tmp_path / "demo")]) == 1
    assert "demo --device: 'gpu' is not a device" in capfd.readouterr().err
    assert main(["analyze", str(tmp_path / "none.safetensors"), "--device", "tpu"]) == 1
    assert "analyze --device: 'tpu' is not a device" in capfd.readouterr().err
    assert not (tmp_path / "demo").exists()
