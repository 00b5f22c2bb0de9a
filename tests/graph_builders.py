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
