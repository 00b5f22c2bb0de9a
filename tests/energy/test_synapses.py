"""Fan-out from layer geometry: by hand, against a loop over every synapse, against torch autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asa_snn.energy.synapses import (
    ConvGeometry,
    LinearGeometry,
    axis_fanout,
    dense_flops,
    fanout_map,
    synaptic_ops,
)
from asa_snn.errors import AsaSnnError


def brute_force_fanout(geometry: ConvGeometry) -> tuple[np.ndarray, int]:
    """Visit every synapse (output channel, output position, input channel of its group, kernel tap);
    returns (synapses per input position [C_in, H, W], synapses in all, the padding included)."""
    fanout = np.zeros(geometry.input_shape)
    per_group = geometry.in_channels // geometry.groups
    (h, w), (h_out, w_out) = geometry.input_hw, geometry.output_hw
    total = 0
    for out_channel in range(geometry.out_channels):
        group = out_channel // (geometry.out_channels // geometry.groups)
        for oy in range(h_out):
            for ox in range(w_out):
                for c in range(group * per_group, (group + 1) * per_group):
                    for ky in range(geometry.kernel_size[0]):
                        for kx in range(geometry.kernel_size[1]):
                            total += 1
                            y = oy * geometry.stride[0] - geometry.padding[0] + ky * geometry.dilation[0]
                            x = ox * geometry.stride[1] - geometry.padding[1] + kx * geometry.dilation[1]
                            if 0 <= y < h and 0 <= x < w:
                                fanout[c, y, x] += 1
    return fanout, total


def autograd_fanout(geometry: ConvGeometry) -> np.ndarray:
    """The former training-side method: d sum(conv_ones(x)) / dx."""
    x = torch.zeros((1, *geometry.input_shape), dtype=torch.float64, requires_grad=True)
    ones = torch.ones(
        (geometry.out_channels, geometry.in_channels // geometry.groups, *geometry.kernel_size),
        dtype=torch.float64,
    )
    y = F.conv2d(x, ones, None, geometry.stride, geometry.padding, geometry.dilation, geometry.groups)
    assert tuple(y.shape[2:]) == geometry.output_hw
    y.sum().backward()
    return x.grad[0].numpy()


def test_strided_padded_grouped_conv_by_hand():
    geometry = ConvGeometry(4, 6, 3, (5, 5), stride=2, padding=1, groups=2)
    assert geometry.output_hw == (3, 3)
    # output o covers inputs 2o - 1 .. 2o + 1: o = 0 -> -1, 0, 1; o = 1 -> 1, 2, 3; o = 2 -> 3, 4, 5
    count = [1, 2, 1, 2, 1]
    assert axis_fanout(5, 3, 2, 1, 1).tolist() == count
    expected = 3 * np.outer(count, count)  # 6 output channels / 2 groups reach each input channel
    np.testing.assert_array_equal(fanout_map(geometry), np.broadcast_to(expected, (4, 5, 5)))
    brute, synapses = brute_force_fanout(geometry)
    np.testing.assert_array_equal(fanout_map(geometry), brute)
    assert dense_flops(geometry) == 3 * 3 * 3 * 3 * (4 // 2) * 6 == synapses == 972
    events = np.random.default_rng(0).integers(0, 4, (4, 5, 5))
    assert synaptic_ops(events, geometry) == (events * brute).sum()


def test_linear_fanout_and_flops():
    geometry = LinearGeometry(6, 4)
    np.testing.assert_array_equal(fanout_map(geometry), np.full(6, 4.0))
    assert dense_flops(geometry) == 24
    assert synaptic_ops(np.array([0, 1, 2, 0, 0, 3]), geometry) == 6 * 4


def test_random_geometries_match_the_loop_and_autograd():
    rng = np.random.default_rng(3)
    checked = 0
    while checked < 60:
        groups = int(rng.integers(1, 4))
        kernel, stride, padding, dilation, size = (
            tuple(int(v) for v in rng.integers(low, high, 2))
            for low, high in ((1, 5), (1, 4), (0, 3), (1, 3), (1, 10))
        )
        try:
            geometry = ConvGeometry(
                groups * int(rng.integers(1, 3)),
                groups * int(rng.integers(1, 3)),
                kernel,
                size,
                stride,
                padding,
                dilation,
                groups,
            )
        except AsaSnnError:  # dilated kernel larger than the padded input: no output
            continue
        fanout = fanout_map(geometry)
        brute, synapses = brute_force_fanout(geometry)
        np.testing.assert_array_equal(fanout, brute, err_msg=str(geometry))
        np.testing.assert_array_equal(fanout, autograd_fanout(geometry), err_msg=str(geometry))
        assert dense_flops(geometry) == synapses
        events = rng.integers(0, 3, geometry.input_shape)
        assert synaptic_ops(events, geometry) == pytest.approx((events * fanout).sum())
        checked += 1


def test_bad_geometry_and_maps_are_named():
    with pytest.raises(AsaSnnError, match="conv 'c1': groups 3 must divide in_channels 4"):
        ConvGeometry(4, 6, 3, (5, 5), groups=3, name="c1")
    with pytest.raises(AsaSnnError, match="smaller than the dilated kernel"):
        ConvGeometry(1, 1, 3, (2, 2), dilation=2)
    with pytest.raises(AsaSnnError, match="stride is"):
        ConvGeometry(1, 1, 3, (4, 4), stride=(1, 2, 3))
    with pytest.raises(AsaSnnError, match=r"c2: input map has shape \(2, 4, 4\); expected \(1, 4, 4\)"):
        synaptic_ops(np.zeros((2, 4, 4)), ConvGeometry(1, 1, 3, 4, name="c2"))
