"""The streaming pass (batching invariance, bad input) and the end-to-end analysis on two tiny models."""

import json

import numpy as np
import pytest
import torch

from asa_snn.analysis.recorder import measure
from asa_snn.analysis.report import analyze, fmt
from asa_snn.data.synthetic import SyntheticDVS, SyntheticDVSConfig
from asa_snn.errors import AsaSnnError
from asa_snn.models.registry import ModelSpec, build_model

CONFIG = SyntheticDVSConfig(sensor_size=(16, 16, 2), n_steps=4, n_classes=2)
LAYERS = ["blocks.0.neuron", "blocks.1.neuron", "blocks.2.neuron", "blocks.3.neuron"]


@pytest.fixture(scope="module")
def dataset():
    return SyntheticDVS(16, CONFIG, "test")


def _model(attention="none", seed=0):
    torch.manual_seed(seed)
    return build_model(ModelSpec("speck_net", attention, timesteps=4, input_shape=(2, 16, 16), num_classes=2))


def test_streaming_in_several_batches_equals_one_batch(dataset):
    model = _model()
    whole = measure(
        model, dataset, batch_size=10, max_samples=10, masks=dataset.foreground_masks, progress=False
    )
    parts = measure(
        model, dataset, batch_size=3, max_samples=10, masks=dataset.foreground_masks, progress=False
    )
    assert list(whole.layers) == LAYERS and whole.n_samples == 10
    for name in LAYERS:
        a, b = whole.layers[name], parts.layers[name]
        np.testing.assert_array_equal(a.fired, b.fired)
        np.testing.assert_array_equal(a.hist, b.hist)
        for field in ("spikes", "mem_sum", "mem_sq", "qe_sum"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        whole.layers[LAYERS[0]].background_spikes, parts.layers[LAYERS[0]].background_spikes
    )
    assert whole.layers[LAYERS[3]].background_spikes is None  # 1 x 1 classifier map: no spatial analysis
    for name, synapse in whole.synapses.items():
        np.testing.assert_allclose(synapse.input_sum, parts.synapses[name].input_sum)
    assert whole.layers[LAYERS[0]].hist.sum() == 10 * 4 * 8 * 16 * 16  # every membrane value binned once


def test_layer_selection_and_bad_requests(dataset):
    model = _model()
    chosen = measure(model, dataset, batch_size=4, max_samples=4, layers=["blocks.1.neuron"], progress=False)
    assert list(chosen.layers) == ["blocks.1.neuron"]
    with pytest.raises(AsaSnnError, match=r"blocks\.9\.neuron.*blocks\.0\.neuron, blocks\.1\.neuron"):
        measure(model, dataset, layers=["blocks.9.neuron"], progress=False)
    with pytest.raises(AsaSnnError, match=r"max_samples=17.*holds 16"):
        measure(model, dataset, max_samples=17, progress=False)
    wrong = SyntheticDVS(2, SyntheticDVSConfig(sensor_size=(32, 32, 2), n_steps=4, n_classes=2))
    with pytest.raises(AsaSnnError, match=r"\(2, 16, 16\).*\(4, 2, 32, 32\)"):
        measure(model, wrong, progress=False)


def test_nan_membrane_values_are_counted_and_reported(dataset, tmp_path):
    model = _model()
    frames, label = dataset[0]
    frames = frames.clone()
    frames[0, 0, 8, 8] = float("nan")  # reaches 3 x 3 positions x 8 channels of layer 0 and stays (IAF)
    measured = measure(model, [(frames, label)], batch_size=1, progress=False)
    assert measured.layers[LAYERS[0]].nonfinite == 9 * 8 * 4
    metrics = analyze(model, [(frames, label)], tmp_path / "nan", batch_size=1, progress=False)
    assert metrics["models"]["vanilla"]["layers"][LAYERS[0]]["nonfinite_membrane"] == 288
    assert np.isfinite(metrics["models"]["vanilla"]["layers"][LAYERS[0]]["qe"])
    assert "WARNING (vanilla)" in (tmp_path / "nan" / "report.md").read_text()


def test_analyze_two_models_end_to_end(dataset, tmp_path):
    out = tmp_path / "report"
    metrics = analyze(
        _model("none", 0),
        dataset,
        out,
        compare_model=_model("asa2", 1),
        masks=dataset.foreground_masks,
        max_samples=16,
        batch_size=8,
        progress=False,
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    report = (out / "report.md").read_text()
    vanilla, asa = saved["models"]["vanilla"], saved["models"]["asa"]
    assert list(vanilla["layers"]) == LAYERS
    for key in (
        "nasfr_paper",
        "nasfr_released",
        "c_sfr",
        "ghost",
        "background_fraction",
        "patterns",
        "ptd",
        "qe",
    ):
        assert key in vanilla["layers"][LAYERS[0]]
    assert (
        len(vanilla["layers"][LAYERS[0]]["c_sfr"]) == 4 and len(vanilla["layers"][LAYERS[0]]["c_sfr"][0]) == 8
    )
    net_v, net_a = vanilla["network"], asa["network"]
    assert f"| NASFR (paper, Def. 1) | {fmt(net_v['nasfr_paper'])} | {fmt(net_a['nasfr_paper'])} |" in report
    assert (
        f"| NASFR (released code) | {fmt(net_v['nasfr_released'])} | {fmt(net_a['nasfr_released'])} |"
        in report
    )
    for name in LAYERS:
        a, b = vanilla["layers"][name]["nasfr_paper"], asa["layers"][name]["nasfr_paper"]
        assert f"| {name} | {fmt(a)} | {fmt(b)} | {fmt(b - a)} |" in report
    energy_v, energy_a = vanilla["energy"]["fp32_45nm"]["total_j"], asa["energy"]["fp32_45nm"]["total_j"]
    assert f"| fp32_45nm | {fmt(energy_v)} | {fmt(energy_a)} |" in report
    eq11 = saved["eq11"]["fp32_45nm"]
    assert eq11["delta_mac"] > 0  # ASA adds attention MACs
    assert f"| delta E (J; < 0 saves energy) | {fmt(eq11['delta_e_j'])} |" in report
    assert eq11["delta_e_j"] == pytest.approx(eq11["mac_cost_j"] - eq11["ac_saving_j"])
    assert set(saved["eq11"]) == {"fp32_45nm", "int8_45nm"}
    for stem in (
        "firing_rates",
        "vanilla_spike_features",
        "asa_channel_over_time",
        "vanilla_mpd",
        "comparison_spike_features",
    ):
        for suffix in (".png", ".svg"):
            path = out / "figures" / f"{stem}{suffix}"
            assert path.stat().st_size > 1000, path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".analysis-")]  # staging folder removed
