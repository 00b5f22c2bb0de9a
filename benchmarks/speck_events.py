"""Input events per second through the built-in Speck simulator vs sinabs, same quantized net and input.

Network (a speck_net-sized quantized graph, int8 weights drawn at random, IAF neurons, subtract
reset, min_v = -threshold)::

    conv 3x3 2->8 (32x32) -> sumpool 2 -> conv 3x3 8->16 -> sumpool 2 -> conv 3x3 16->16 -> sumpool 2
    -> conv 4x4 16->10 (the 4x4 map to 10 outputs)

Input: the first N-MNIST training recordings of /work/shared/data/nmnist/train (34x34 ATIS,
cropped to 32x32), binned into T frames of dt microseconds. Both backends get the same frames
[B, T, 2, 32, 32]; events per second = input events in the frames / wall seconds of one
``backend.run`` (median of ``--repeat`` interleaved rounds after one warm-up, ``--threads``
torch threads); the median process CPU seconds of each run are written beside it. The spike
trains of all layers are checked to be identical before any number is written.

With ``--event-samples N`` the built-in simulator's event-driven mode (``EventDriven``, which
runs ``--threads`` samples at once) takes its turn in the same rounds on the first N recordings,
and its events per second and ratio to the time-stepped mode are reported. The two modes are
different models (one spike per incoming event against at most one per step), so their spikes
are not compared; each mode's spikes per layer and its events handled per second (input events
plus the spikes passed on to a next layer) are written beside the input-event rate.

With ``--graph FOLDER`` a folded graph replaces the random network (its own input spec bins the
same recordings), e.g. the shipped N-MNIST Speck recipe trained and folded (benchmarks/README.md)::

    asa-snn train nmnist_small --out runs/bench_nmnist_small
    asa-snn fold runs/bench_nmnist_small/best.safetensors --target speck --finetune 0 \
        --out runs/bench_nmnist_small_speck

Run::

    .venv/bin/python benchmarks/speck_events.py            # writes benchmarks/results/speck_events.json
    .venv/bin/python benchmarks/speck_events.py --threads 1 --event-samples 16
    .venv/bin/python benchmarks/speck_events.py --threads 1 --event-samples 16 \\
        --graph runs/bench_nmnist_small_speck
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from asa_snn.chips.speck.event_driven import EventDriven
from asa_snn.chips.speck.simulator import SpeckSimulator
from asa_snn.chips.speck.sinabs_backend import SinabsBackend
from asa_snn.convert.graph import FoldedGraph, InputSpec, Layer, LayerQuant, NeuronSpec, load_graph
from asa_snn.data.formats import read_events
from asa_snn.data.model_input import frames_for
from asa_snn.files import write_json
from asa_snn.simulators.base import Backend

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nmnist" / "train"
RESULTS = Path(__file__).resolve().parent / "results" / "speck_events.json"
QUANT = LayerQuant(scale=1.0, weight_bits=8, state_bits=16)


def speck_graph(seed: int = 0, n_steps: int = 30, dt_us: int = 10_000) -> FoldedGraph:
    """The benchmark network as a quantized folded graph (module docstring)."""
    rng = np.random.default_rng(seed)

    def conv(name, c_in, c_out, k, pad, out_map, theta):
        weight = np.clip(rng.normal(3, 12, (c_out, c_in, k, k)).round(), -128, 127).astype(np.int8)
        attrs = {"kernel_size": [k, k], "stride": [1, 1], "padding": [pad, pad]}
        neuron = NeuronSpec("iaf", theta, "subtract", -theta)
        return Layer(name, "conv2d", attrs, (c_out, *out_map), {"weight": weight}, neuron, quant=QUANT)

    def pool(name, shape):
        return Layer(name, "sumpool2d", {"kernel_size": [2, 2]}, shape)

    layers = [
        conv("conv0", 2, 8, 3, 1, (32, 32), 20.0),
        pool("pool0", (8, 16, 16)),
        conv("conv1", 8, 16, 3, 1, (16, 16), 60.0),
        pool("pool1", (16, 8, 8)),
        conv("conv2", 16, 16, 3, 1, (8, 8), 60.0),
        pool("pool2", (16, 4, 4)),
        conv("conv3", 16, 10, 4, 0, (1, 1), 400.0),
    ]
    spec = InputSpec((2, 32, 32), (34, 34, 2), dt_us=dt_us, n_steps=n_steps, crop=(1, 1, 32, 32))
    return FoldedGraph(layers, spec, 10, "speck", quantized=True)


def nmnist_frames(graph: FoldedGraph, n_samples: int) -> np.ndarray:
    """Frames [B, T, 2, 32, 32] of the first ``n_samples`` N-MNIST recordings (centre crop of 34x34,
    by the graph's input spec)."""
    files = [DATA / f"{index}.bs2" for index in range(1, n_samples + 1)]
    frames = [frames_for(graph.input, read_events(file)) for file in files]
    return np.stack(frames).astype(np.float64)


def time_runs(
    runs: dict[str, tuple[Backend, np.ndarray]], graph: FoldedGraph, repeat: int
) -> tuple[dict[str, float], dict[str, float], dict[str, dict]]:
    """Median wall seconds and median process CPU seconds per backend (each on its own frames)
    over ``repeat`` rounds after one warm-up each, and the recorded spike trains. The backends take
    turns within each round, so a change of the machine's load hits all of them alike; CPU seconds
    are what the run itself computed, less exposed to other jobs than the wall clock."""
    trains = {
        label: backend.run(graph, frames, record=True).spike_trains
        for label, (backend, frames) in runs.items()
    }
    times: dict[str, list[float]] = {label: [] for label in runs}
    cpu: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeat):
        for label, (backend, frames) in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            backend.run(graph, frames)
            times[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - start_cpu)
    median = {label: float(np.median(values)) for label, values in times.items()}
    return median, {label: float(np.median(values)) for label, values in cpu.items()}, trains


