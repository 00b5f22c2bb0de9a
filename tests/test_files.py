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
