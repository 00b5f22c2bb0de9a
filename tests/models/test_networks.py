"""Networks and the model registry: the paper's parameter counts, shapes, errors, chip fit."""

import pytest
import torch

from asa_snn.errors import AsaSnnError, InputFormatError
from asa_snn.models.blocks import ConvBlock, SumPool2d
from asa_snn.models.neurons import IAF, LIF, CubaLIF, ParametricLIF
from asa_snn.models.registry import (
    MAX_PARAMETERS,
    NETWORKS,
    ModelSpec,
    ModelSpecError,
    build_model,
    check_model_size,
    count_parameters,
    model_table,
    step_activations,
    table3_check,
)

PAPER = {"input_shape": (2, 32, 32), "num_classes": 11, "timesteps": 60}


@pytest.mark.parametrize(
    ("attention", "extra"), [("none", 0), ("sa", 294), ("tcsa", 24_126), ("asa1", 10_914), ("asa2", 114)]
)
def test_paper_parameter_counts_of_arch_a(attention, extra):
    model = build_model(ModelSpec("arch_a", attention, **PAPER))
    assert count_parameters(model) == 2_323_531 + extra


def test_arch_d_is_the_32_channel_variant():
    model = build_model(ModelSpec("arch_d", "none", 60, (2, 32, 32), 20))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 256), (256, 20)]


@pytest.mark.parametrize(
    ("network", "shape", "neuron"),
    [
        ("arch_a", (2, 32, 32), LIF),
        ("arch_b", (2, 64, 64), ParametricLIF),
        ("sew_resnet18", (2, 32, 32), LIF),
        ("speck_net", (2, 32, 32), IAF),
        ("loihi_net", (2, 32, 32), CubaLIF),
    ],
)
def test_networks_map_frames_to_class_scores(network, shape, neuron):
    torch.manual_seed(0)
    model = build_model(ModelSpec(network, "asa2", 4, shape, 5))
    scores = model(torch.rand(4, 3, *shape))
    assert scores.shape == (3, 5)
    assert all(
        isinstance(m, neuron)
        for m in model.modules()
        if type(m).__name__ in {"LIF", "ParametricLIF", "IAF", "CubaLIF"}
    )
    if network != "sew_resnet18":  # spike-rate readouts lie in [0, 1]
        assert scores.min() >= 0 and scores.max() <= 1


def test_arch_b_votes_over_groups_of_ten():
    model = build_model(ModelSpec("arch_b", "none", 2, (2, 32, 32), 3))
    assert model.blocks[-1].linear.out_features == 30
    assert model(torch.rand(2, 1, 2, 32, 32)).shape == (1, 3)


def test_speck_net_is_conv_only_with_sum_pooling():
    model = build_model(ModelSpec("speck_net", "none", 4, (2, 32, 32), 7))
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert sum(isinstance(m, SumPool2d) for m in model.modules()) == 3
    assert model.blocks[-1].conv.kernel_size == (4, 4)


def test_loihi_net_has_no_pooling():
    model = build_model(ModelSpec("loihi_net", "none", 4, (2, 32, 32), 7))
    pools = (torch.nn.AvgPool2d, torch.nn.MaxPool2d, SumPool2d)
    assert not any(isinstance(m, pools) for m in model.modules())