def events_handled(n_input: int, trains: dict[str, np.ndarray], last: str) -> int:
    """Input events plus the spikes of every spiking layer but the last (the next layer's events)."""
    return n_input + sum(int(train.sum()) for layer, train in trains.items() if layer != last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=16, help="N-MNIST recordings in the batch")
    parser.add_argument("--repeat", type=int, default=9, help="timed rounds (median is kept)")
    parser.add_argument(
        "--event-samples", type=int, default=0, help="recordings for the event-driven mode (0: skip it)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both backends")
    parser.add_argument("--graph", type=Path, help="a folded Speck graph instead of the random network")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        raise SystemExit(
            f"N-MNIST recordings not found at {DATA.resolve()} (see /work/shared/data/README.md)"
        )

    graph = speck_graph() if args.graph is None else load_graph(args.graph)
    frames = nmnist_frames(graph, args.samples)
    n_events = int(frames.sum())
    TS, ED = "speck (time-stepped)", "speck (event-driven)"
    runs: dict[str, tuple[Backend, np.ndarray]] = {
        TS: (SpeckSimulator(), frames),
        "sinabs": (SinabsBackend(), frames),
    }
    if args.event_samples:
        if not 0 < args.event_samples <= args.samples:
            raise SystemExit(f"--event-samples {args.event_samples}: expected 1..--samples ({args.samples})")
        runs[ED] = (SpeckSimulator(mode=EventDriven()), frames[: args.event_samples])
    medians, cpu, trains = time_runs(runs, graph, args.repeat)
    for layer, train in trains["sinabs"].items():
        if not np.array_equal(train, trains[TS][layer]):
            raise SystemExit(f"layer {layer}: the built-in simulator and sinabs disagree; no timing written")
    last = graph.layers[-1].name
    entries = {}
    for label, seconds in medians.items():
        inputs = int(runs[label][1].sum())
        handled = events_handled(inputs, trains[label], last)
        entries[label] = {
            "seconds": seconds,
            "events_per_s": inputs / seconds,
            "cpu_seconds": cpu[label],
            "events_per_cpu_s": inputs / cpu[label],
            "samples": len(runs[label][1]),
            "input_events": inputs,
            "spikes_per_layer": {layer: int(train.sum()) for layer, train in trains[label].items()},
            "events_handled_per_s": handled / seconds,
        }
        print(
            f"{label:24s} {seconds:8.3f} s  {inputs / seconds:12.0f} events/s  "
            f"({handled / seconds:12.0f} events handled/s)"
        )
    spikes = entries["sinabs"]["spikes_per_layer"]
    ratio = entries[TS]["events_per_s"] / entries["sinabs"]["events_per_s"]
    print(f"built-in / sinabs = {ratio:.2f}x")
    event_ratio = None
    if ED in entries:
        event_ratio = entries[ED]["events_per_s"] / entries[TS]["events_per_s"]
        cpu_ratio = entries[ED]["events_per_cpu_s"] / entries[TS]["events_per_cpu_s"]
        print(f"event-driven / time-stepped = {event_ratio:.3f}x (events/s), {cpu_ratio:.3f}x (events/CPU s)")
    document = {
        "benchmark": "speck_events",
        "network": [layer.name for layer in graph.layers],
        "graph": "random int8 (speck_graph)" if args.graph is None else str(args.graph),
        "input": {
            "data": "N-MNIST train 1..N (.bs2), binned by the graph's input spec",
            "samples": args.samples,
            "n_steps": graph.input.n_steps,
            "dt_us": graph.input.dt_us,
            "input_events": n_events,
        },
        "spikes_per_layer": spikes,
        "identical_spike_trains": True,
        "results": entries,
        "ratio_builtin_over_sinabs": ratio,
        "ratio_event_driven_over_time_stepped": event_ratio,
        "ratio_event_driven_over_time_stepped_cpu": None if event_ratio is None else cpu_ratio,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    print(f"wrote {write_json(document, args.out)}")


if __name__ == "__main__":
    main()
