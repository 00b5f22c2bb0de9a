"""sinabs export: the Sequential DynapcnnNetwork accepts, parameters carried over, no samna."""

import itertools
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import sinabs.activation as sa
import sinabs.layers as sl
import torch
from torch import nn

from asa_snn.chips.speck.sinabs_export import neuron_module_name, to_sinabs
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec
from asa_snn.errors import AsaSnnError

QUANT = LayerQuant(scale=1.0, weight_bits=8, state_bits=16)
CONV = {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]}
# Edges sinabs 3.1.3 accepts (sinabs/backend/dynapcnn/connectivity_specs.py, read as text: importing
# it imports samna): weight->neuron, neuron->pooling, pooling->pooling, neuron->weight, pooling->weight.
VALID_EDGES = {
    (nn.Conv2d, sl.IAFSqueeze),
    (sl.IAFSqueeze, sl.SumPool2d),
    (sl.SumPool2d, sl.SumPool2d),
    (sl.IAFSqueeze, nn.Conv2d),
    (sl.SumPool2d, nn.Conv2d),
}


def quantized_graph(neurons=None, n_steps=4) -> FoldedGraph:
    """conv(2->4, 3x3, iaf) -> sumpool2 -> conv(4->4, iaf) -> flatten -> linear(64->3, iaf), int8."""
    rng = np.random.default_rng(1)
    n0, n1, n2 = neurons or (
        NeuronSpec("iaf", 120.0, "subtract", -60.0),
        NeuronSpec("iaf", 90.0, "zero", None, multi_spike=True),
        NeuronSpec("iaf", 70.0, "subtract", -10.0),
    )
    layers = [
        Layer(
            "block.0",
            "conv2d",
            CONV,
            (4, 8, 8),
            {
                "weight": rng.integers(-40, 80, (4, 2, 3, 3)).astype(np.int8),
                "bias": np.array([2, -3, 0, 1], np.int16),
            },
            n0,
            quant=QUANT,
        ),
        Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (4, 4, 4)),
        Layer(
            "conv1",
            "conv2d",
            CONV,
            (4, 4, 4),
            {"weight": rng.integers(-30, 60, (4, 4, 3, 3)).astype(np.int8)},
            n1,
            quant=QUANT,
        ),
        Layer("flat", "flatten", {}, (64,)),
        Layer(
            "fc",
            "linear",
            {},
            (3,),
            {"weight": rng.integers(-20, 40, (3, 64)).astype(np.int8)},
            n2,
            quant=QUANT,
        ),
    ]
    return FoldedGraph(layers, InputSpec((2, 8, 8), (8, 8, 2), n_steps=n_steps), 3, "speck", quantized=True)


def test_structure_is_what_dynapcnn_accepts():
    model = to_sinabs(quantized_graph())
    kinds = [type(m) for m in model]
    assert kinds == [
        nn.Conv2d,
        sl.IAFSqueeze,
        sl.SumPool2d,
        nn.Conv2d,
        sl.IAFSqueeze,
        nn.Conv2d,
        sl.IAFSqueeze,
    ]
    assert all(edge in VALID_EDGES for edge in itertools.pairwise(kinds))
    assert list(dict(model.named_children())) == [
        "block_0",
        "block_0_iaf",
        "pool",
        "conv1",
        "conv1_iaf",
        "fc",
        "fc_iaf",
    ]
    for module in model:
        if isinstance(module, nn.Conv2d):
            assert module.kernel_size[0] == module.kernel_size[1]


def test_parameters_carry_over():
    graph = quantized_graph()
    model = to_sinabs(graph)
    first, spk0 = model.block_0, model.get_submodule(neuron_module_name("block.0"))
    np.testing.assert_array_equal(first.weight.detach().numpy(), graph.layers[0].tensors["weight"])
    np.testing.assert_array_equal(first.bias.detach().numpy(), [2, -3, 0, 1])
    assert (first.stride, first.padding) == ((1, 1), (1, 1))
    assert float(spk0.spike_threshold) == 120.0 and float(spk0.min_v_mem) == -60.0
    assert spk0.spike_fn is sa.SingleSpike and isinstance(spk0.reset_fn, sa.MembraneSubtract)
    assert spk0.num_timesteps == 4 and spk0.batch_size == -1
    spk1 = model.conv1_iaf
    assert spk1.spike_fn is sa.MultiSpike and isinstance(spk1.reset_fn, sa.MembraneReset)
    assert float(spk1.min_v_mem) == -32768.0  # quantized graph, min_v unset: the int16 floor
    assert model.conv1.bias is None
    fc = model.fc
    assert fc.kernel_size == (4, 4) and fc.in_channels == 4 and fc.out_channels == 3
    np.testing.assert_array_equal(
        fc.weight.detach().numpy().reshape(3, 64), graph.layers[-1].tensors["weight"]
    )
    assert model.pool.kernel_size == (2, 2)
    by_batch = to_sinabs(graph, batch_size=5)
    assert by_batch.fc_iaf.batch_size == 5 and by_batch.fc_iaf.num_timesteps == -1


def test_linear_as_conv_computes_the_linear_layer():
    graph = quantized_graph()
    conv = to_sinabs(graph).fc
    x = torch.rand(6, 4, 4, 4)
    expected = x.flatten(1) @ torch.as_tensor(graph.layers[-1].tensors["weight"], dtype=torch.float32).T
    torch.testing.assert_close(conv(x).reshape(6, 3), expected)


def test_float_graph_keeps_min_v_unset():
    graph = quantized_graph()
    graph.quantized = False
    assert to_sinabs(graph).conv1_iaf.min_v_mem is None


def test_speck_incompatible_ops_are_refused_by_name():
    graph = quantized_graph()
    graph.layers.append(Layer("skip", "add", {}, (3,), inputs=("fc", "fc")))
    with pytest.raises(AsaSnnError, match=r"'skip': add read by the graph output"):
        to_sinabs(graph)
    cuba = quantized_graph()
    cuba.layers[2].neuron = NeuronSpec("cuba", 90.0, du=0.1, dv=0.2)
    with pytest.raises(AsaSnnError, match=r"'conv1'.*cuba"):
        to_sinabs(cuba)


def test_lif_only_with_approximate_and_a_warning():
    graph = quantized_graph()
    graph.layers[0].neuron = NeuronSpec("lif", 120.0, decay=0.9)
    with pytest.raises(AsaSnnError, match=r"'block.0'.*lif"):
        to_sinabs(graph)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = to_sinabs(graph, approximate=True)
    assert isinstance(model.block_0_iaf, sl.IAFSqueeze) and float(model.block_0_iaf.spike_threshold) == 120.0
    assert any("'block.0'" in str(w.message) for w in caught)


def test_no_hardware_stack_is_imported():
    code = (
        "import sys\n"
        "import asa_snn.chips.speck.sinabs_export, asa_snn.chips.speck.mapping\n"
        "import asa_snn.chips.speck.simulator, asa_snn.chips.speck.sinabs_backend\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_speck_sinabs_export import quantized_graph\n"
        "from asa_snn.chips.speck.sinabs_backend import SinabsBackend\n"
        "import numpy as np\n"
        "SinabsBackend().run(quantized_graph(), np.ones((1, 4, 2, 8, 8)))\n"
        "bad = [m for m in sys.modules if m.startswith(('samna', 'sinabs.backend.dynapcnn'))]\n"
        "print('BAD', bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("BAD []")