def test_channels_last_frames_compute_the_same_network():
    """The channels-last layout of conv blocks changes strides only: same spikes, same gradients."""
    torch.manual_seed(3)
    spec = ModelSpec("arch_a", "asa2", 6, (2, 16, 16), 5)
    fast = build_model(spec).double()
    plain = build_model(spec).double()
    plain.load_state_dict(fast.state_dict())
    for block in plain.modules():
        if isinstance(block, ConvBlock):
            block.memory_format = torch.contiguous_format
    for dropout in [*fast.modules(), *plain.modules()]:
        if isinstance(dropout, torch.nn.Dropout):
            dropout.eval()
    x = (torch.rand(6, 3, 2, 16, 16, dtype=torch.float64) < 0.5).double()
    weight = torch.rand(6, 3, 128, 4, 4, dtype=torch.float64)
    features = []
    for model in (fast, plain):
        conv_stack = model.blocks[2](model.blocks[1](model.blocks[0](x)))
        (conv_stack * weight).sum().backward()
        features.append(conv_stack)
    assert features[0].flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert not features[0].is_contiguous()
    assert features[0].sum() > 0
    torch.testing.assert_close(features[0], features[1], rtol=0, atol=0)
    assert fast.blocks[0].conv.weight.grad.abs().sum() > 0
    for (name, a), b in zip(fast.named_parameters(), plain.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_sum_pool_sums_windows():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert SumPool2d(2)(x).flatten().tolist() == [
        0 + 1 + 4 + 5,
        2 + 3 + 6 + 7,
        8 + 9 + 12 + 13,
        10 + 11 + 14 + 15,
    ]


def test_model_table_lists_shapes_neurons_and_parameters():
    model = build_model(ModelSpec("arch_a", "asa2", **PAPER))
    rows = model_table(model, 60)
    assert sum(row.parameters for row in rows) == count_parameters(model)
    by_name = {row.name: row for row in rows}
    assert by_name["blocks.1.attention"].output_shape == (128, 16, 16)
    assert by_name["blocks.1.neuron"].neurons == 128 * 16 * 16
    assert by_name["blocks.4.neuron"].neurons == 11


def test_model_table_counts_macs_and_checks_table3():
    spec = ModelSpec("arch_a", "sa", **PAPER)
    rows = {row.name: row for row in model_table(build_model(spec), 60)}
    # first conv by hand: T x (3 x 3 x 2 inputs per output) x 64 x 32 x 32 outputs
    assert rows["blocks.0.conv"].dense_ops == 60 * 18 * 64 * 32 * 32 == 70_778_880
    assert rows["blocks.3.linear"].dense_ops == 60 * 8192 * 256
    # SA on the 128x8x8 map after pooling: 7x7 conv per step + re-weighting
    assert rows["blocks.2.attention"].attention_macs == 60 * 98 * 64 + 60 * 128 * 64
    total = sum(row.attention_macs for row in rows.values())
    assert total == 14_292_480
    assert "reproduced (" in table3_check(spec, total)
    asa2 = ModelSpec("arch_a", "asa2", **PAPER)
    macs = sum(row.attention_macs for row in model_table(build_model(asa2), 60))
    assert macs == 6_476_544 and "NOT reproduced" in table3_check(asa2, macs)
    assert table3_check(ModelSpec("arch_a", "sa", timesteps=16), total) is None  # not Table 3's setting


def test_spec_round_trips_through_plain_data():
    spec = ModelSpec(
        "speck_net",
        "asa1",
        8,
        (2, 16, 16),
        4,
        neuron_options={"v_th": 0.5},
        network_options={"channels": [4, 8]},
    )
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelSpec("arch_z"), "unknown network 'arch_z'; expected one of arch_a"),
        (ModelSpec("arch_a", "xyz"), "unknown attention 'xyz'; expected one of none, sa"),
        (ModelSpec("arch_a", neuron="hh"), "unknown neuron 'hh'; expected one of lif, plif"),
        (ModelSpec("arch_a", input_shape=(2, 30, 30)), "input H=30 must be divisible by 4"),
        (ModelSpec("speck_net", input_shape=(2, 256, 256)), "at most 128 x 128"),
        (ModelSpec("arch_a", "asa1", timesteps=1), "reduction"),
        (ModelSpec("speck_net", network_options={"depth": 3}), "bad network option"),
    ],
)
def test_bad_specs_name_what_is_wrong(spec, message):
    with pytest.raises(AsaSnnError, match=message):
        build_model(spec)


def test_unknown_spec_field_is_named():
    with pytest.raises(AsaSnnError, match="unknown field"):
        ModelSpec.from_dict({"network": "arch_a", "layers": 3})


