"""The command line: help, data inspect, one-line errors."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asa_snn.cli import main
from asa_snn.data.events import EventStream, make_events
from asa_snn.data.formats import write_numpy

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def small_recording(tmp_path):
    events = make_events(
        t=np.array([0, 1000, 2000, 500_000]),
        x=np.array([0, 1, 2, 3]),
        y=np.array([3, 2, 1, 0]),
        p=np.array([1, 0, 1, 1]),
    )
    path = tmp_path / "rec.npz"
    write_numpy(EventStream(events, (4, 4, 2)), path)
    return path


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("data", "demo"):
        assert command in out


def test_console_script_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "asa_snn.cli", "data", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "inspect" in result.stdout


_REPORT_ALLOCATOR = """
import os, sys
from asa_snn.cli import main
status = main(["model-info", "speck_net", "--timesteps", "4", "--input", "2,32,32", "--classes", "10"])
import torch
big = torch.ones(64 * 2**20 // 4)
with open("/proc/self/smaps_rollup") as handle:
    huge_kib = [int(line.split()[1]) for line in handle if line.startswith("AnonHugePages")][0]
print(status, os.environ.get("THP_MEM_ALLOC_ENABLE"), huge_kib, file=sys.stderr)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages are Linux-only")
@pytest.mark.parametrize("preset", [None, "0"])
def test_cli_backs_large_tensors_with_huge_pages_unless_the_user_says_no(preset):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    run = subprocess.run([sys.executable, "-c", _REPORT_ALLOCATOR], env=env, capture_output=True, text=True)
    status, setting, huge_kib = run.stderr.split()[-3:]
    assert status == "0"
    assert setting == (preset or "1")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mode = thp.read_text() if thp.exists() else "[never]"
    if preset is None and "[never]" not in mode:
        assert int(huge_kib) >= 32 * 1024
    if preset == "0" and "[madvise]" in mode:
        assert int(huge_kib) < 32 * 1024


def test_inspect_prints_the_summary_and_writes_a_png(small_recording, tmp_path, capsys):
    preview = tmp_path / "out" / "preview.png"
    assert main(["data", "inspect", str(small_recording), "--preview", str(preview), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "npz"
    assert summary["events"] == 4
    assert summary["sensor_size"] == [4, 4, 2]
    assert summary["duration_us"] == 500_000
    assert summary["rate_hz"] == pytest.approx(4 / 0.5)
    assert summary["polarity_counts"] == [1, 3]
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["preview"] == str(preview)


def test_inspect_writes_nothing_without_preview(small_recording, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = sorted(tmp_path.rglob("*"))
    assert main(["data", "inspect", str(small_recording)]) == 0
    assert main(["data", "inspect", str(small_recording), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["preview"] is None
    assert "│ preview" not in out[: out.index("{")]  # no preview row in the table
    assert sorted(tmp_path.rglob("*")) == before  # no <stem>_preview.png in the working folder


def test_inspect_writes_the_preview_only_where_told(small_recording, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["data", "inspect", str(small_recording), "--preview", "look.png"]) == 0
    assert "look.png" in capsys.readouterr().out
    assert [p.name for p in work.iterdir()] == ["look.png"]
    assert (work / "look.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_help_says_nothing_is_written_by_default():
    result = subprocess.run(
        [sys.executable, "-m", "asa_snn.cli", "data", "inspect", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    assert "nothing is written without it" in result.stdout
    assert "current folder" not in result.stdout


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_inspect_real_aedat4(tmp_path, capsys):
    path = SHARED_DATA / "aedat4" / "davis346_sample.aedat4"
    assert main(["data", "inspect", str(path), "--preview", str(tmp_path / "p.png"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["events"] == 6676
    assert summary["sensor_size"] == [346, 260, 2]


def test_corrupt_file_gives_one_line_and_nonzero_exit(tmp_path, capsys):
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"\x01\x02\x03\x04\x05\x06\x07")
    assert main(["data", "inspect", str(bad), "--preview", str(tmp_path / "p.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error:") and "broken.bin" in err
    assert not (tmp_path / "p.png").exists()


def test_missing_file_is_one_line(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "nope.aedat4")]) == 1
    err = capsys.readouterr().err
    assert "nope.aedat4" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"\x01\x02\x03")
    with pytest.raises(Exception, match=r"broken\.bin"):
        main(["--debug", "data", "inspect", str(bad)])


def test_model_info_prints_the_paper_parameter_count(capsys):
    args = [
        "model-info",
        "arch_a",
        "--attention",
        "asa1",
        "--timesteps",
        "60",
        "--input",
        "2,32,32",
        "--classes",
        "11",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "total parameters: 2,334,445" in out  # 2,323,531 + 10,914
    assert "blocks.1.attention" in out
    # MACs beside the parameters, never truncated on piped (80-column) output
    assert "…" not in out and "2,097,408" in out and "4,529,848,320" in out
    assert "attention MACs per sample: 7,628,544" in out
    assert "paper Table 3: +2.6M" in out and "NOT reproduced" in out and "convention:" in out


def test_model_info_bad_input_shape_is_one_line(capsys):
    assert main(["model-info", "arch_a", "--input", "2,32"]) == 1
    assert "--input must be 3 comma-separated integers" in capsys.readouterr().err


def test_train_then_analyze_from_the_command_line(tiny_config_file, tmp_path, capsys):
    runs = tmp_path / "runs"
    for attention in ("none", "asa2"):
        args = ["train", str(tiny_config_file), f"model.attention={attention}", "train.epochs=2"]
        assert main([*args, "--out", str(runs / attention)]) == 0
        assert (runs / attention / "best.safetensors").is_file()
    assert "test accuracy" in capsys.readouterr().out
    report = tmp_path / "report"
    args = [
        "analyze",
        str(runs / "none" / "best.safetensors"),
        "--compare",
        str(runs / "asa2" / "best.safetensors"),
    ]
    options = ["--feature-steps", "0,1", "--feature-layers", "blocks.1.neuron", "--mpd", "current"]
    assert main([*args, "--out", str(report), "--max-samples", "8", *options, "--hist-range", "-3,2"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["models"]) == {"none", "asa2"}
    assert "| NASFR (paper, Def. 1) |" in (report / "report.md").read_text()
    assert "figures/none_mpd_blocks.1.neuron_t1.png" in metrics["figures"]
    assert metrics["models"]["none"]["mpd_quantity"] == "current"
    assert metrics["models"]["none"]["layers"]["blocks.1.neuron"]["histogram_range"][0] < 0

    folded = tmp_path / "folded"
    checkpoint = str(runs / "asa2" / "best.safetensors")
    assert (
        main(
            [
                "fold",
                checkpoint,
                "--target",
                "speck",
                "--finetune",
                "0",
                "--n-calib",
                "8",
                "--lr",
                "0.05",
                "--test-samples",
                "20",
                "--out",
                str(folded),
            ]
        )
        == 0
    )
    fidelity = json.loads((folded / "fidelity.json").read_text())
    assert fidelity["tuning"]["tune"]["lr"] == 0.05
    assert (folded / "graph.json").is_file() and (folded / "fidelity.md").is_file()
    stages = [stage["stage"] for stage in fidelity["stages"]]
    assert stages[0] == "1 live attention" and stages[-1].startswith("3 quantized, speck")
    assert all(stage["samples"] == fidelity["test_samples"] == 20 for stage in fidelity["stages"])
    assert main(["check", str(folded), "--target", "speck"]) == 0
    assert main(["simulate", str(folded), "--backend", "sinabs", "--data", "builtin:synthetic:4"]) == 0


def test_train_with_unknown_recipe_names_the_shipped_ones(capsys):
    assert main(["train", "no_such_recipe"]) == 1
    err = capsys.readouterr().err
    assert "no_such_recipe" in err and "synthetic_speck" in err


# ---------------------------------------------------------------- every failure is one line


@pytest.fixture
def graph_dir(tmp_path):
    from graph_builders import speck_graph

    from asa_snn.convert.graph import save_graph

    return str(save_graph(speck_graph(), tmp_path / "graph"))


def fail_with(monkeypatch, raiser):
    """Make ``asa-snn check`` call ``raiser`` instead of loading the graph."""
    monkeypatch.setattr("asa_snn.convert.graph.load_graph", lambda folder: raiser())


def one_error_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_usage_errors_are_one_short_line(capfd):
    assert main(["check", "--frobnicate"]) == 2
    assert one_error_line(capfd) == "error: No such option: --frobnicate (see 'asa-snn check --help')"
    assert main(["simulate", "g", "--max-samples", "many"]) == 2
    assert "'--max-samples'" in one_error_line(capfd)


def test_unreadable_input_is_exit_1_naming_the_file(tmp_path, capfd):
    locked = tmp_path / "locked.npz"
    locked.write_bytes(b"PK")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip(
                "running as root: every file is readable (tests/test_hostile_corpus.py drops the right)"
            )
        assert main(["data", "inspect", str(locked)]) == 1
        assert one_error_line(capfd) == f"error: {locked}: not readable (permission denied)"
    finally:
        locked.chmod(0o600)


def test_multi_line_library_message_is_one_line(monkeypatch, capfd):
    from asa_snn.errors import AsaSnnError

    def raiser():
        raise AsaSnnError("graph.json is odd:\n  layer 1: bad\n\n  layer 2: worse")

    fail_with(monkeypatch, raiser)
    assert main(["check", "g"]) == 1
    assert one_error_line(capfd) == "error: graph.json is odd: layer 1: bad layer 2: worse"


def test_very_long_message_is_cut(monkeypatch, capfd):
    from asa_snn.errors import AsaSnnError

    def raiser():
        raise AsaSnnError("value " + "a" * 3_000_000)

    fail_with(monkeypatch, raiser)
    assert main(["check", "g"]) == 1
    line = one_error_line(capfd)
    assert len(line) < 2100 and line.endswith("[3,000,006 characters in all]")


def test_unexpected_exception_is_an_internal_error(monkeypatch, capfd):
    def raiser():
        raise ValueError("boom\nsecond line")

    fail_with(monkeypatch, raiser)
    assert main(["check", "g"]) == 1
    line = one_error_line(capfd)
    assert (
        line == "error: internal error: ValueError: boom second line (rerun with --debug for the traceback)"
    )
    with pytest.raises(ValueError, match="boom"):
        main(["--debug", "check", "g"])


def test_memory_error_says_what_was_too_large(monkeypatch, capfd):
    def numpy_style():
        raise MemoryError(
            "Unable to allocate 954. GiB for an array with shape (128000000000,) and data type int64"
        )

    fail_with(monkeypatch, numpy_style)
    assert main(["check", "g"]) == 1
    assert one_error_line(capfd) == (
        "error: out of memory: Unable to allocate 954. GiB for an array with shape (128000000000,) "
        "and data type int64"
    )

    def bare(path="/data/huge.h5"):
        raise MemoryError

    fail_with(monkeypatch, bare)
    assert main(["check", "g"]) == 1
    assert (
        one_error_line(capfd) == "error: out of memory: /data/huge.h5: an allocation in test_cli.bare failed"
    )


def test_safetensors_error_names_the_file(monkeypatch, tmp_path, capfd):
    from safetensors.numpy import save_file

    target = tmp_path / "gone" / "best.safetensors"  # its folder is missing: the Rust writer fails
    fail_with(monkeypatch, lambda: save_file({"w": np.zeros(3)}, str(target)))
    assert main(["check", "g"]) == 1
    line = one_error_line(capfd)
    assert line.startswith(f"error: {target}: safetensors: Error while serializing")


def test_hdf5_runtime_error_is_an_input_error(monkeypatch, capfd):
    message = "Can't decrement id ref count (file write failed: errno = 28)"
    code = f"def close(self):\n    raise RuntimeError({message!r})\n"
    namespace = {"__name__": "h5py._objects"}  # raised from h5py's code, as a RuntimeError
    exec(compile(code, "h5py/_objects.pyx", "exec"), namespace)

    class File:
        filename = "/runs/deploy/network.net"
        close = namespace["close"]

    fail_with(monkeypatch, lambda: File().close())
    assert main(["check", "g"]) == 1
    assert one_error_line(capfd) == (
        "error: /runs/deploy/network.net: HDF5: Can't decrement id ref count (file write failed: errno = 28)"
    )


def test_decoder_panic_is_one_line_and_its_native_message_is_held(monkeypatch, tmp_path, capfd):
    writers = str(Path(__file__).parent / "data")
    if writers not in sys.path:
        sys.path.insert(0, writers)
    from hostile_writers import aedat4_bytes

    aedat = pytest.importorskip("aedat")
    path = tmp_path / "panic.aedat4"
    path.write_bytes(aedat4_bytes(346, 260, [b""]))  # the flatbuffers crate asserts on it

    def decode():
        return list(aedat.Decoder(path))  # no reader guarding it: the PanicException escapes

    fail_with(monkeypatch, decode)
    monkeypatch.setenv("RUST_BACKTRACE", "0")
    assert main(["check", "g"]) == 1
    line = one_error_line(capfd)  # Rust's panic hook wrote three lines to fd 2: held and dropped
    assert line.startswith(f"error: {path}: a native decoder crashed (test_cli.decode): assertion failed")


def test_native_stderr_is_shown_after_success(small_recording, tmp_path, monkeypatch, capfd):
    from asa_snn.data import preview

    render = preview.render_preview

    def noisy(*args, **kwargs):
        os.write(2, b"native library notice\n")
        return render(*args, **kwargs)

    monkeypatch.setattr(preview, "render_preview", noisy)
    assert main(["data", "inspect", str(small_recording), "--preview", str(tmp_path / "p.png")]) == 0
    assert capfd.readouterr().err == "native library notice\n"


def test_keyboard_interrupt_is_one_line(monkeypatch, capfd):
    def raiser():
        raise KeyboardInterrupt

    fail_with(monkeypatch, raiser)
    assert main(["check", "g"]) == 130
    assert capfd.readouterr().err == "error: interrupted\n"


_SLOW_SIMULATE = """
import signal, sys, time
# Ctrl-C as a terminal delivers it: a runner started in the background of a non-interactive
# shell ignores SIGINT, and an ignored signal stays ignored across exec
signal.signal(signal.SIGINT, signal.default_int_handler)
import asa_snn.workflows.simulate as simulate
def slow(*args, **kwargs):
    print("ready", flush=True)
    time.sleep(60)
simulate.simulate_summary = slow
from asa_snn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_in_a_child_is_one_line_and_status_130(graph_dir):
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SIMULATE, "simulate", graph_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert err.splitlines() == ["error: interrupted"]


def test_bare_synthetic_warns_on_one_line(graph_dir, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "asa_snn.cli", "simulate", graph_dir, "--data", "synthetic:2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [
        "warning: data 'synthetic:2' is deprecated: write 'builtin:synthetic:2' "
        "(a file or folder named 'synthetic:2' would be read instead)"
    ]
    assert "2 samples" in run.stdout


def test_simulate_defaults_to_the_builtin_data(graph_dir, capsys):
    assert main(["simulate", graph_dir, "--max-samples", "3"]) == 0
    assert "3 samples" in capsys.readouterr().out
    assert main(["simulate", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "builtin:synthetic[:N]" in help_text and "labels.csv" in help_text
    assert "recipe name" in help_text
    assert main(["budget", "--help"]) == 0
    assert "labels.csv" in capsys.readouterr().out
