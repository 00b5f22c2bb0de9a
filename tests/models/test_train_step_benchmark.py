"""benchmarks/train_step.py: its device mode runs end to end on the CPU; CUDA is refused where absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=600, check=False
    )


def test_device_mode_on_the_cpu_times_each_entry_at_the_requested_shape(tmp_path):
    out = tmp_path / "step.json"
    entries = ("asa-snn (asa2)", "relu (batched)")
    run = _run(
        "--device", "cpu", "--steps-T", "2", "--batch", "1", "--quick", "--only", *entries, "--out", str(out)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["batch"] == 1
    measured = report["by_T"]["2"]
    assert measured["input_shape_TBCHW"] == [2, 1, 2, 32, 32]
    rows = measured["summary"]["entries"]
    assert set(rows) == set(entries)
    assert rows["relu (batched)"]["time_over_floor"] == 1.0
    for name in entries:
        assert len(measured["raw"][name]["times_s"]) == 2
        assert rows[name]["median_s"] > 0 and rows[name]["peak_increase_mib"] >= 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_mode_is_refused_with_one_message_where_there_is_no_cuda(tmp_path):
    out = tmp_path / "step.json"
    run = _run("--device", "cuda", "--out", str(out))
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--device: 'cuda' requested but this machine has no CUDA device" in lines[0]
    assert not out.exists()


IN_PROCESS = SCRIPT.parent / "in_process.py"


def test_in_process_comparison_reports_each_entry_against_the_first_and_names_unknown_ones():
    def run(*arguments: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(IN_PROCESS), *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)

    done = run("asa-snn (none)", "asa-snn (asa2, Y whole)", "--rounds", "1", "--threads", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["asa-snn (none)", "asa-snn (asa2, Y whole)"]
    assert lines[0].endswith("x first 1.000") and float(lines[1].split()[-1]) > 0
    refused = run("asa-snn (nothing)", "--rounds", "1")
    assert refused.returncode == 2 and "unknown entries ['asa-snn (nothing)']" in refused.stderr
