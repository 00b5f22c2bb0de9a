"""Tiny hand-built quantized graphs for the deploy tests (Speck and Loihi)."""

import numpy as np
import pytest

from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec

QUANT = LayerQuant(scale=1.0, weight_bits=8, state_bits=16)
CONV = {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1], "in_channels": 2, "out_channels": 4}


def speck_graph() -> FoldedGraph:
    """(2, 8, 8) input (16x16 sensor, downsample 2) -> conv1 3x3 -> IAF -> sumpool 2 -> flatten -> fc 3."""
    rng = np.random.default_rng(0)
    conv = rng.integers(-2, 6, size=(4, 2, 3, 3)).astype(np.int8)
    fc = rng.integers(-3, 6, size=(3, 64)).astype(np.int8)
    layers = [
        Layer(
            "conv1",
            "conv2d",
            CONV,
            (4, 8, 8),
            {"weight": conv},
            NeuronSpec("iaf", 6.0, min_v=-20.0),
            quant=QUANT,
        ),
        Layer("pool1", "sumpool2d", {"kernel_size": [2, 2]}, (4, 4, 4)),
        Layer("flat", "flatten", {}, (64,)),
        Layer(
            "fc",
            "linear",
            {"in_features": 64, "out_features": 3},
            (3,),
            {"weight": fc},
            NeuronSpec("iaf", 10.0, "zero", min_v=-40.0),
            quant=QUANT,
        ),
    ]
    spec = InputSpec((2, 8, 8), (16, 16, 2), downsample=2, dt_us=20_000, n_steps=8)
    return FoldedGraph(layers, spec, 3, "speck", True)


def loihi_graph() -> FoldedGraph:
    """(2, 4, 4) input -> flatten -> fc0 (8) -> fc1 (3), CUBA neurons, integer weights."""
    rng = np.random.default_rng(1)
    neuron = NeuronSpec("cuba", 40.0, "zero", du=0.5, dv=0.25)
    w0 = rng.integers(-10, 30, size=(8, 32)).astype(np.int64)
    w1 = rng.integers(-10, 30, size=(3, 8)).astype(np.int64)
    layers = [
        Layer("flat", "flatten", {}, (32,)),
        Layer("fc0", "linear", {"in_features": 32, "out_features": 8}, (8,), {"weight": w0}, neuron),
        Layer("fc1", "linear", {"in_features": 8, "out_features": 3}, (3,), {"weight": w1}, neuron),
    ]
    spec = InputSpec((2, 4, 4), (16, 16, 2), downsample=4, dt_us=20_000, n_steps=8)
    return FoldedGraph(layers, spec, 3, "loihi", True)


@pytest.fixture(scope="session")
def speck():
    return speck_graph()


@pytest.fixture(scope="session")
def loihi():
    return loihi_graph()
