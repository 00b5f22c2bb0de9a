"""replace_folder: the new folder takes the place of the old one, nothing is left beside it."""

from asa_snn.files import replace_folder


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
