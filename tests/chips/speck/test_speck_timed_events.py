"""Event-driven Speck simulation with real timestamps (timed_run): the frame mode's spikes when the
events of each step come in raster order, times carried by spikes, synaptic ops per event."""

import numpy as np
from graph_builders import chain_graph

from asa_snn.chips.speck.event_driven import EventDriven, timed_run
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.convert.graph import NeuronSpec
from asa_snn.data.frames import count_events
from asa_snn.data.model_input import ModelEvents
from asa_snn.energy.synapses import fanout_map
from asa_snn.simulators.operations import layer_geometry


def raster_events(graph, seed=0, per_step=40):
    """Random events whose times follow raster order (C, H, W) within each step of 1 ms."""
    rng = np.random.default_rng(seed)
    c, h, w = graph.input.shape
    steps = np.repeat(np.arange(graph.input.n_steps), per_step)
    address = np.sort(rng.integers(0, c * h * w, steps.shape).reshape(-1, per_step), axis=1).reshape(-1)
    channel, rest = np.divmod(address, h * w)
    y, x = np.divmod(rest, w)
    times = steps * 1000 + np.tile(np.arange(per_step) * 10, graph.input.n_steps)
    return ModelEvents(steps, channel, y, x, times)


def test_raster_ordered_events_give_the_frame_mode_spikes():
    neurons = [NeuronSpec("iaf", 40.0, min_v=-40.0), NeuronSpec("iaf", 60.0, "zero"), NeuronSpec("iaf", 50.0)]
    graph = chain_graph(neurons)  # bias on c0, pooling, flatten, linear
    events = raster_events(graph)
    frames = count_events(
        events.step, events.channel, events.y, events.x, (graph.input.n_steps, *graph.input.shape)
    )
    expected = SpeckSimulator(mode=EventDriven()).run(graph, frames[None], record=True).spike_trains
    run = timed_run(graph, events)
    assert set(run.counts) == {"c0", "c1", "fc"}
    for name, counts in run.counts.items():
        np.testing.assert_array_equal(counts, expected[name][:, 0].reshape(counts.shape), err_msg=name)
    assert run.counts["c0"].sum() > 0 and run.counts["c1"].sum() > 0


def test_times_and_synaptic_ops_per_event():
    graph = chain_graph([NeuronSpec("iaf", 40.0), NeuronSpec("iaf", 60.0), NeuronSpec("iaf", 50.0)])
    events = raster_events(graph, seed=1)
    run = timed_run(graph, events)
    first = run.loads["c0"]
    np.testing.assert_array_equal(first.times_us, events.t_us)  # input events keep their own times
    fanout = fanout_map(layer_geometry(graph.layer("c0"), graph.input.shape)).reshape(-1)
    address = (events.channel * 8 + events.y) * 8 + events.x
    np.testing.assert_array_equal(first.synops, fanout[address])
    second = run.loads["c1"]
    assert len(second.times_us) == run.counts["c0"].sum()  # c0's spikes are c1's events
    assert np.all(np.diff(second.times_us) >= 0)
    # a spike carries its cause's time, or its step's start for the bias spikes
    assert set(second.times_us.tolist()) <= set(events.t_us.tolist()) | set(range(0, 12_000, 1000))
    assert run.duration_us == 12 * graph.input.step_us
