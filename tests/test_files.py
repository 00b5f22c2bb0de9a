"""replace_folder: the new folder takes the place of the old one, nothing is left beside it."""

import pytest

from asa_snn.errors import AsaSnnError
from asa_snn.files import OUTPUT_MARKER, replace_folder, staged_folder


def test_replace_folder_swaps_in_the_new_content(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    replace_folder(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_folder_creates_a_missing_target(tmp_path):
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "a.txt").write_text("a")
    replace_folder(staging, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_text() == "a" and not staging.exists()


def test_staged_folder_appears_whole_and_replaces_its_own_earlier_output(tmp_path):
    target = tmp_path / "out"
    with staged_folder(target) as staging:
        (staging / "a.txt").write_text("first")
    with staged_folder(target) as staging:
        assert not target.joinpath("b.txt").exists()
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_folder_leaves_the_old_output_when_the_block_fails(tmp_path):
    target = tmp_path / "out"
    with staged_folder(target) as staging:
        (staging / "a.txt").write_text("kept")
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_folder_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    expected = f"{tmp_path}.*not an asa-snn output folder"
    with pytest.raises(AsaSnnError, match=expected), staged_folder(tmp_path):
        pass
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with staged_folder(tmp_path / "empty") as staging:
        (staging / "x").write_text("1")
    assert (tmp_path / "empty" / "x").exists()


# ---- leftovers, claims, locks, links (issue 13)


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_remove_stale_removes_only_leftovers_of_dead_processes_of_this_host(tmp_path):
    import os

    from asa_snn.files import HOST, remove_stale

    dead, alive = _dead_pid(), os.getpid()
    names = {
        f".last.safetensors.{dead}.tmp": False,  # older runs' checkpoint temp: dead -> removed
        f".log.jsonl.{dead}-{HOST}.0badf00d.tmp": False,
        f".log.jsonl.{alive}-{HOST}.0badf00d.tmp": True,  # a live writer's file stays
        f".log.jsonl.{dead}-ffffffff.0badf00d.tmp": HOST != "ffffffff",  # another machine's: stays
        "notes.tmp": True,
        ".hidden": True,
    }
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / f".out.staging.{dead}-{HOST}.0badf00d").mkdir()
    (tmp_path / f".out.staging.{alive}-{HOST}.0badf00d").mkdir()
    removed = remove_stale(tmp_path)
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {n for n, stays in names.items() if stays} | {f".out.staging.{alive}-{HOST}.0badf00d"}
    assert len(removed) == 3 + (HOST == "ffffffff")


def test_staged_folder_cleans_up_after_a_killed_run_and_restores_its_old_output(tmp_path):
    from asa_snn.files import HOST

    dead = _dead_pid()
    target = tmp_path / "out"
    # killed between moving the old output aside and moving the new one in
    aside = tmp_path / f".out.old.{dead}-{HOST}.0badf00d"
    (aside / "previous").mkdir(parents=True)
    (aside / "previous" / OUTPUT_MARKER).touch()
    (aside / "previous" / "a.txt").write_text("old output")
    (tmp_path / f".out.staging.{dead}-{HOST}.12345678").mkdir()  # killed while staging
    with pytest.raises(RuntimeError), staged_folder(target):
        raise RuntimeError("this run fails too")
    assert (target / "a.txt").read_text() == "old output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_claim_folder_marks_new_and_empty_folders_and_refuses_others(tmp_path):
    from asa_snn.files import claim_folder

    claim_folder(tmp_path / "new")
    assert (tmp_path / "new" / OUTPUT_MARKER).is_file()
    (tmp_path / "empty").mkdir()
    claim_folder(tmp_path / "empty")
    assert (tmp_path / "empty" / OUTPUT_MARKER).is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(AsaSnnError, match=r"mine.*not an asa-snn output folder"):
        claim_folder(tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]
    claim_folder(tmp_path / "mine", adopt=lambda folder: True)
    assert (tmp_path / "mine" / OUTPUT_MARKER).is_file()


def test_folder_lock_is_exclusive_and_names_its_holder(tmp_path):
    import os
    import socket

    from asa_snn.files import folder_lock

    with folder_lock(tmp_path):
        with pytest.raises(AsaSnnError) as info, folder_lock(tmp_path):
            pass
        message = str(info.value)
        assert "\n" not in message and str(tmp_path) in message
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "started" in message
    with folder_lock(tmp_path):  # released
        pass


def test_atomic_writes_replace_a_symlink_instead_of_following_it(tmp_path):
    from asa_snn.files import write_bytes, write_json

    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "log.jsonl").symlink_to(outside)
    (folder / "result.json").symlink_to(outside)
    write_bytes(folder / "log.jsonl", "new\n")
    write_json({"a": 1}, folder / "result.json")
    assert outside.read_text() == "precious"
    assert not (folder / "log.jsonl").is_symlink() and (folder / "log.jsonl").read_text() == "new\n"
    assert not (folder / "result.json").is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == ["log.jsonl", "result.json"]
