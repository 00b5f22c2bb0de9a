"""The paper's metrics against hand-computed values on tiny arrays (firing rates, PTD on hand-made
histograms, shares outside the range, QE, variance, ghost features, background fractions, patterns,
temporal similarity), including the streaming path."""

import numpy as np
import pytest
import torch

from asa_snn.analysis import features, firing, membrane
from asa_snn.analysis.recorder import (
    HistogramSpec,
    LayerStats,
    accumulate_layer,
    neuron_kind,
    resize_masks,
)
from asa_snn.errors import AsaSnnError
from asa_snn.models.neurons import IAF, LIF


def _stats(steps, shape, v_th=1.0, spec=None):
    return LayerStats.empty("layer", v_th, steps, shape, spec or HistogramSpec())


# Two samples, two steps. Layer A: one channel of 1 x 2 neurons; layer B: a linear layer of 2 neurons.
# Spikes are [T, B, ...] (steps first, then samples).
SPIKES_A = torch.tensor(
    [
        [[[[1.0, 0.0]]], [[[0.0, 0.0]]]],  # t = 0: sample 0 fires neuron 0, sample 1 nothing
        [[[[1.0, 1.0]]], [[[1.0, 0.0]]]],  # t = 1
    ]
)
SPIKES_B = torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])


def test_paper_definition_1_on_a_two_sample_two_step_example():
    a, b = _stats(2, (1, 1, 2)), _stats(2, (2, 1, 1))
    accumulate_layer(a, torch.zeros_like(SPIKES_A), SPIKES_A, None)
    accumulate_layer(b, torch.zeros_like(SPIKES_B), SPIKES_B, None)
    nsfr_a, nsfr_b = firing.n_sfr(a.fired, 2), firing.n_sfr(b.fired, 2)
    # N-SFR = samples firing / 2
    np.testing.assert_allclose(nsfr_a[:, 0, 0], [[0.5, 0.0], [1.0, 0.5]])
    np.testing.assert_allclose(nsfr_b[:, :, 0, 0], [[0.5, 1.0], [0.0, 0.0]])
    # C-SFR of layer A's single channel: (0.5 + 0) / 2, (1 + 0.5) / 2
    np.testing.assert_allclose(firing.c_sfr(nsfr_a), [[0.25], [0.75]])
    # T-SFR over the 4 neurons of the network: (0.5 + 0 + 0.5 + 1) / 4, (1 + 0.5 + 0 + 0) / 4
    np.testing.assert_allclose(firing.t_sfr([nsfr_a, nsfr_b]), [0.5, 0.375])
    assert firing.nasfr_paper([nsfr_a, nsfr_b]) == pytest.approx(0.4375)
    # released: 7 spikes / (4 neurons * 2 steps * 2 samples)
    assert firing.nasfr_released([a.spikes, b.spikes], 2) == pytest.approx(7 / 16)
    # per layer: layer A mean N-SFR (0.5 + 0 + 1 + 0.5) / 4
    assert firing.nasfr_paper([nsfr_a]) == pytest.approx(0.5)


def test_multi_spike_counts_fire_once_for_nsfr_but_fully_for_released_nasfr():
    spikes = SPIKES_A.clone()
    spikes[1, 0, 0, 0, 0] = 3.0  # sample 0, step 1, neuron 0 emits 3 spikes
    a, b = _stats(2, (1, 1, 2)), _stats(2, (2, 1, 1))
    accumulate_layer(a, torch.zeros_like(spikes), spikes, None)
    accumulate_layer(b, torch.zeros_like(SPIKES_B), SPIKES_B, None)
    nsfrs = [firing.n_sfr(a.fired, 2), firing.n_sfr(b.fired, 2)]
    assert firing.nasfr_paper(nsfrs) == pytest.approx(0.4375)
    assert firing.nasfr_released([a.spikes, b.spikes], 2) == pytest.approx(9 / 16)


def test_ptd_takes_the_interval_of_the_three_tallest_bars():
    edges = np.arange(11.0)  # 10 bins of width 1 over [0, 10)
    hist = np.array([0, 1, 5, 7, 6, 0, 0, 0, 0, 0])
    # tallest bars: bins 3 (7), 4 (6), 2 (5) -> interval [2, 5], centre 3.5, threshold 4
    assert membrane.ptd(hist, edges, 4.0) == pytest.approx(-0.5)
    with_flows = np.concatenate([[50], hist, [100]])  # under/overflow never count as bars
    assert membrane.ptd(with_flows, edges, 4.0) == pytest.approx(-0.5)
    assert np.isnan(membrane.ptd(np.zeros(12), edges, 4.0))
    with pytest.raises(AsaSnnError, match="edges"):
        membrane.ptd(np.zeros(7), edges, 4.0)