def test_wrong_input_shape_at_forward_is_named():
    model = build_model(ModelSpec("speck_net", "none", 4, (2, 32, 32), 3))
    with pytest.raises(InputFormatError, match=r"C,H,W = \(2, 32, 32\)"):
        model(torch.rand(4, 1, 2, 16, 16))


def test_every_registered_network_has_a_default_neuron():
    for name, entry in NETWORKS.items():
        assert entry.neuron in {"lif", "plif", "iaf", "cuba"}, name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"network": "arch_a", "timesteps": "x"},
            r"field 'timesteps' is 'x' \(str\); expected an integer 1\.\.10000",
        ),
        ({"network": "arch_a", "timesteps": 4.0}, r"field 'timesteps' is 4\.0"),
        ({"network": "arch_a", "timesteps": True}, r"field 'timesteps' is True"),
        ({"network": "arch_a", "timesteps": 10**9}, r"field 'timesteps' is 1000000000"),
        ({"network": "arch_a", "num_classes": 0}, r"field 'num_classes' is 0"),
        ({"network": "arch_a", "input_shape": [2, 32.5, 32]}, r"field 'input_shape\[1\]' is 32\.5"),
        ({"network": "arch_a", "input_shape": [2, 32]}, r"field 'input_shape' is \(2, 32\)"),
        ({"network": "arch_a", "input_shape": "2x32x32"}, r"field 'input_shape' is '2x32x32'"),
        ({"network": 5}, r"field 'network' is 5 \(int\); expected a string"),
        ({"network": "arch_a", "neuron": ["lif"]}, r"field 'neuron' is \['lif'\]"),
        ({"network": "arch_a", "network_options": [4, 8]}, r"field 'network_options' is \[4, 8\]"),
        ({"attention": "none"}, r"field 'network' is missing"),
        ([1, 2], "expected a table of fields, found list"),
    ],
)
def test_spec_fields_are_checked_with_the_field_named(data, message):
    """A checkpoint's stored spec is plain JSON: every field's type and range is checked when it is
    read. The error is also a TypeError, so the checkpoint reader names its file for it."""
    with pytest.raises(ModelSpecError, match=message) as info:
        ModelSpec.from_dict(data)
    assert isinstance(info.value, InputFormatError) and isinstance(info.value, TypeError)


def test_build_model_checks_a_spec_made_in_code():
    with pytest.raises(ModelSpecError, match="field 'timesteps' is 'x'"):
        build_model(ModelSpec("speck_net", timesteps="x"))


def test_parameters_are_counted_before_anything_is_allocated():
    """900 billion parameters: refused after a build on the meta device, in well under a second."""
    spec = ModelSpec("speck_net", "none", 4, (2, 16, 16), 3, network_options={"channels": [10**6, 10**5]})
    with pytest.raises(InputFormatError, match=f"expected at most {MAX_PARAMETERS:,}"):
        build_model(spec)


def test_step_activations_count_every_layer_output_on_the_meta_device():
    """The meta-device count equals the outputs of every leaf module in a real forward pass of T
    steps, divided by T; counting draws no random numbers."""
    spec = ModelSpec("speck_net", "none", 4, (2, 16, 16), 3, network_options={"channels": [4, 8]})
    model = build_model(spec)
    counted = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: counted.append(out.numel()))
        for module in model.modules()
        if next(module.children(), None) is None
    ]
    with torch.no_grad():
        model(torch.zeros(4, 1, 2, 16, 16))
    for hook in hooks:
        hook.remove()
    assert 4 * 16 * 16 in counted  # the first conv's output per step, counted
    torch.manual_seed(0)
    values = step_activations(spec)
    drawn = torch.rand(1)
    torch.manual_seed(0)
    assert drawn == torch.rand(1)
    assert values == sum(counted) // 4 > 0
    with pytest.raises(InputFormatError, match="MAX_STEP_ACTIVATIONS"):
        check_model_size(
            ModelSpec("speck_net", "none", 4, (2, 16, 16), 3, network_options={"channels": [10**6]})
        )
