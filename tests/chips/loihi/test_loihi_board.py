"""Loihi deployment: netx export, Lava where it imports, the built-in simulator's results otherwise."""

import json

import pytest

from asa_snn.chips.loihi.board import deploy_loihi, loihi_extension_reason
from asa_snn.chips.loihi.lava_backend import lava_unavailable_reason
from asa_snn.chips.loihi.netx_export import read_netx
from asa_snn.chips.loihi.simulator import LoihiSimulator
from asa_snn.simulators.compare import load_recording

LAVA_MISSING = lava_unavailable_reason()


@pytest.mark.skipif(LAVA_MISSING is None, reason="Lava imports here: the fallback path is not taken")
def test_fallback_reports_why_and_the_builtin_results(loihi, tmp_path):
    report = deploy_loihi(loihi, out_dir=tmp_path)
    assert report.runtime == "builtin" and report.lava is None and report.agrees is None
    assert "Python 3.10" in report.reason and "asa-snn[lava]" in report.reason
    _, frames = load_recording(loihi, None)
    expected = LoihiSimulator().run(loihi, frames)
    assert report.builtin == {name: int(c.sum()) for name, c in expected.spike_counts.items()}
    assert report.predictions == expected.predictions().tolist()
    assert report.latency_steps == 2  # two dense synapse layers, one step each
    netx = read_netx(tmp_path / "network.net")
    assert [layer.kind for layer in netx.layers] == ["input", "flatten", "dense", "dense"]
    document = json.loads((tmp_path / "deploy_loihi.json").read_text())
    assert document["runtime"] == "builtin" and document["builtin"] == report.builtin
    assert "Python 3.10" in report.summary()


@pytest.mark.skipif(LAVA_MISSING is None, reason="Lava imports here: the fallback path is not taken")
def test_hardware_request_without_lava_says_what_is_missing(loihi):
    report = deploy_loihi(loihi, hardware=True)
    assert report.runtime == "builtin" and report.netx_path is None
    assert "lava-loihi" in report.reason and "Python 3.10" in report.reason


@pytest.mark.skipif(LAVA_MISSING is not None, reason=f"Lava is not importable here: {LAVA_MISSING}")
def test_lava_run_matches_the_builtin_simulator(loihi, tmp_path):
    report = deploy_loihi(loihi, out_dir=tmp_path)
    assert report.runtime == "lava-sim" and report.agrees is True


def test_loihi_extension_detected_from_metadata():
    from importlib import metadata

    try:
        metadata.distribution("lava-loihi")
    except metadata.PackageNotFoundError:
        reason = loihi_extension_reason()
        assert "lava-loihi" in reason and "Loihi system" in reason
    else:
        assert loihi_extension_reason() is None


def test_deploy_writes_a_whole_folder_and_refuses_one_it_did_not_write(loihi, tmp_path):
    from asa_snn.errors import AsaSnnError

    out = tmp_path / "deployed"
    out.mkdir()
    (out / "network.net").write_text("my own network\n")
    with pytest.raises(AsaSnnError, match=r"deployed.*not an asa-snn output folder"):
        deploy_loihi(loihi, out_dir=out)
    assert (out / "network.net").read_text() == "my own network\n"
    ours = tmp_path / "ours"
    report = deploy_loihi(loihi, out_dir=ours)
    assert sorted(p.name for p in ours.iterdir()) == [".asa-snn-output", "deploy_loihi.json", "network.net"]
    assert report.netx_path == str(ours / "network.net") and read_netx(ours / "network.net").layers
    deploy_loihi(loihi, out_dir=ours)  # asa-snn's own folder: replaced whole, nothing left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deployed", "ours"]