def test_ptd_averages_the_intervals_of_the_three_tallest_bars_as_definition_6_says():
    edges = np.arange(11.0)
    hist = np.zeros(10)
    hist[[0, 1, 9]] = [5, 6, 7]  # bars centred at 0.5, 1.5 and 9.5
    # mean interval [(0 + 1 + 9) / 3, (1 + 2 + 10) / 3] = [3.33, 4.33], centre 3.83 (not the span's 5.0)
    assert membrane.ptd(hist, edges, 1.0) == pytest.approx(23 / 6 - 1.0)
    # the same bars numbered the other way round give the mirrored centre
    assert membrane.ptd(hist[::-1], edges, 1.0) == pytest.approx(10 - 23 / 6 - 1.0)


def test_ptd_ties_share_the_last_place_and_empty_bars_never_count():
    edges = np.arange(11.0)
    four = np.array([4, 4, 0, 0, 0, 0, 0, 0, 4, 4])  # four bars tied for three places: 3/4 each
    np.testing.assert_allclose(membrane.peak_weights(four), [0.75, 0.75, 0, 0, 0, 0, 0, 0, 0.75, 0.75])
    assert membrane.ptd(four, edges, 0.0) == pytest.approx(5.0)  # (0.5 + 1.5 + 8.5 + 9.5) / 4
    tied_third = np.array([9, 8, 2, 0, 0, 0, 0, 0, 0, 2])  # bars 2 and 9 share the third place
    np.testing.assert_allclose(membrane.peak_weights(tied_third)[[0, 1, 2, 9]], [1, 1, 0.5, 0.5])
    assert membrane.ptd(tied_third, edges, 0.0) == pytest.approx((0.5 + 1.5 + 0.5 * 2.5 + 0.5 * 9.5) / 3)
    single = np.zeros(10)
    single[6] = 3  # one non-empty bar: its centre, the empty bars do not pull it
    assert membrane.ptd(single, edges, 0.0) == pytest.approx(6.5)
    stacked = np.stack([four, tied_third])  # any leading shape
    assert membrane.ptd(stacked, edges, 0.0).shape == (2,)


def test_shares_outside_the_range_and_a_peak_outside_it():
    hist = np.array(
        [
            [62, 10, 20, 5, 3],  # 62 % below the range: the peak is outside
            [0, 10, 20, 5, 5],  # 12.5 % above, the tallest bar is in range
            [0, 0, 0, 0, 0],  # empty
        ]
    )
    below, above = membrane.range_shares(hist)
    np.testing.assert_allclose(below[:2], [0.62, 0.0])
    np.testing.assert_allclose(above[:2], [0.03, 0.125])
    assert np.isnan(below[2]) and np.isnan(above[2])
    np.testing.assert_array_equal(membrane.peak_outside(hist), [True, False, False])
    # PTD uses the in-range bars only (bars 1..3 of 3), centred at 0.5, 1.5, 2.5 -> 1.5
    assert membrane.ptd(hist[0], np.arange(4.0), 0.0) == pytest.approx(1.5)


def test_current_histogram_uses_the_input_and_qe_the_membrane():
    spec = HistogramSpec(low=-1.0, high=1.0, bins=4)
    stats = LayerStats.empty("layer", 1.0, 1, (1, 1, 2), spec, quantity="current")
    u = torch.tensor([0.25, 1.5]).view(1, 1, 1, 1, 2)
    x = torch.tensor([-0.75, 0.75]).view(1, 1, 1, 1, 2)
    s = torch.tensor([0.0, 1.0]).view(1, 1, 1, 1, 2)
    accumulate_layer(stats, u, s, None, x)
    np.testing.assert_array_equal(stats.hist[0, 0], [0, 1, 0, 0, 1, 0])  # X's bins, not U's
    assert stats.mem_sum[0, 0] == pytest.approx(0.0)  # variance of X
    assert stats.qe_sum[0, 0] == pytest.approx(0.25**2 + 0.5**2)  # QE of U
    with pytest.raises(AsaSnnError, match="input current"):
        accumulate_layer(stats, u, s, None)
    with pytest.raises(AsaSnnError, match="membrane, current"):
        LayerStats.empty("layer", 1.0, 1, (1, 1, 2), spec, quantity="voltage")


def test_neuron_kind_flags_iaf_without_lower_bound():
    assert neuron_kind(IAF()) == ("IAF", True)
    assert neuron_kind(IAF(min_v=-1.0)) == ("IAF", False)
    assert neuron_kind(LIF()) == ("LIF", False)


def test_quantization_error_uses_spike_times_threshold():
    v = np.array([0.2, 0.5, 1.3, np.nan])
    s = np.array([0.0, 1.0, 1.0, 0.0])
    # (0.2 - 0)^2, (0.5 - 1)^2, (1.3 - 1)^2 over the 3 finite values
    assert membrane.quantization_error(v, s, 1.0) == pytest.approx((0.04 + 0.25 + 0.09) / 3)
    # with v_th = 0.5 the spike value is 0.5: 0.04, 0, 0.64
    assert membrane.quantization_error(v, s, 0.5) == pytest.approx((0.04 + 0.0 + 0.64) / 3)


