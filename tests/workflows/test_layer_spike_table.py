"""The per-layer spike table that fold's and import's fidelity.md share."""

from asa_snn.workflows.fidelity_report import layer_spike_table


def test_one_row_per_layer_with_each_stage_and_the_change():
    layers = {
        "conv0": {"neurons": 512, "1 live": 100.0, "3 chip": 90.0, "change": -0.1},
        "fc1": {"neurons": 10, "1 live": 4.25, "3 chip": 4.25, "change": None},
    }
    stages = ["1 live", "3 chip"]
    lines = layer_spike_table("Spikes per sample", layers, stages, "change", "(1)->(3)")
    assert lines[:4] == ["", "## Spikes per sample", "", "| layer | neurons | 1 live | 3 chip | (1)->(3) |"]
    assert lines[4] == "|---|---|---|---|---|"
    assert lines[5] == "| conv0 | 512 | 100.0 | 90.0 | -10.0 % |"
    assert lines[6] == "| fc1 | 10 | 4.2 | 4.2 | n/a |"
    assert len(lines) == 7
