"""GraphModel with chip dynamics gives the chip simulators' spikes, layer by layer, and trains."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from graph_builders import chain_graph

from asa_snn.chips.loihi.netx_export import to_netx_layers
from asa_snn.chips.loihi.quantizer import LoihiQuantizer
from asa_snn.chips.loihi.simulator import LoihiSimulator, simulate_netx, with_drain
from asa_snn.chips.speck.quantizer import SpeckQuantizer
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.chip_dynamics import LoihiDynamics, SpeckDynamics, delayed, dynamics_for
from asa_snn.convert.graph import NeuronSpec
from asa_snn.convert.graph_model import GraphModel
from asa_snn.convert.quantize import quantize_graph
from asa_snn.errors import AsaSnnError


def _frames(shape: tuple[int, ...], steps: int, high: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, high, size=(5, steps, *shape)).astype(np.float32)


def _model_trains(graph, frames: np.ndarray, dynamics) -> dict[str, np.ndarray]:
    model = GraphModel(graph, dynamics=dynamics).eval()
    with torch.no_grad():
        run = model.run(torch.from_numpy(frames).transpose(0, 1), record=True)
    return {name: t.numpy() for name, t in run.trains.items()}


def _assert_same(model: dict[str, np.ndarray], chip: dict[str, np.ndarray]) -> None:
    assert set(model) == set(chip)
    for name, trains in chip.items():
        np.testing.assert_array_equal(model[name].reshape(trains.shape), trains, err_msg=name)


def _speck_trains(graph, frames: np.ndarray) -> dict[str, np.ndarray]:
    return SpeckSimulator().run(graph, frames, record=True).spike_trains


@pytest.mark.parametrize("multi", [False, True])
def test_speck_dynamics_give_the_simulator_spikes_layer_by_layer(speck, multi):
    graph = dataclasses.replace(speck)
    if multi:
        graph = dataclasses.replace(
            speck,
            layers=[
                dataclasses.replace(layer, neuron=dataclasses.replace(layer.neuron, multi_spike=True))
                if layer.neuron is not None
                else layer
                for layer in speck.layers
            ],
        )
    frames = _frames((2, 8, 8), 8, 4, seed=3)
    trains = _speck_trains(graph, frames)
    assert sum(t.sum() for t in trains.values()) > 0
    _assert_same(_model_trains(graph, frames, SpeckDynamics()), trains)


def test_speck_dynamics_saturate_the_int16_membrane_as_the_chip_does():
    neurons = [
        NeuronSpec("iaf", 30000.0, "subtract"),
        NeuronSpec("iaf", 60.0, "zero", min_v=-100.0),
        NeuronSpec("iaf", 40.0),
    ]
    graph = chain_graph(neurons, weight_mean=40.0)
    frames = _frames((2, 8, 8), 12, 60, seed=4)
    trains = _speck_trains(graph, frames)
    _assert_same(_model_trains(graph, frames, SpeckDynamics()), trains)
    float_neurons = _model_trains(graph, frames, None)
    assert any(not np.array_equal(float_neurons[k].reshape(v.shape), v) for k, v in trains.items())


def _loihi_trains(graph, frames: np.ndarray) -> dict[str, np.ndarray]:
    layers = to_netx_layers(graph)
    result = simulate_netx(layers, with_drain(frames.astype(np.int64), layers), record=True)
    return {name: trains.astype(np.float32) for name, trains in result.spike_trains.items()}


def test_loihi_dynamics_give_the_simulator_spikes_on_dense_layers(loihi):
    frames = _frames((2, 4, 4), 8, 3, seed=5)
    trains = _loihi_trains(loihi, frames)
    assert trains["fc1"].sum() > 0
    _assert_same(_model_trains(loihi, frames, LoihiDynamics()), trains)


def test_loihi_dynamics_delay_clip_and_decay_match_on_a_conv_pool_chain():
    cuba = NeuronSpec("cuba", 90.0, "zero", du=0.3, dv=0.1)
    graph = dataclasses.replace(chain_graph([cuba, cuba, cuba], weight_mean=12.0), target="loihi")
    frames = _frames((2, 8, 8), 12, 4, seed=6)
    trains = _loihi_trains(graph, frames)
    assert trains["fc"].sum() > 0
    model = _model_trains(graph, frames, LoihiDynamics())
    _assert_same(model, trains)
    # the first conv / dense layers fire no earlier than their synaptic delay
    assert model["c0"][0].sum() == 0 and model["c1"][:2].sum() == 0 and model["fc"][:3].sum() == 0


def test_loihi_runs_drain_steps_so_the_last_frame_reaches_the_output():
    cuba = NeuronSpec("cuba", 5.0, "zero", du=1.0, dv=1.0)
    graph = dataclasses.replace(chain_graph([cuba, cuba, cuba], weight_mean=40.0), target="loihi")
    frames = np.zeros((2, 6, 2, 8, 8), np.float32)
    frames[:, -1] = 1.0  # events in the last frame only
    result = LoihiSimulator().run(graph, frames, record=True)
    latency = 3  # c0, c1, fc: one step of synaptic delay each
    assert result.outputs.shape[1] == 6 + latency
    assert result.outputs[:, : 6 + latency - 1].sum() == 0 and result.outputs[:, -1].sum() > 0
    assert "ran 6 + 3 steps" in result.notes[0]
    model = GraphModel(graph, dynamics=LoihiDynamics()).eval()
    with torch.no_grad():
        run = model.run(torch.from_numpy(frames).transpose(0, 1), record=True)
    assert run.trains["fc"].shape[0] == 6 + latency
    # rates stay spikes per recorded step: the output's spikes / 6
    expected = result.outputs.sum(1) / 6
    np.testing.assert_allclose(run.scores.numpy(), expected.reshape(2, -1, graph.vote).mean(2), rtol=1e-6)


def test_float_graph_with_quantizer_runs_the_integers_quantize_graph_writes():
    neurons = [NeuronSpec("iaf", 1.0, min_v=-2.0), NeuronSpec("iaf", 1.5), NeuronSpec("iaf", 1.0, "zero")]
    graph = chain_graph(neurons, quantized=False, weight_mean=2.0)
    for layer in graph.layers:
        if "weight" in layer.tensors:
            layer.tensors["weight"] = layer.tensors["weight"] / 97.0
    frames = _frames((2, 8, 8), 12, 3, seed=8)
    quantizer = SpeckQuantizer()
    model = GraphModel(graph, dynamics=SpeckDynamics(), quantizer=quantizer).eval()
    with torch.no_grad():
        run = model.run(torch.from_numpy(frames).transpose(0, 1), record=True)
    chip = _speck_trains(quantize_graph(graph, quantizer), frames)
    _assert_same({k: v.numpy() for k, v in run.trains.items()}, chip)


def test_chip_dynamics_train_through_rounding_and_refuse_a_float_graph_without_quantizer():
    cuba = NeuronSpec("cuba", 0.5, "zero", du=0.25, dv=0.125)
    graph = dataclasses.replace(
        chain_graph([cuba, cuba, cuba], quantized=False, weight_mean=4.0), target="loihi"
    )
    for layer in graph.layers:
        if "weight" in layer.tensors:
            layer.tensors["weight"] = layer.tensors["weight"] / 60.0
    with pytest.raises(AsaSnnError, match="quantizer"):
        GraphModel(graph, dynamics=LoihiDynamics())
    model = GraphModel(graph, dynamics=dynamics_for("loihi"), quantizer=LoihiQuantizer())
    frames = torch.from_numpy(_frames((2, 8, 8), 12, 3, seed=9)).transpose(0, 1)
    model(frames).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_delay_shifts_time_and_unknown_target_is_refused():
    x = torch.arange(4.0).reshape(4, 1)
    assert delayed(x, 1).flatten().tolist() == [0.0, 0.0, 1.0, 2.0]
    with pytest.raises(AsaSnnError, match="generic"):
        dynamics_for("generic")
