"""Training against hostile and broken situations (issue 13): the output folder contract, one run
at a time, leftovers of killed runs, checkpoint and log as one commit, changed settings on resume,
non-finite training, class counts, checkpoint reads racing a writer."""

import itertools
import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch

import asa_snn.train.trainer as trainer
from asa_snn.errors import AsaSnnError
from asa_snn.files import HOST, OUTPUT_MARKER, folder_lock
from asa_snn.train import load_config, train
from asa_snn.train.checkpoint import read_checkpoint
from tests.train.test_trainer import _run_two_of_three


def _epochs(folder):
    return [json.loads(line)["epoch"] for line in (folder / "log.jsonl").read_text().splitlines()]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def _without_seconds(folder):
    lines = (folder / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


# ---- 1. the output folder contract


def test_a_folder_asa_snn_did_not_write_is_refused_untouched(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "thesis.tex").write_text("\\documentclass{article}\n")
    (out / "result.json").write_text('{"mine": true}\n')
    with pytest.raises(AsaSnnError, match=rf"{out}.*not an asa-snn output folder"):
        train(load_config(tiny_config_file, ["train.epochs=1"]), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["result.json", "thesis.tex"]
    assert (out / "result.json").read_text() == '{"mine": true}\n'


def test_new_and_empty_folders_are_marked_and_a_rerun_replaces_the_old_run(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    config = load_config(tiny_config_file, ["train.epochs=1"])
    train(config, out, progress=False)
    assert (out / OUTPUT_MARKER).is_file()
    (out / "stale.txt").write_text("from an earlier run")
    train(config, out, progress=False)  # asa-snn's folder: replaced
    assert not (out / "stale.txt").exists() and _epochs(out) == [1]


def test_symlinks_in_the_folder_are_replaced_never_followed(tiny_config_file, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    out = tmp_path / "run"
    _run_two_of_three(tiny_config_file, out)
    for name in ("log.jsonl", "result.json"):
        (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(outside)
    train(load_config(tiny_config_file), out, resume=True, progress=False)
    assert outside.read_text() == "precious\n"
    assert not (out / "log.jsonl").is_symlink() and _epochs(out) == [1, 2, 3]
    assert (
        not (out / "result.json").is_symlink()
        and json.loads((out / "result.json").read_text())["epochs"] == 3
    )


def test_resume_without_a_checkpoint_creates_nothing(tiny_config_file, tmp_path):
    with pytest.raises(AsaSnnError, match=r"last\.safetensors does not exist"):
        train(load_config(tiny_config_file), tmp_path / "run", resume=True, progress=False)
    assert not (tmp_path / "run").exists()


# ---- 2. one run at a time


def test_a_second_run_into_a_locked_folder_fails_naming_the_holder(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    config = load_config(tiny_config_file, ["train.epochs=1"])
    train(config, out, progress=False)
    before = (out / "log.jsonl").read_bytes()
    with folder_lock(out), pytest.raises(AsaSnnError) as info:
        train(config, out, progress=False)
    message = str(info.value)
    assert "\n" not in message and str(out) in message and "another asa-snn train" in message
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "started" in message
    assert (out / "log.jsonl").read_bytes() == before


def test_the_lock_holds_across_processes(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / OUTPUT_MARKER).touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from asa_snn.files import folder_lock\n"
            f"with folder_lock({str(out)!r}):\n    print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AsaSnnError, match=rf"pid {holder.pid} on host"):
            train(load_config(tiny_config_file, ["train.epochs=1"]), out, progress=False)
    finally:
        holder.communicate("", timeout=30)
    assert sorted(p.name for p in out.iterdir()) == [".asa-snn-output", ".asa-snn.lock"]


# ---- 4. leftovers of killed runs


def test_leftovers_of_a_killed_run_are_removed_by_the_next_one(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    _run_two_of_three(tiny_config_file, out)
    dead = _dead_pid()
    leftovers = [f".last.safetensors.{dead}.tmp", f".log.jsonl.{dead}-{HOST}.0badf00d.tmp"]
    for name in leftovers:
        (out / name).write_bytes(b"half a file")
    train(load_config(tiny_config_file), out, resume=True, progress=False)
    assert not any((out / name).exists() for name in leftovers)
    assert not list(out.glob(".*.tmp"))


# ---- 5. checkpoint and log are one commit


def test_a_kill_between_checkpoint_and_log_loses_no_epoch(tiny_config_file, tmp_path):
    config = load_config(tiny_config_file)
    train(config, tmp_path / "full", progress=False)
    out = tmp_path / "run"
    _run_two_of_three(tiny_config_file, out)
    # the state a kill leaves after last.safetensors (epoch 2) was replaced, before the log line
    log = out / "log.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")
    assert read_checkpoint(out / "last.safetensors")[1]["epoch"] == 2 and _epochs(out) == [1]
    result = train(config, out, resume=True, progress=False)
    assert _epochs(out) == [1, 2, 3] and result.epochs == 3
    assert json.loads((out / "result.json").read_text())["epochs"] == 3
    assert _without_seconds(out) == _without_seconds(tmp_path / "full")


def test_a_log_cut_in_its_last_line_is_rebuilt_on_resume(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    _run_two_of_three(tiny_config_file, out)
    log = out / "log.jsonl"
    text = log.read_text()
    log.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # half of the last line
    train(load_config(tiny_config_file), out, resume=True, progress=False)
    assert _epochs(out) == [1, 2, 3]


def test_a_kill_while_the_log_is_written_loses_nothing(tiny_config_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = trainer._write_log

    def killed_at_epoch_two(folder, history):
        if len(history) == 2:
            raise KeyboardInterrupt
        original(folder, history)

    monkeypatch.setattr(trainer, "_write_log", killed_at_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(tiny_config_file), out, progress=False)
    monkeypatch.setattr(trainer, "_write_log", original)
    assert _epochs(out) == [1] and read_checkpoint(out / "last.safetensors")[1]["epoch"] == 2
    train(load_config(tiny_config_file), out, resume=True, progress=False)
    assert _epochs(out) == [1, 2, 3]


# ---- 6. changed settings on resume


def test_more_epochs_on_resume_continue_the_decay_and_never_raise_the_rate(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    train(load_config(tiny_config_file, ["train.epochs=2"]), out, progress=False)
    train(load_config(tiny_config_file, ["train.epochs=4"]), out, resume=True, progress=False)
    rates = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(rates) == 4 and rates[:2] == pytest.approx([1e-2, 1e-3 + 9e-3 * 0.5])
    assert rates[2:] == pytest.approx([1e-3, 1e-3])  # the finished schedule stays at lr_min


def test_more_epochs_after_an_interrupted_run_decay_from_where_it_stopped(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    _run_two_of_three(tiny_config_file, out)  # 3-epoch schedule, 2 epochs done
    train(load_config(tiny_config_file, ["train.epochs=5"]), out, resume=True, progress=False)
    rates = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]
    start = 1e-3 + 9e-3 * (1 + math.cos(2 * math.pi / 3)) / 2  # where the 3-epoch cosine stood
    expected = [1e-3 + (start - 1e-3) * (1 + math.cos(math.pi * i / 3)) / 2 for i in range(3)]
    assert rates[2:] == pytest.approx(expected)
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert read_checkpoint(out / "last.safetensors")[1]["epoch"] == 5


def test_changed_settings_on_resume_are_refused_naming_each(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    _run_two_of_three(tiny_config_file, out)
    before = (out / "last.safetensors").read_bytes()
    changed = load_config(tiny_config_file, ["optim.lr=0.001", "train.batch_size=4"])
    with pytest.raises(AsaSnnError) as info:
        train(changed, out, resume=True, progress=False)
    message = str(info.value)
    assert "\n" not in message and "optim.lr 0.01 -> 0.001" in message
    assert "train.batch_size 8 -> 4" in message and "train.epochs" in message
    assert (out / "last.safetensors").read_bytes() == before
    with pytest.raises(AsaSnnError, match=r"2 epochs done, train\.epochs = 1"):
        train(load_config(tiny_config_file, ["train.epochs=1"]), out, resume=True, progress=False)


# ---- 7. non-finite training and class counts


def test_a_non_finite_loss_stops_with_epoch_and_batch_and_keeps_the_last_good_checkpoint(
    tiny_config_file, tmp_path, monkeypatch
):
    from torch import nn

    calls = {"n": 0}

    class PoisonedLoss(nn.MSELoss):
        def forward(self, scores, labels):
            calls["n"] += 1
            loss = nn.functional.mse_loss(scores.softmax(1), nn.functional.one_hot(labels, 3).float())
            # 5 training + 2 validation batches per epoch: call 10 is epoch 2, batch 3
            return loss * float("nan") if calls["n"] == 7 + 3 else loss

    monkeypatch.setitem(trainer.LOSS_FUNCTIONS, "mse_rate", PoisonedLoss)
    out = tmp_path / "run"
    with pytest.raises(AsaSnnError) as info:
        train(load_config(tiny_config_file), out, progress=False)
    message = str(info.value)
    assert "\n" not in message and "nan in epoch 2, batch 3" in message and "keeps epoch 1" in message
    _, metadata = read_checkpoint(out / "last.safetensors")
    assert metadata["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in read_checkpoint(out / "last.safetensors")[0].values())
    assert _epochs(out) == [1] and not (out / "result.json").exists()


@pytest.mark.parametrize(
    ("classes", "expected"), [(10, r"num_classes = 10 .*only 3 classes"), (2, r"num_classes = 2 .*3 classes")]
)
def test_num_classes_unlike_the_data_is_refused_before_training(
    tiny_config_file, tmp_path, classes, expected
):
    config = load_config(tiny_config_file, [f"model.num_classes={classes}", "train.epochs=1"])
    with pytest.raises(AsaSnnError, match=expected):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_extra_classes_can_be_allowed_explicitly(tiny_config_file, tmp_path):
    config = load_config(tiny_config_file, ["model.num_classes=4", "train.epochs=1"])
    result = train(config, tmp_path / "run", progress=False, allow_unused_classes=True)
    assert result.epochs == 1