def test_streamed_membrane_statistics_histogram_variance_qe_and_nonfinite():
    spec = HistogramSpec(low=-1.0, high=1.0, bins=4)  # edges -1, -0.5, 0, 0.5, 1
    stats = _stats(1, (1, 1, 6), spec=spec)
    v = torch.tensor([-2.0, -0.75, 0.1, 0.99, 1.0, float("nan")]).view(1, 1, 1, 1, 6)
    s = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0]).view(1, 1, 1, 1, 6)
    accumulate_layer(stats, v, s, None)
    np.testing.assert_array_equal(stats.hist[0, 0], [1, 1, 0, 1, 1, 1])  # under, 4 bins, over
    assert stats.nonfinite == 1
    finite = np.array([-2.0, -0.75, 0.1, 0.99, 1.0])
    var = membrane.variance(stats.mem_sum, stats.mem_sq, stats.mem_count)
    assert var[0, 0] == pytest.approx(finite.var())
    qe = membrane.mean_from_sums(stats.qe_sum, stats.mem_count)
    assert qe == pytest.approx(membrane.quantization_error(finite, s.flatten()[:5].numpy(), 1.0))
    assert membrane.variance(np.array([10.0]), np.array([30.0]), np.array([4]))[0] == pytest.approx(1.25)


def test_ghost_pairs_and_groups_on_constructed_maps():
    m0 = [[1.0, 0.0], [0.0, 0.0]]
    m1 = [[0.9, 0.0], [0.0, 0.1]]  # cos(m0, m1) = 0.9 / sqrt(0.82) = 0.994
    m2 = [[0.0, 0.0], [0.0, 1.0]]  # cos(m1, m2) = 0.11
    silent = [[0.0, 0.0], [0.0, 0.0]]
    m4 = [[0.0, 0.0], [0.0, 2.0]]  # same direction as m2
    m5 = [[2.0, 0.0], [0.0, 0.0]]  # same direction as m0
    maps = np.array([m0, m1, m2, silent, m4, m5])
    pairs = features.ghost_pairs(maps, 0.95)
    assert pairs == [(0, 1), (0, 5), (1, 5), (2, 4)]
    assert features.ghost_groups(pairs, 6) == [[0, 1, 5], [2, 4]]
    assert features.ghost_pairs(maps, 0.999) == [(0, 5), (2, 4)]
    summary = features.ghost_summary(np.stack([maps, np.zeros_like(maps)]))
    assert summary.pairs_per_step == [4, 0] and summary.groups_per_step == [2, 0]
    assert summary.mean_pairs == 2.0 and summary.mean_groups == 1.0


def test_temporal_similarity_skips_silent_steps():
    nsfr = np.zeros((3, 2, 1, 2))
    nsfr[:, 0, 0] = [[1, 0], [1, 0], [0, 1]]  # cos 1 then 0
    nsfr[1:, 1, 0] = [[1, 1], [1, 1]]  # step 0 silent; one valid pair with cos 1
    np.testing.assert_allclose(features.temporal_similarity(nsfr), [0.5, 1.0])


def test_background_fraction_with_a_constructed_mask():
    mask = torch.zeros((1, 1, 4, 4), dtype=torch.bool)
    mask[0, 0, 1, 1] = True  # object pixel in the top-left 2 x 2 window
    layer_mask = resize_masks(mask, 2, 2)
    np.testing.assert_array_equal(layer_mask[0, 0].numpy(), [[True, False], [False, False]])
    spikes = torch.zeros((1, 1, 2, 2, 2))
    spikes[0, 0, 0, 0, 0] = 1.0  # channel 0 on the object
    spikes[0, 0, 0, 1, 1] = 1.0  # channel 0 on the background
    spikes[0, 0, 1, 0, 1] = 1.0  # channel 1 on the background
    stats = _stats(1, (2, 2, 2))
    stats.background_spikes = np.zeros((1, 2))
    accumulate_layer(stats, torch.zeros_like(spikes), spikes, ~layer_mask)
    fraction = features.background_fraction(stats.background_spikes, stats.spikes.sum((2, 3)))
    np.testing.assert_allclose(fraction, [0.5, 1.0])


def test_pattern_rules():
    nsfr = np.zeros((2, 3, 2, 2))
    nsfr[:, 1] = 0.9
    nsfr[:, 2, 0, 0] = 0.8
    assert features.MaskPatternRule()(nsfr, np.array([np.nan, 0.8, 0.2])) == ["null", "noise", "normal"]
    assert features.AreaPatternRule()(nsfr, None) == ["null", "noise", "normal"]
    assert features.pattern_counts(["null", "noise", "noise"]) == {"null": 1, "noise": 2, "normal": 0}
    with pytest.raises(AsaSnnError, match="masks"):
        features.MaskPatternRule()(nsfr, None)
