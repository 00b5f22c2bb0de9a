"""The streaming pass (batching invariance, bad input, U or X histograms), the end-to-end analysis on two
tiny models, the chosen feature figures, out-of-range warnings and the energy notes."""

import json

import numpy as np
import pytest
import torch

from asa_snn.analysis.recorder import HistogramSpec, measure
from asa_snn.analysis.report import analyze, fmt
from asa_snn.chips.speck.energy import SPECK_ENERGY
from asa_snn.data.synthetic import SyntheticDVS, SyntheticDVSConfig
from asa_snn.energy.model import GENERIC_PRESETS
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
    # break-even: saved synaptic ops that pay for the extra MACs, delta MAC x 4.6 pJ / 0.9 pJ
    assert eq11["break_even_ac"] == pytest.approx(eq11["delta_mac"] * 4.6 / 0.9)
    assert f"| break-even delta AC = delta MAC x E_MAC / E_AC | {fmt(eq11['break_even_ac'])} |" in report
    assert (eq11["delta_e_j"] < 0) == (eq11["delta_ac"] > eq11["break_even_ac"])
    assert "ASSUMPTION" in report and "membrane potential U before reset" in report
    row = vanilla["layers"][LAYERS[0]]
    assert f"| {LAYERS[0]} | vanilla | {fmt(row['ptd_mean'])} | {fmt(row['variance_mean'])} |" in report
    assert "NOT comparable to Table 4" in report  # speck_net's IAF neurons have no lower bound
    assert eq11["delta_e_j"] == pytest.approx(eq11["mac_cost_j"] - eq11["ac_saving_j"])
    assert set(saved["eq11"]) == {"fp32_45nm", "int8_45nm"}
    # NeuroBench's metrics under their names, beside NASFR, from the same operation counts
    bench_v, bench_a = vanilla["neurobench"], asa["neurobench"]
    assert "## NeuroBench metrics (per sample)" in report and "neurobench 2.3.0" in report
    plain = _model("none", 0)
    assert bench_v["footprint"] == sum(
        t.numel() * t.element_size() for t in [*plain.parameters(), *plain.buffers()]
    )
    assert bench_a["footprint"] > bench_v["footprint"]  # the attention's parameters
    assert f"| footprint (bytes) | {bench_v['footprint']} | {bench_a['footprint']} |" in report
    for model, bench in ((vanilla, bench_v), (asa, bench_a)):
        ops = model["operations"]
        synops = bench["synaptic_operations"]
        assert synops["Effective_ACs"] == pytest.approx(
            sum(op["event_fanout_sum"] for op in ops if op["kind"] != "attention" and op["input_is_spiking"])
        )
        assert synops["Dense"] == pytest.approx(
            sum(op["timesteps"] * op["flops"] + op["attention_macs"] for op in ops)
        )
        assert bench["membrane_updates"] == sum(op["neurons"] * op["timesteps"] for op in ops)
        assert bench["connection_sparsity"] == 0.0  # freshly initialised weights
        # binary spikes, every spiking layer driven by one synaptic module: 1 - NASFR
        assert bench["activation_sparsity"] == pytest.approx(1 - model["network"]["nasfr_paper"])
    mac_v, mac_a = (b["synaptic_operations"]["Effective_MACs"] for b in (bench_v, bench_a))
    assert mac_a - mac_v == pytest.approx(eq11["delta_mac"])
    assert f"| synaptic operations: Effective_MACs | {fmt(mac_v)} | {fmt(mac_a)} |" in report
    assert saved["definitions"]["neurobench"].startswith("NeuroBench metrics")
    first = LAYERS[0]
    for stem in (
        "firing_rates",
        f"vanilla_spike_features_{first}_t0",
        f"asa_channel_over_time_{first}",
        f"vanilla_mpd_{first}_t0",
        f"comparison_spike_features_{first}_t0",
    ):
        for suffix in (".png", ".svg"):
            path = out / "figures" / f"{stem}{suffix}"
            assert path.stat().st_size > 1000, path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".analysis-")]  # staging folder removed


def test_input_current_equals_the_membrane_at_the_first_step_of_an_iaf(dataset):
    # IAF from rest: U[0] = X[0]; later steps add the kept potential, so the histograms part
    model = _model()
    options = {"batch_size": 4, "max_samples": 4, "progress": False}
    u = measure(model, dataset, **options)
    x = measure(model, dataset, quantity="current", **options)
    a, b = u.layers[LAYERS[1]], x.layers[LAYERS[1]]
    assert (a.quantity, b.quantity, x.quantity) == ("membrane", "current", "current")
    np.testing.assert_array_equal(a.hist[0], b.hist[0])
    assert not np.array_equal(a.hist[1:], b.hist[1:])
    np.testing.assert_allclose(a.qe_sum, b.qe_sum)  # QE always uses U
    with pytest.raises(AsaSnnError, match="quantity 'spikes'"):
        measure(model, dataset, quantity="spikes", **options)


def test_feature_steps_and_layers_are_chosen_and_checked(dataset, tmp_path):
    options = {"max_samples": 4, "batch_size": 4, "progress": False}
    metrics = analyze(
        _model(),
        dataset,
        tmp_path / "chosen",
        feature_steps=[1, 3],
        feature_layers=[LAYERS[1], LAYERS[2]],
        quantity="current",
        **options,
    )
    figures = set(metrics["figures"])
    for layer in (LAYERS[1], LAYERS[2]):
        for step in (1, 3):
            assert f"figures/vanilla_spike_features_{layer}_t{step}.png" in figures
            assert f"figures/vanilla_mpd_{layer}_t{step}.svg" in figures
        assert f"figures/vanilla_channel_over_time_{layer}.png" in figures
    assert not any(LAYERS[0] in path or "_t0" in path for path in figures)
    assert "input current X into the neuron" in (tmp_path / "chosen" / "report.md").read_text()
    with pytest.raises(AsaSnnError, match=r"\[4\].*T=4.*0\.\.3"):
        analyze(_model(), dataset, tmp_path / "bad", feature_steps=[4], **options)
    with pytest.raises(AsaSnnError, match=r"blocks\.7\.neuron.*spiking layers are blocks\.0\.neuron"):
        analyze(_model(), dataset, tmp_path / "bad", feature_layers=["blocks.7.neuron"], **options)
    with pytest.raises(AsaSnnError, match=r"blocks\.3\.neuron have 1 x 1 maps"):
        analyze(_model(), dataset, tmp_path / "bad", feature_layers=[LAYERS[3]], **options)


def test_out_of_range_share_is_reported_and_warned_and_speck_marked_an_estimate(dataset, tmp_path):
    narrow = HistogramSpec(low=-0.05, high=0.05, bins=4)
    metrics = analyze(
        _model(),
        dataset,
        tmp_path / "narrow",
        hist_spec=narrow,
        presets={**GENERIC_PRESETS, "speck": SPECK_ENERGY},
        max_samples=4,
        batch_size=4,
        progress=False,
    )
    layer = metrics["models"]["vanilla"]["layers"][LAYERS[0]]
    outside = layer["below_range_share"] + layer["above_range_share"]
    assert outside > 0.1
    report = (tmp_path / "narrow" / "report.md").read_text()
    assert f"**WARNING (vanilla, {LAYERS[0]})**" in report
    assert f"{100 * layer['below_range_share']:.1f}%" in report
    assert "| speck (estimate) |" in report and "ESTIMATE" in report
    assert list(metrics["energy_estimates"]) == ["speck"]
    assert "ESTIMATE" in metrics["energy_estimates"]["speck"]
