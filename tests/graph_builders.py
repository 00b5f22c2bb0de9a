"""Folded graphs shared by the exporter and simulator tests (importable: tests/ is on sys.path
because tests/conftest.py lives there)."""

from __future__ import annotations

import numpy as np

from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec

QUANT = LayerQuant(scale=1.0, weight_bits=8, state_bits=16)
CONV = {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]}


def chain_graph(
    neurons: list[NeuronSpec],
    quantized: bool = True,
    weight_mean: float = 10.0,
    input_spec: InputSpec | None = None,
) -> FoldedGraph:
    """conv c0 (2->4, 3x3) -> sumpool2 -> conv c1 (4->4, 3x3) -> flatten -> linear fc (64->3).

    Integer-valued weights from N(weight_mean, 30) clipped to int8 (seed 7, so every test sees the
    same ones), a bias on c0, ``neurons`` the three layers' neurons. ``quantized``: int8 weights,
    int16 bias and 8-bit quantization metadata; else the same values as float64. Input: 2 x 8 x 8
    frames, 12 steps unless ``input_spec`` says otherwise.
    """
    rng = np.random.default_rng(7)
    dtype, quant = (np.int8, QUANT) if quantized else (np.float64, None)

    def weights(shape: tuple[int, ...]) -> np.ndarray:
        return np.clip(rng.normal(weight_mean, 30, shape).round(), -128, 127).astype(dtype)

    bias = np.array([3, -4, 0, 5], np.int16 if quantized else np.float64)
    n0, n1, n2 = neurons
    layers = [
        Layer(
            "c0", "conv2d", CONV, (4, 8, 8), {"weight": weights((4, 2, 3, 3)), "bias": bias}, n0, quant=quant
        ),
        Layer("pool", "sumpool2d", {"kernel_size": [2, 2]}, (4, 4, 4)),
        Layer("c1", "conv2d", CONV, (4, 4, 4), {"weight": weights((4, 4, 3, 3))}, n1, quant=quant),
        Layer("flat", "flatten", {}, (64,)),
        Layer("fc", "linear", {}, (3,), {"weight": weights((3, 64))}, n2, quant=quant),
    ]
    spec = input_spec or InputSpec((2, 8, 8), (8, 8, 2), n_steps=12)
    return FoldedGraph(layers, spec, 3, "speck", quantized=quantized)


DEPLOY_CONV = {
    "kernel_size": [3, 3],
    "stride": [1, 1],
    "padding": [1, 1],
    "in_channels": 2,
    "out_channels": 4,
}


def speck_graph() -> FoldedGraph:
    """(2, 8, 8) input (16x16 sensor, downsample 2) -> conv1 3x3 -> IAF -> sumpool 2 -> flatten -> fc 3."""
    rng = np.random.default_rng(0)
    conv = rng.integers(-2, 6, size=(4, 2, 3, 3)).astype(np.int8)
    fc = rng.integers(-3, 6, size=(3, 64)).astype(np.int8)
    layers = [
        Layer(
            "conv1",
            "conv2d",
            DEPLOY_CONV,
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
