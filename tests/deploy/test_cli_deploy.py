"""The budget and deploy commands: exit status gates, files written, one-line errors."""

import json
from pathlib import Path

from asa_snn.cli import main
from asa_snn.convert.graph import save_graph

EXAMPLE = Path(__file__).resolve().parents[2] / "asa_snn" / "workflows" / "examples" / "speck_budget.toml"


def test_budget_command_passes_then_fails(speck, tmp_path, capsys):
    save_graph(speck, tmp_path / "graph")
    args = ["budget", str(tmp_path / "graph"), "--data", "builtin:synthetic:3"]
    loose = tmp_path / "loose.toml"
    loose.write_text(
        "[network]\nfiring_rate = 1.0\nspikes_per_inference = 1e9\n[layers.fc]\nfiring_rate = 1.0\n"
    )
    assert main([*args, "--budget", str(loose), "--out", str(tmp_path / "ok")]) == 0
    assert json.loads((tmp_path / "ok" / "budget.json").read_text())["ok"] is True
    tight = tmp_path / "tight.toml"
    tight.write_text("[network]\nspikes_per_inference = 0\n")
    capsys.readouterr()
    assert main([*args, "--budget", str(tight), "--out", str(tmp_path / "fail")]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_shipped_example_budget_is_valid():
    from asa_snn.workflows.budget import load_budget

    budget = load_budget(EXAMPLE)
    assert budget.network["firing_rate"] == 0.15


def test_budget_file_with_unknown_key_is_one_line(speck, tmp_path, capsys):
    save_graph(speck, tmp_path / "graph")
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nspike_rate = 0.1\n")
    assert main(["budget", str(tmp_path / "graph"), "--budget", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "spike_rate" in err and "bad.toml" in err


def test_deploy_speck_dry_run_and_loihi_fallback(speck, loihi, tmp_path, capsys):
    save_graph(speck, tmp_path / "speck")
    assert main(["deploy", "speck", str(tmp_path / "speck"), "--dry-run", "--out", str(tmp_path / "s")]) == 0
    assert "conv1" in capsys.readouterr().out
    assert (tmp_path / "s" / "deploy_speck.json").is_file()
    save_graph(loihi, tmp_path / "loihi")
    assert main(["deploy", "loihi", str(tmp_path / "loihi"), "--out", str(tmp_path / "l")]) == 0
    report = json.loads((tmp_path / "l" / "deploy_loihi.json").read_text())
    assert report["runtime"] == "builtin" and "Python 3.10" in report["reason"]
    assert (tmp_path / "l" / "network.net").is_file()


def test_deploy_speck_without_samna_says_so(speck, tmp_path, capsys):
    save_graph(speck, tmp_path / "speck")
    assert main(["deploy", "speck", str(tmp_path / "speck"), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "samna" in err and "Traceback" not in err
