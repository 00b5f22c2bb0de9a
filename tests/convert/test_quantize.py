"""Quantization: scale choice, ranges, the two sinabs pitfalls, sinabs' own rule, Speck / Loihi integers."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import sinabs
import sinabs.layers as sl
import torch

from asa_snn.chips.loihi.netx_export import read_netx, write_netx
from asa_snn.chips.loihi.quantizer import LoihiQuantizer
from asa_snn.chips.loihi.simulator import LoihiSimulator
from asa_snn.chips.speck.quantizer import SpeckQuantizer
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.fold import fold_model
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, NeuronSpec
from asa_snn.convert.graph_model import GraphModel
from asa_snn.convert.quantize import check_range, quantize_graph
from asa_snn.errors import AsaSnnError
from asa_snn.models.registry import ModelSpec, build_model
from asa_snn.workflows.fold_steps import fold_target


def _sinabs_discretize():
    """sinabs/backend/dynapcnn/discretize.py loaded by path (its imports are torch and sinabs.layers
    only, so the package, which imports samna, is never imported)."""
    path = Path(sinabs.__file__).parent / "backend" / "dynapcnn" / "discretize.py"
    spec = importlib.util.spec_from_file_location("sinabs_discretize_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _conv_graph(weight, threshold=1.0, min_v=None, bias=None):
    tensors = {"weight": weight} | ({} if bias is None else {"bias": bias})
    layer = Layer(
        "conv0",
        "conv2d",
        {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]},
        (weight.shape[0], 8, 8),
        tensors,
        NeuronSpec("iaf", threshold, min_v=min_v),
    )
    return FoldedGraph([layer], InputSpec((weight.shape[1], 8, 8), (8, 8, weight.shape[1])), weight.shape[0])


def _weights(seed=0, peak=0.05):
    rng = np.random.default_rng(seed)
    weight = rng.uniform(-0.8, 1.0, (4, 2, 3, 3)) * peak
    weight.flat[0] = peak
    return weight


def test_speck_scale_uses_the_full_8_bit_range_and_keeps_small_weights():
    graph = quantize_graph(_conv_graph(_weights()), SpeckQuantizer())
    layer = graph.layers[0]
    assert layer.quant.scale == pytest.approx(127 / 0.05)
    assert layer.tensors["weight"].dtype == np.int32 and int(np.abs(layer.tensors["weight"]).max()) == 127
    assert layer.neuron.threshold == round(127 / 0.05) and layer.neuron.min_v == -32768
    assert np.count_nonzero(layer.tensors["weight"]) >= np.count_nonzero(np.abs(_weights()) * 2540 >= 0.5)


def test_sinabs_rule_with_unset_min_v_rounds_small_weights_to_zero_ours_does_not():
    discretize = _sinabs_discretize()
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    conv.weight.data = torch.tensor(_weights() * 0.1)  # all |w| < 0.5
    sinabs_conv, _ = discretize.discretize_conv_spike(conv, sl.IAF(spike_threshold=1.0, min_v_mem=None))
    assert torch.count_nonzero(sinabs_conv.weight) == 0  # pitfall 1: scale capped near 1
    ours = quantize_graph(_conv_graph(_weights() * 0.1), SpeckQuantizer()).layers[0]
    assert int(np.abs(ours.tensors["weight"]).max()) == 127


def test_same_integers_as_sinabs_when_min_v_is_set():
    discretize = _sinabs_discretize()
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    conv.weight.data = torch.tensor(_weights())
    sinabs_conv, sinabs_iaf = discretize.discretize_conv_spike(
        conv, sl.IAF(spike_threshold=1.0, min_v_mem=-1.0)
    )
    ours = quantize_graph(_conv_graph(_weights(), min_v=-1.0), SpeckQuantizer()).layers[0]
    np.testing.assert_array_equal(
        ours.tensors["weight"], sinabs_conv.weight.detach().numpy().astype(np.int32)
    )
    assert ours.neuron.threshold == float(sinabs_iaf.spike_threshold)
    assert ours.neuron.min_v == float(sinabs_iaf.min_v_mem)


def test_huge_threshold_starving_weights_is_an_error_naming_the_layer():
    with pytest.raises(AsaSnnError, match=r"'conv0'.*threshold 50.*starvation"):
        quantize_graph(_conv_graph(_weights(peak=0.001), threshold=50.0), SpeckQuantizer())


def test_range_errors_name_layer_tensor_and_value():
    with pytest.raises(AsaSnnError, match=r"layer 'fc1': quantized bias value 200 is outside \[-128, 127\]"):
        check_range("fc1", "bias", np.array([3, 200]), -128, 127)
    layer_graph = _conv_graph(_weights())
    layer_graph.layers[0].neuron = None
    with pytest.raises(AsaSnnError, match=r"'conv0'.*without a neuron"):
        quantize_graph(layer_graph, SpeckQuantizer())


def _model(network, channels):
    torch.manual_seed(0)
    spec = ModelSpec(network, "asa2", 6, (2, 16, 16), 3, network_options={"channels": channels})
    model = build_model(spec).eval()
    with torch.no_grad():
        for block in model.blocks:
            layer = getattr(block, "conv", None) or block.linear
            layer.weight.mul_(3.0)
    return model


def _frames(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, (6, 5, 2, 16, 16), generator=g).float()


def test_speck_simulator_equals_graph_model_on_the_integers():
    float_graph, _ = fold_model(_model("speck_net", [4, 8]), [_frames(1)], fold_target("speck"), prune=False)
    graph = quantize_graph(float_graph, SpeckQuantizer())
    frames = _frames(2)
    result = SpeckSimulator().run(graph, frames.transpose(0, 1).numpy())
    with torch.no_grad():
        run = GraphModel(graph).run(frames)
    assert sum(int(c.sum()) for c in result.spike_counts.values()) > 50
    for name, spikes in run.channel_spikes.items():
        np.testing.assert_array_equal(
            result.spike_counts[name].sum(1), spikes.sum(1).numpy().astype(np.int64)
        )
    np.testing.assert_allclose(result.scores(), run.scores.numpy(), atol=1e-6)


def test_loihi_quantized_graph_runs_in_the_simulator_and_exports_to_netx(tmp_path):
    float_graph, _ = fold_model(_model("loihi_net", [4, 8]), [_frames(1)], fold_target("loihi"), prune=False)
    graph = quantize_graph(float_graph, LoihiQuantizer())
    for layer in graph.layers:
        if layer.quant is not None:
            assert np.abs(layer.tensors["weight"]).max() <= 127
            assert 1 <= layer.neuron.threshold <= 2**17 - 1 and layer.neuron.threshold == int(
                layer.neuron.threshold
            )
            assert layer.neuron.du * 4096 == int(layer.neuron.du * 4096)
    result = LoihiSimulator().run(graph, _frames(2).transpose(0, 1).numpy())
    assert set(result.spike_counts) == {"conv0", "conv1", "fc2", "fc3"}
    summary = read_netx(write_netx(graph, tmp_path / "net.net"))
    assert [layer.neuron.vth_mant for layer in summary.layers[1:] if layer.neuron] == [
        int(layer.neuron.threshold) for layer in graph.layers if layer.neuron
    ]
